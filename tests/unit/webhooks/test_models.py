"""The payload models parse every fixture and stay permissive where Meta is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from coexarchive.webhooks import (
    AccountUpdate,
    EchoesValue,
    Envelope,
    HistoryValue,
    Message,
    MessagesValue,
    PhoneNumberQualityUpdate,
    StateSyncValue,
    Status,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    UserPreferencesValue,
    WebhookField,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
ENVELOPED = sorted(p for p in FIXTURES.glob("*.json") if "bare_value" not in p.name)

VALUE_MODELS: dict[str, type[BaseModel]] = {
    WebhookField.MESSAGES: MessagesValue,
    WebhookField.SMB_MESSAGE_ECHOES: EchoesValue,
    WebhookField.HISTORY: HistoryValue,
    WebhookField.SMB_APP_STATE_SYNC: StateSyncValue,
    WebhookField.USER_PREFERENCES: UserPreferencesValue,
    WebhookField.MESSAGE_TEMPLATE_STATUS_UPDATE: TemplateStatusUpdate,
    WebhookField.MESSAGE_TEMPLATE_QUALITY_UPDATE: TemplateQualityUpdate,
    WebhookField.TEMPLATE_CATEGORY_UPDATE: TemplateCategoryUpdate,
    WebhookField.ACCOUNT_UPDATE: AccountUpdate,
    WebhookField.PHONE_NUMBER_QUALITY_UPDATE: PhoneNumberQualityUpdate,
}


def _load(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


@pytest.mark.parametrize("path", ENVELOPED, ids=lambda p: p.stem)
def test_every_fixture_parses_into_its_value_model(path: Path) -> None:
    envelope = Envelope.model_validate(orjson.loads(path.read_bytes()))
    assert envelope.object == "whatsapp_business_account"
    for entry in envelope.entry:
        assert entry.id == "800000000000001"
        for change in entry.changes:
            model = VALUE_MODELS.get(change.field)
            if model is None:
                assert change.field == "business_capability_update"
                continue
            model.model_validate(change.value)


def test_unknown_keys_are_kept() -> None:
    message = Message.model_validate(
        {"id": "wamid.X", "type": "text", "text": {"body": "hi", "new": 1}, "future": [1]}
    )
    assert message.model_extra == {"future": [1]}
    assert message.text is not None
    assert message.text.model_extra == {"new": 1}


def test_unknown_message_type_and_status_values_are_kept_as_strings() -> None:
    message = Message.model_validate({"id": "wamid.X", "type": "poll_vote", "poll_vote": {}})
    assert message.type == "poll_vote"
    status = Status.model_validate({"id": "wamid.X", "status": "warning"})
    assert status.status == "warning"


@pytest.mark.parametrize("timestamp", ["1767607200", 1767607200])
def test_timestamps_accept_string_or_integer(timestamp: str | int) -> None:
    assert Message.model_validate({"type": "text", "timestamp": timestamp}).timestamp == timestamp


def test_models_are_frozen() -> None:
    message = Message.model_validate({"id": "wamid.X", "type": "text"})
    with pytest.raises(ValidationError):
        message.type = "image"  # type: ignore[misc]


def test_from_is_read_by_its_json_name() -> None:
    message = Message.model_validate({"from": "447700900123", "type": "text"})
    assert message.from_ == "447700900123"


def test_numeric_identifiers_become_text() -> None:
    update = TemplateStatusUpdate.model_validate(
        _load("template_status_update.json")["entry"][0]["changes"][0]["value"]
    )
    assert update.message_template_id == "1700000000000042"


def test_history_accepts_numeric_strings_and_either_status_case() -> None:
    value = HistoryValue.model_validate(
        _load("history_lowercase_from_me.json")["entry"][0]["changes"][0]["value"]
    )
    assert value.history is not None
    chunk = value.history[0]
    assert chunk.metadata is not None
    assert chunk.metadata.progress == "100"
    assert chunk.threads is not None
    first = chunk.threads[0].messages[1].history_context
    assert first is not None
    assert (first.status, first.from_me) == ("delivered", True)


def test_location_coordinates_are_decimal_text_not_floats() -> None:
    message = Message.model_validate(
        {"type": "location", "location": {"latitude": 51.5074, "longitude": -1}}
    )
    assert message.location is not None
    assert (message.location.latitude, message.location.longitude) == ("51.5074", "-1")


@pytest.mark.parametrize(
    "payload",
    [
        {"type": ["text"]},
        {"type": "text", "timestamp": [1]},
        {"type": "text", "id": {"x": 1}},
        {"type": "text", "id": "w" * 600},
        {"type": "text", "text": "not an object"},
        {"type": "t" * 200},
    ],
    ids=["type_list", "timestamp_list", "id_object", "id_too_long", "content_string", "huge_type"],
)
def test_wrong_types_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Message.model_validate(payload)
