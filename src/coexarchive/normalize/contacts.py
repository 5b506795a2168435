"""Contact book and consent: ``smb_app_state_sync`` and ``user_preferences``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coexarchive.normalize._base import _Change, _digest, _phone, _seconds
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.webhooks.preferences import UserPreference
from coexarchive.webhooks.state_sync import StateSyncItem


def _state_sync(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        item = StateSyncItem.model_validate(raw)
        seconds = _seconds(item.metadata.timestamp if item.metadata else None, "metadata.timestamp")
        contact = item.contact
        wa_id = _phone(contact.phone_number) if contact is not None else None
        user_id = contact.user_id if contact is not None else None
        known = item.type in (None, "contact")
        return change.record(
            record_id=stable_id(
                "contact",
                change.chain_id,
                item.type,
                wa_id,
                user_id,
                item.action,
                seconds,
                None if known else _digest(raw),
            ),
            kind=Kind.CONTACT_CHANGE if known else Kind.UNSUPPORTED,
            origin=Origin.BUSINESS_APP,
            direction=Direction.NONE,
            seconds=seconds,
            path=path,
            raw=raw,
            extra={},
            customer_wa_id=wa_id,
            customer_user_id=user_id,
            msg_type=item.type,
            status=item.action,
        )

    return handle


def _preference(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        pref = UserPreference.model_validate(raw)
        seconds = _seconds(pref.timestamp, "timestamp")
        wa_id = _phone(pref.wa_id)
        extra: dict[str, Any] = {}
        contact = change.contact(wa_id, pref.user_id)
        if contact is not None:
            extra["contact"] = contact
        return change.record(
            record_id=stable_id(
                "consent", change.chain_id, wa_id, pref.user_id, pref.category, pref.value, seconds
            ),
            kind=Kind.CONSENT_EVENT,
            origin=Origin.CUSTOMER,
            direction=Direction.NONE,
            seconds=seconds,
            path=path,
            raw=raw,
            extra=extra,
            customer_wa_id=wa_id,
            customer_user_id=pref.user_id,
            msg_type=pref.category,
            status=pref.value.lower(),
        )

    return handle
