"""Management fields (templates, account, phone quality) and shapes not modelled yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from coexarchive.normalize._base import _Change, _digest
from coexarchive.records import Kind, Record, stable_id
from coexarchive.webhooks.account import AccountUpdate
from coexarchive.webhooks.quality import PhoneNumberQualityUpdate
from coexarchive.webhooks.templates import (
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)


def _management_id(change: _Change, raw: dict[str, Any]) -> str:
    # No event id exists: the event is its content at its time, so a retry maps to the same id.
    return stable_id(change.field, change.chain_id, change.entry_time, _digest(raw))


def _management_record(
    change: _Change,
    raw: dict[str, Any],
    path: str,
    kind: Kind,
    extra: dict[str, Any],
    **columns: Any,
) -> Record:
    """A system event of a management field (templates, account, phone quality) at entry time."""
    return change.system_record(
        record_id=_management_id(change, raw),
        kind=kind,
        path=path,
        raw=raw,
        extra=extra,
        **columns,
    )


def _template_status(change: _Change, raw: dict[str, Any], path: str) -> Record:
    event = TemplateStatusUpdate.model_validate(raw)
    return _template_record(
        change, raw, path, event.message_template_name, event.message_template_language,
        msg_type="template_status", status=event.event,
        template_status=event.event, template_category=event.message_template_category,
    )  # fmt: skip


def _template_quality(change: _Change, raw: dict[str, Any], path: str) -> Record:
    event = TemplateQualityUpdate.model_validate(raw)
    return _template_record(
        change, raw, path, event.message_template_name, event.message_template_language,
        msg_type="template_quality", status=event.new_quality_score,
    )  # fmt: skip


def _template_category(change: _Change, raw: dict[str, Any], path: str) -> Record:
    event = TemplateCategoryUpdate.model_validate(raw)
    upcoming = event.correct_category is not None
    return _template_record(
        change, raw, path, event.message_template_name, event.message_template_language,
        msg_type="template_category",
        status="category_change_upcoming" if upcoming else "category_changed",
        template_category=event.new_category,
    )  # fmt: skip


def _template_record(
    change: _Change,
    raw: dict[str, Any],
    path: str,
    name: str | None,
    language: str | None,
    **columns: Any,
) -> Record:
    template_id = raw.get("message_template_id")
    return _management_record(
        change,
        raw,
        path,
        Kind.TEMPLATE_EVENT,
        {"template_id": None if template_id is None else str(template_id)},
        template_name=name,
        template_language=language,
        **columns,
    )


def _account(change: _Change, raw: dict[str, Any], path: str) -> Record:
    event = AccountUpdate.model_validate(raw)
    reason = event.disconnection_info.reason if event.disconnection_info else None
    return _management_record(
        change,
        raw,
        path,
        Kind.ACCOUNT_EVENT,
        {"disconnection_reason": reason} if reason is not None else {},
        msg_type="account_update",
        status=event.event,
    )


def _phone_quality(change: _Change, raw: dict[str, Any], path: str) -> Record:
    event = PhoneNumberQualityUpdate.model_validate(raw)
    return _management_record(
        change,
        raw,
        path,
        Kind.ACCOUNT_EVENT,
        {"tier": event.max_daily_conversations_per_business},
        msg_type="phone_number_quality_update",
        status=event.event,
    )


def _unsupported(change: _Change, raw: Any, path: str, key: str | None) -> Record:
    """A field, or a part of a value, that is not modelled yet: archived whole."""
    return change.system_record(
        record_id=stable_id(
            "unsupported", change.chain_id, change.field, key, change.entry_time, _digest(raw)
        ),
        kind=Kind.UNSUPPORTED,
        path=path,
        raw=raw,
        extra={"value_key": key} if key is not None else {},
        msg_type=change.field if key is None else f"{change.field}.{key}",
    )


_MANAGEMENT: Final[dict[str, Callable[[_Change, dict[str, Any], str], Record]]] = {
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "template_category_update": _template_category,
    "account_update": _account,
    "phone_number_quality_update": _phone_quality,
}
