"""Messages, echoes and statuses (``messages``, ``smb_message_echoes`` and their errors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from coexarchive.normalize._base import (
    FOLLOW_UP,
    _Change,
    _digest,
    _first_error,
    _phone,
    _Rejected,
    _seconds,
    follow_up_record_id,
    message_record_id,
)
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.webhooks.echoes import MessageEcho
from coexarchive.webhooks.envelope import WebhookError
from coexarchive.webhooks.messages import MEDIA_TYPES, Media, Message, MessageContent, MessageType
from coexarchive.webhooks.statuses import Status

_KNOWN_TYPES = frozenset(MessageType)


class _Content(NamedTuple):
    """A message's typed columns and detail additions (a tuple: built once or twice per event)."""

    msg_type: str
    text: str | None
    media_id: str | None
    context_wamid: str | None
    error_code: int | None
    detail: dict[str, Any]


def _media_detail(media: Media) -> dict[str, Any]:
    found = {
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "filename": media.filename,
        "voice": media.voice,
        "animated": media.animated,
        "url": media.url,
    }
    return {key: value for key, value in found.items() if value is not None}


def _content(msg: MessageContent, raw: dict[str, Any]) -> _Content:
    """Typed columns and detail additions of a message's type-named content."""
    kind = msg.type
    text: str | None = None
    media_id: str | None = None
    context_wamid = msg.context.id if msg.context is not None else None
    detail: dict[str, Any] = {}
    if kind == "text":
        text = msg.text.body if msg.text is not None else None
    elif kind in MEDIA_TYPES:
        media = getattr(msg, kind)
        if media is not None:
            media_id, text = media.id, media.caption
            if found := _media_detail(media):
                detail["media"] = found
    elif kind == "location" and msg.location is not None:
        place = msg.location
        detail["location"] = {
            key: value
            for key, value in (
                ("latitude", place.latitude),
                ("longitude", place.longitude),
                ("name", place.name),
                ("address", place.address),
                ("url", place.url),
            )
            if value is not None
        }
    elif kind == "interactive" and msg.interactive is not None:
        text = _interactive(msg, detail)
    elif kind == "button" and msg.button is not None:
        text = msg.button.text
        detail["button_payload"] = msg.button.payload
    elif kind == "reaction" and msg.reaction is not None:
        text = msg.reaction.emoji or None
        context_wamid = msg.reaction.message_id
        detail["reaction_removed"] = not msg.reaction.emoji
    elif kind == "order" and msg.order is not None:
        text = msg.order.text
        detail["order_items"] = len(msg.order.product_items or ())
    elif kind == "system" and msg.system is not None:
        text = msg.system.body
        detail["system_type"] = msg.system.type
    elif kind == "edit" and msg.edit is not None:
        context_wamid = msg.edit.original_message_id
        text, media_id = _edited(msg, detail)
    elif kind == "revoke" and msg.revoke is not None:
        context_wamid = msg.revoke.original_message_id
    elif kind in ("unsupported", "unknown") and msg.unsupported is not None:
        detail["unsupported_type"] = msg.unsupported.type
    elif kind == "contacts" and msg.contacts is not None:
        detail["contact_cards"] = len(msg.contacts)
    if msg.referral is not None:
        detail["referral"] = raw.get("referral")
    return _Content(kind, text, media_id, context_wamid, _first_error(msg.errors), detail)


def _interactive(msg: MessageContent, detail: dict[str, Any]) -> str | None:
    assert msg.interactive is not None
    reply = msg.interactive
    detail["interactive_type"] = reply.type
    if reply.type == "button_reply" and reply.button_reply is not None:
        detail["reply_id"] = reply.button_reply.id
        return reply.button_reply.title
    if reply.type == "list_reply" and reply.list_reply is not None:
        detail["reply_id"] = reply.list_reply.id
        return reply.list_reply.title
    if reply.type == "nfm_reply" and reply.nfm_reply is not None:
        detail["flow_name"] = reply.nfm_reply.name
        return reply.nfm_reply.body
    return None


def _edited(msg: MessageContent, detail: dict[str, Any]) -> tuple[str | None, str | None]:
    assert msg.edit is not None
    new = msg.edit.message
    detail["original_message_id"] = msg.edit.original_message_id
    if new is None or new.type is None:
        return None, None
    detail["new_type"] = new.type
    if new.type == "text":
        return (new.text.body if new.text is not None else None), None
    media = getattr(new, new.type, None)
    if isinstance(media, Media):
        detail["media"] = _media_detail(media)
        return media.caption, media.id
    return None, None


def _kind_of(msg_type: str, default: Kind) -> Kind:
    if msg_type == "edit":
        return Kind.MESSAGE_EDIT
    if msg_type == "revoke":
        return Kind.MESSAGE_REVOKE
    if msg_type not in _KNOWN_TYPES:
        return Kind.UNSUPPORTED
    return default


def _message_like(
    change: _Change,
    msg: MessageContent,
    raw: dict[str, Any],
    path: str,
    *,
    wamid: str | None,
    default_kind: Kind,
    origin: Origin,
    direction: Direction,
    wa_id: str | None,
    user_id: str | None,
    extra: dict[str, Any],
    status: str | None = None,
) -> Record:
    """The record of an inbound message, an echo or a history message."""
    return _message_record(
        change,
        _content(msg, raw),
        _seconds(msg.timestamp, "timestamp"),
        raw,
        path,
        has_context=msg.context is not None,
        wamid=wamid,
        default_kind=default_kind,
        origin=origin,
        direction=direction,
        wa_id=wa_id,
        user_id=user_id,
        extra=extra,
        status=status,
    )


def _message_record(
    change: _Change,
    content: _Content,
    seconds: int | None,
    raw: dict[str, Any],
    path: str,
    *,
    has_context: bool,
    wamid: str | None,
    default_kind: Kind,
    origin: Origin,
    direction: Direction,
    wa_id: str | None,
    user_id: str | None,
    extra: dict[str, Any],
    status: str | None,
) -> Record:
    """What every message-like record shares once its content is known (both parse paths)."""
    kind = _kind_of(content.msg_type, default_kind)
    ref_record_id = None
    if wamid is not None and extra.get(FOLLOW_UP) and kind == Kind.HISTORY_MESSAGE:
        # A history media follow-up completes its placeholder (same wamid) and never rewrites
        # it: an identity of its own, bound to the placeholder's by ``ref_record_id``.
        record_id = follow_up_record_id(change.chain_id, wamid)
        ref_record_id = message_record_id(change.chain_id, wamid)
    elif wamid is not None:
        record_id = message_record_id(change.chain_id, wamid)
    elif kind in (Kind.MESSAGE_EDIT, Kind.MESSAGE_REVOKE) and content.context_wamid is not None:
        # No own wamid: the edit is identified by what it edits and when.
        record_id = stable_id(kind.value, change.chain_id, content.context_wamid, seconds)
    else:
        raise _Rejected("id missing")
    if content.context_wamid is not None and (
        kind in (Kind.MESSAGE_EDIT, Kind.MESSAGE_REVOKE) or content.msg_type == "reaction"
    ):
        ref_record_id = message_record_id(change.chain_id, content.context_wamid)
    contact = change.contact(wa_id, user_id)
    if contact is not None:
        extra["contact"] = contact
    if (wa_id is None or user_id is None) and contact is not None:
        wa_id = wa_id or _phone(contact.get("wa_id") if type(contact.get("wa_id")) is str else None)
        user_id = user_id or (
            contact.get("user_id") if type(contact.get("user_id")) is str else None
        )
    if has_context:
        extra["context"] = raw.get("context")
    extra.update(content.detail)
    return change.record(
        record_id=record_id,
        kind=kind,
        origin=origin,
        direction=direction,
        seconds=seconds,
        path=path,
        raw=raw,
        extra=extra,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        wamid=wamid,
        msg_type=content.msg_type,
        text=content.text,
        media_id=content.media_id,
        error_code=content.error_code,
        context_wamid=content.context_wamid,
        ref_record_id=ref_record_id,
        status=status,
    )


def _inbound(change: _Change, *, history: bool) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        msg = Message.model_validate(raw)
        extra: dict[str, Any] = {FOLLOW_UP: True} if history else {}
        system = msg.type == "system"
        return _message_like(
            change,
            msg,
            raw,
            path,
            wamid=msg.id,
            default_kind=Kind.HISTORY_MESSAGE if history else Kind.MESSAGE,
            origin=Origin.HISTORY_IMPORT
            if history
            else (Origin.SYSTEM if system else Origin.CUSTOMER),
            direction=Direction.INBOUND,
            wa_id=_phone(msg.from_),
            user_id=msg.from_user_id,
            extra=extra,
        )

    return handle


def _echo(change: _Change, *, history: bool) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        echo = MessageEcho.model_validate(raw)
        extra: dict[str, Any] = {FOLLOW_UP: True} if history else {}
        wa_id = _phone(echo.to)
        if echo.to is not None and wa_id != echo.to:
            extra["to_as_sent"] = echo.to
        return _message_like(
            change,
            echo,
            raw,
            path,
            wamid=echo.id,
            default_kind=Kind.HISTORY_MESSAGE if history else Kind.ECHO,
            origin=Origin.HISTORY_IMPORT if history else Origin.BUSINESS_APP,
            direction=Direction.OUTBOUND,
            wa_id=wa_id,
            user_id=echo.to_user_id,
            extra=extra,
        )

    return handle


def _status(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        status = Status.model_validate(raw)
        group = status.recipient_type == "group"
        return _status_record(
            change,
            raw,
            path,
            wamid=status.id,
            value=status.status.lower(),
            error_code=_first_error(status.errors),
            wa_id=None if group else _phone(status.recipient_id),
            user_id=status.recipient_user_id,
            timestamp=status.timestamp,
        )

    return handle


def _status_record(
    change: _Change,
    raw: dict[str, Any],
    path: str,
    *,
    wamid: str,
    value: str,
    error_code: int | None,
    wa_id: str | None,
    user_id: str | None,
    timestamp: str | int | None,
) -> Record:
    """The record of a status once its fields are known (both parse paths)."""
    extra: dict[str, Any] = {}
    contact = change.contact(wa_id, user_id)
    if contact is not None:
        extra["contact"] = contact
    return change.record(
        record_id=stable_id(
            "status", change.chain_id, wamid, value, error_code if value == "failed" else None
        ),
        kind=Kind.STATUS,
        origin=Origin.CLOUD_API,
        direction=Direction.OUTBOUND,
        seconds=_seconds(timestamp, "timestamp"),
        path=path,
        raw=raw,
        extra=extra,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        wamid=wamid,
        status=value,
        error_code=error_code,
        ref_record_id=message_record_id(change.chain_id, wamid),
    )


def _value_error(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        error = WebhookError.model_validate(raw)
        return change.system_record(
            record_id=stable_id("error", change.chain_id, change.field, error.code, _digest(raw)),
            path=path,
            raw=raw,
            msg_type="webhook_error",
            status="error",
            error_code=error.code,
        )

    return handle
