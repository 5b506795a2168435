"""Fast paths for the bulk of the traffic: plain text messages and statuses.

For exactly those shapes the models' validation is known to pass and to hand back the values
unchanged, so these functions read the values from the parsed JSON directly and build the record
through the same ``_Change.record`` as the validated path; ``tests/unit/test_normalize_fast.py``
holds both paths to identical records. Anything they do not fully recognise (another key, another
type, a str subclass such as NumberText) returns None, and the validated path decides, quarantine
reasons included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeGuard

from coexarchive.normalize._base import _Change, _phone, _seconds, message_record_id
from coexarchive.normalize.messages import _status_record
from coexarchive.records import Direction, Kind, Origin, Record
from coexarchive.webhooks._base import MAX_ID_LENGTH

_FAST_TEXT_KEYS: Final = frozenset({"from", "id", "timestamp", "type", "text"})
_FAST_STATUS_KEYS: Final = frozenset(
    {
        "id",
        "status",
        "timestamp",
        "recipient_id",
        "conversation",
        "pricing",
        "biz_opaque_callback_data",
    }
)
_CONVERSATION_TEXT: Final = ("id",)
_PRICING_TEXT: Final = ("pricing_model", "type", "category")


def _fast_id(value: Any) -> TypeGuard[str]:
    """What ``IdText`` accepts and returns unchanged: a plain string of at most 512 characters."""
    return type(value) is str and len(value) <= MAX_ID_LENGTH


def _fast_timestamp(value: Any) -> bool:
    return value is None or type(value) is str or type(value) is int


def _fast_optional_text(part: dict[str, Any], names: tuple[str, ...]) -> bool:
    for name in names:
        value = part.get(name)
        if value is not None and type(value) is not str:
            return False
    return True


def _fast_conversation(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is not dict or not _fast_optional_text(value, _CONVERSATION_TEXT):
        return False
    origin = value.get("origin")
    return _fast_timestamp(value.get("expiration_timestamp")) and (
        origin is None or (type(origin) is dict and _fast_optional_text(origin, ("type",)))
    )


def _fast_pricing(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is not dict or not _fast_optional_text(value, _PRICING_TEXT):
        return False
    billable = value.get("billable")
    return billable is None or type(billable) is bool


def _fast_text(change: _Change, raw: dict[str, Any], path: str) -> Record | None:
    """A plain inbound text message, or None to take the validated path.

    What ``messages._message_record`` does for exactly this shape (no context, no follow-up, no
    BSUID), without its general cases: the bulk of the traffic takes this path.
    """
    if raw.keys() != _FAST_TEXT_KEYS or raw["type"] != "text" or type(raw["type"]) is not str:
        return None
    sender, wamid, text, timestamp = raw["from"], raw["id"], raw["text"], raw["timestamp"]
    if not (_fast_id(sender) and _fast_id(wamid) and timestamp is not None):
        return None
    if type(text) is not dict or text.keys() != {"body"} or type(text["body"]) is not str:
        return None
    if not _fast_timestamp(timestamp):
        return None
    seconds = _seconds(timestamp, "timestamp")
    wa_id = _phone(sender)
    user_id = None
    extra: dict[str, Any] = {}
    contact = change.contact(wa_id, None)
    if contact is not None:
        extra["contact"] = contact
        found = contact.get("wa_id")
        wa_id = wa_id or _phone(found if type(found) is str else None)
        found = contact.get("user_id")
        user_id = found if type(found) is str else None
    return change.record(
        record_id=message_record_id(change.chain_id, wamid),
        kind=Kind.MESSAGE,
        origin=Origin.CUSTOMER,
        direction=Direction.INBOUND,
        seconds=seconds,
        path=path,
        raw=raw,
        extra=extra,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        wamid=wamid,
        msg_type="text",
        text=text["body"],
    )


def _fast_status(change: _Change, raw: dict[str, Any], path: str) -> Record | None:
    """A status without errors, group or BSUID fields, or None to take the validated path."""
    if not raw.keys() <= _FAST_STATUS_KEYS:
        return None
    wamid, value = raw.get("id"), raw.get("status")
    recipient, timestamp = raw.get("recipient_id"), raw.get("timestamp")
    if not (_fast_id(wamid) and type(value) is str and _fast_timestamp(timestamp)):
        return None
    if not (recipient is None or _fast_id(recipient)):
        return None
    if not _fast_optional_text(raw, ("biz_opaque_callback_data",)):
        return None
    if not (_fast_conversation(raw.get("conversation")) and _fast_pricing(raw.get("pricing"))):
        return None
    return _status_record(
        change,
        raw,
        path,
        wamid=wamid,
        value=value.lower(),
        error_code=None,
        wa_id=_phone(recipient),
        user_id=None,
        timestamp=timestamp,
    )


def _with_fast_path(
    fast: Callable[[_Change, dict[str, Any], str], Record | None],
    slow: Callable[[_Change], Callable[[Any, str], Record]],
) -> Callable[[_Change], Callable[[Any, str], Record]]:
    def bind(change: _Change) -> Callable[[Any, str], Record]:
        validated = slow(change)

        def handle(raw: dict[str, Any], path: str) -> Record:
            record = fast(change, raw, path)
            return record if record is not None else validated(raw, path)

        return handle

    return bind
