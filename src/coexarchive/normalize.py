"""Webhook delivery bodies → archive records and quarantined items (pure: no clock, env or I/O).

:func:`normalize_delivery` never raises on bad input. A body that cannot be read as a WhatsApp
webhook at all is quarantined whole, with its exact bytes; an entry, change or item that fails is
quarantined alone (re-serialised, with its JSON path) while its valid siblings become records.
The identity rule of every record kind, and what ``detail`` holds, is in
``schemas/RECORD_KINDS.md``.

Numbers: bodies are parsed with orjson. When a body holds a number with a fraction or exponent,
or an integer too long for 64 bits, it is parsed again with the standard library so that each
such number is kept as its exact source text (a JSON string in ``detail``), never a float.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

import orjson
from pydantic import BaseModel, ValidationError

from coexarchive.jsonstrict import duplicate_key, skeleton
from coexarchive.records import Direction, Kind, Origin, Record, RecordId, stable_id
from coexarchive.webhooks._base import MAX_ID_LENGTH, NumberText
from coexarchive.webhooks.account import AccountUpdate
from coexarchive.webhooks.echoes import MessageEcho
from coexarchive.webhooks.envelope import WHATSAPP_OBJECT, Metadata, WebhookError
from coexarchive.webhooks.history import (
    HISTORY_DECLINED_CODE,
    ChunkMetadata,
    HistoryMessage,
    ThreadContext,
)
from coexarchive.webhooks.messages import MEDIA_TYPES, Media, Message, MessageContent, MessageType
from coexarchive.webhooks.preferences import UserPreference
from coexarchive.webhooks.quality import PhoneNumberQualityUpdate
from coexarchive.webhooks.state_sync import StateSyncItem
from coexarchive.webhooks.statuses import Status
from coexarchive.webhooks.templates import (
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

__all__ = [
    "DETAIL_VERSION",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "NormalizeResult",
    "Quarantined",
    "message_record_id",
    "normalize_delivery",
]

DETAIL_VERSION: Final = 1
# Meta sends at most 3 MB; anything far beyond that is not a webhook.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
# A webhook envelope nests about 10 levels deep; 64 leaves room for unknown extensions.
MAX_DEPTH: Final = 64
# One event's detail; a text message tops out near 4 kB, a Flow reply at a few tens of kB.
MAX_DETAIL_CHARS: Final = 1024 * 1024
# Unix seconds up to 9999-12-31: a millisecond value sent by mistake does not pass.
MAX_SECONDS: Final = 253_402_300_799

_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# After strings are removed: a fraction, an exponent, or an integer orjson may turn into a float.
_INEXACT_NUMBER = re.compile(rb"[0-9][.eE]|[0-9]{19}")
_BRACKETS = bytes(range(256)).translate(None, b"{}[]")
_INT64_MIN: Final = -(2**63)
_UINT64_END: Final = 2**64

_MESSAGE_FIELDS = frozenset(
    {"messages", "smb_message_echoes", "history", "smb_app_state_sync", "user_preferences"}
)
_KNOWN_KEYS: Final[dict[str, frozenset[str]]] = {
    "messages": frozenset({"messages", "statuses", "errors"}),
    "smb_message_echoes": frozenset({"message_echoes", "errors"}),
    "history": frozenset({"history", "messages", "message_echoes", "errors"}),
    "smb_app_state_sync": frozenset({"state_sync", "errors"}),
    "user_preferences": frozenset({"user_preferences", "errors"}),
}
_VALUE_SIDE_KEYS = frozenset({"messaging_product", "metadata", "contacts"})
_KNOWN_TYPES = frozenset(MessageType)
# Plain ``str`` values for the record columns (an enum member's ``.value`` is a slow descriptor).
_VALUES: Final[dict[Kind | Origin | Direction, str]] = {
    member: str(member.value) for enum in (Kind, Origin, Direction) for member in enum
}


@dataclass(frozen=True)
class Quarantined:
    """An input that did not become a record, with a content-free reason and where it was."""

    raw_key: str
    raw_line: int
    reason: str
    location: str  # a JSON path such as "entry[0].changes[1].value.messages[3]", or "$"
    payload: bytes  # whole-body failures: the exact body; otherwise the item, re-serialised


@dataclass(frozen=True)
class NormalizeResult:
    records: list[Record]
    quarantined: list[Quarantined]


def normalize_delivery(
    body: bytes,
    *,
    raw_key: str,
    raw_line: int,
    received_time: int,
    source: str = "webhook",
    auth: Mapping[str, str] | None = None,
) -> NormalizeResult:
    """Normalise one landed body; ``received_time`` is in ms since the epoch.

    ``source`` is the landing line's: ``"webhook"`` for Meta's POSTs, ``"outbound"`` for a captured
    Cloud API send (``schemas/RAW_LANDING.md`` §4). ``auth`` holds the ``detail`` members that say
    how the delivery was authenticated (``coexarchive.raw.DeliveryAuth.check``); every record of
    the delivery carries them.
    """
    sink = _Sink(raw_key, raw_line, received_time, auth or {})
    try:
        tree = _parse_body(body)
        if source == "outbound":
            sink.records.append(_outbound(tree, sink))
        elif source == "webhook":
            _walk_body(tree, sink)
        else:
            raise _Rejected(f"unknown landing source {source!r}")
    except _Rejected as rejected:
        return NormalizeResult([], [sink.whole_body(rejected.reason, body)])
    except Exception as exc:  # never raise: a bug here must not lose the delivery
        return NormalizeResult(
            [], [sink.whole_body(f"internal error ({type(exc).__name__})", body)]
        )
    return NormalizeResult(sink.records, sink.quarantined)


# ---------------------------------------------------------------------------------------------
# Plumbing


class _Rejected(Exception):
    """An input part is unusable; ``reason`` names fields and types, never content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Sink:
    raw_key: str
    raw_line: int
    received_time: int
    auth: Mapping[str, str]
    records: list[Record] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    def whole_body(self, reason: str, body: Any) -> Quarantined:
        if isinstance(body, str):
            payload = body.encode("utf-8", "surrogatepass")
        elif isinstance(body, bytes | bytearray | memoryview):
            payload = bytes(body)
        else:
            payload = repr(body).encode("utf-8", "backslashreplace")
        return Quarantined(self.raw_key, self.raw_line, reason, "$", payload)

    def reject(self, reason: str, location: str, item: Any) -> None:
        self.quarantined.append(
            Quarantined(self.raw_key, self.raw_line, reason, location, _reserialise(item))
        )


def _reserialise(item: Any) -> bytes:
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(item).encode("utf-8", "backslashreplace")


class _Missing:
    """What ``.get`` returns for an absent member, so that "missing" and "null" are told apart."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()
_TYPE_PHRASES: Final = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
    float: "a number", type(None): "null",
}  # fmt: skip


def _type_name(value: Any) -> str:
    """What a JSON value is, as a phrase: "missing", "null", "an array", "a string", …"""
    if value is _MISSING:
        return "missing"
    if type(value) is NumberText:
        # Kept as source text (module docstring): it is a number, not a string.
        if value.lstrip("-").isdigit():
            return "an integer beyond 64 bits"
        return "a number with a fraction or exponent"
    return _TYPE_PHRASES.get(type(value), type(value).__name__)


def _not_a(name: str, value: Any, wanted: str) -> str:
    """``"<name> is missing"`` or ``"<name> is <what it is>, not <wanted>"``."""
    if value is _MISSING:
        return f"{name} is missing (expected {wanted})"
    return f"{name} is {_type_name(value)}, not {wanted}"


def _validation_reason(exc: ValidationError) -> str:
    # A union (``str | int``) reports one error per member, each at "<field>.<member type>":
    # they are said once, as "expected a string or an integer".
    merged: dict[str, tuple[list[str], str]] = {}
    for error in exc.errors(include_url=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        member = _UNION_MEMBERS.get(loc[-1]) if loc else None
        where = ".".join(loc[:-1] if member else loc) or "item"
        # The input's type says what was wrong; its content never enters a reason.
        found = error.get("input", _MISSING) if error["type"] != "missing" else _MISSING
        got = "" if found is _MISSING else f" (got {_type_name(found)})"
        if member is None:
            merged.setdefault(f"{where}\x00{len(merged)}", ([], f"{where}: {error['msg']}{got}"))
        else:
            merged.setdefault(where, ([], got))[0].append(member)
    parts = [
        f"{key}: expected {' or '.join(members)}{got}" if members else got
        for key, (members, got) in merged.items()
    ]
    shown = parts[:3]
    more = len(parts) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


_UNION_MEMBERS: Final = {"str": "a string", "int": "an integer", "bool": "a boolean"}


def _each(sink: _Sink, items: Any, path: str, handle: Callable[[Any, str], Record | None]) -> None:
    """Run ``handle`` on every element of ``items``; a failing element is quarantined alone."""
    if not isinstance(items, list):
        sink.reject(_not_a(path.rsplit(".", 1)[-1], items, "an array"), path, items)
        return
    for index, item in enumerate(items):
        _one(sink, item, f"{path}[{index}]", handle)


def _one(sink: _Sink, item: Any, path: str, handle: Callable[[Any, str], Record | None]) -> None:
    """Run ``handle`` on one item; if it fails, only that item is quarantined."""
    try:
        if type(item) is not dict:
            raise _Rejected(_not_a("item", item, "an object"))
        record = handle(item, path)
    except ValidationError as exc:
        sink.reject(_validation_reason(exc), path, item)
    except _Rejected as rejected:
        sink.reject(rejected.reason, path, item)
    except Exception as exc:  # keep the siblings: one odd item must not fail the delivery
        sink.reject(f"internal error ({type(exc).__name__})", path, item)
    else:
        if record is not None:
            sink.records.append(record)


# ---------------------------------------------------------------------------------------------
# Body


def _parse_body(body: bytes) -> Any:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise _Rejected(f"body is {type(body).__name__}, not bytes")
    if len(body) > MAX_BODY_BYTES:
        raise _Rejected(f"body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit")
    body = bytes(body)
    try:
        tree = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _Rejected(f"body is not valid UTF-8 (at byte {bad.start})") from None
        if "depth" in exc.msg:
            # orjson stops at 1024 levels; the body's own limit is far lower.
            raise _Rejected(f"body nests deeper than {MAX_DEPTH} levels") from None
        raise _Rejected(f"body is not valid JSON (at character {exc.pos})") from None
    if type(tree) is not dict:
        raise _Rejected(_not_a("body", tree, "an object"))
    text_skeleton = skeleton(body)
    if _depth_exceeds(text_skeleton, MAX_DEPTH):
        raise _Rejected(f"body nests deeper than {MAX_DEPTH} levels")
    duplicate = duplicate_key(body, tree, text_skeleton)
    if duplicate is not None:
        raise _Rejected(
            f"duplicate key {duplicate}: JSON parsers disagree on which value counts, "
            "so the body is ambiguous"
        )
    if _INEXACT_NUMBER.search(text_skeleton):
        tree = json.loads(body.decode("utf-8"), parse_float=NumberText, parse_int=_exact_int)
    return tree


def _depth_exceeds(skeleton: bytes, limit: int) -> bool:
    brackets = skeleton.translate(None, _BRACKETS)
    # Each pass removes the innermost level; the JSON is valid, so brackets balance.
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"{}", b"").replace(b"[]", b"")
    return bool(brackets)


def _exact_int(text: str) -> int | str:
    value = int(text)
    return value if _INT64_MIN <= value < _UINT64_END else NumberText(text)


def _walk_body(tree: dict[str, Any], sink: _Sink) -> None:
    if "object" not in tree and "entry" not in tree and "history" in tree and "metadata" in tree:
        # Meta documents the history decline as a bare ``value``; accept that form too.
        _change(sink, "history", tree, "$", waba_id=None, entry_time=None)
        return
    found = tree.get("object", _MISSING)
    if found != WHATSAPP_OBJECT:
        if found is _MISSING:
            raise _Rejected(f"object is missing (expected {WHATSAPP_OBJECT!r})")
        if type(found) is str:
            raise _Rejected(f"object is not {WHATSAPP_OBJECT!r} (got another name)")
        raise _Rejected(f"object is {_type_name(found)}, not the string {WHATSAPP_OBJECT!r}")
    entries = tree.get("entry", _MISSING)
    if not isinstance(entries, list):
        raise _Rejected(_not_a("entry", entries, "an array"))
    for index, entry in enumerate(entries):
        path = f"entry[{index}]"
        try:
            _entry(sink, entry, path)
        except _Rejected as rejected:
            sink.reject(rejected.reason, path, entry)


def _entry(sink: _Sink, entry: Any, path: str) -> None:
    if type(entry) is not dict:
        raise _Rejected(_not_a("entry", entry, "an object"))
    waba_id = _id_text(entry.get("id"), "entry.id")
    if waba_id is None:
        raise _Rejected("entry.id missing")
    entry_time = _seconds(entry.get("time"), "entry.time")
    changes = entry.get("changes", _MISSING)
    if not isinstance(changes, list):
        raise _Rejected(_not_a("entry.changes", changes, "an array"))
    for index, change in enumerate(changes):
        change_path = f"{path}.changes[{index}]"
        try:
            if type(change) is not dict:
                raise _Rejected(_not_a("change", change, "an object"))
            name = change.get("field", _MISSING)
            if type(name) is not str:
                raise _Rejected(_not_a("change.field", name, "a field name"))
            if not name or len(name) > 128:
                raise _Rejected(f"change.field is {len(name)} characters long, not 1 to 128")
            value = change.get("value", _MISSING)
            if type(value) is not dict:
                raise _Rejected(_not_a("change.value", value, "an object"))
            _change(sink, name, value, f"{change_path}.value", waba_id, entry_time)
        except _Rejected as rejected:
            sink.reject(rejected.reason, change_path, change)
        except Exception as exc:  # one change must not fail its siblings
            sink.reject(f"internal error ({type(exc).__name__})", change_path, change)


# ---------------------------------------------------------------------------------------------
# Values


@dataclass
class _Change:
    """What every record of one change shares."""

    sink: _Sink
    field: str
    chain_id: str
    waba_id: str | None
    business_phone: str | None
    entry_time: int | None
    contacts: dict[str, dict[str, Any]]
    single_contact: dict[str, Any] | None

    def record(
        self,
        *,
        record_id: str,
        kind: Kind,
        origin: Origin,
        direction: Direction,
        seconds: int | None,
        path: str,
        raw: Any,
        extra: dict[str, Any],
        **columns: Any,
    ) -> Record:
        if seconds is not None:
            event_time, source = seconds * 1000, "item"
        elif self.entry_time is not None:
            event_time, source = self.entry_time * 1000, "entry"
        else:
            event_time, source = self.sink.received_time, "received"
        extra["v"] = DETAIL_VERSION
        extra["field"] = self.field
        extra["path"] = path
        extra["time_source"] = source
        extra["raw"] = raw
        extra.update(self.sink.auth)
        detail = orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
        if len(detail) > MAX_DETAIL_CHARS:
            raise _Rejected(f"item is larger than {MAX_DETAIL_CHARS} characters")
        wa_id = columns.get("customer_wa_id")
        return Record(
            chain_id=self.chain_id,
            record_id=record_id,
            kind=_VALUES[kind],
            origin=_VALUES[origin],
            direction=_VALUES[direction],
            event_time=event_time,
            received_time=self.sink.received_time,
            waba_id=self.waba_id,
            business_phone=self.business_phone,
            customer_id=wa_id if wa_id is not None else columns.get("customer_user_id"),
            detail=detail,
            raw_key=self.sink.raw_key,
            raw_line=self.sink.raw_line,
            **columns,
        )

    def contact(self, wa_id: str | None, user_id: str | None) -> dict[str, Any] | None:
        found = self.contacts.get(wa_id or "") or self.contacts.get(user_id or "")
        return found if found is not None else self.single_contact


def _change(
    sink: _Sink,
    name: str,
    value: dict[str, Any],
    path: str,
    waba_id: str | None,
    entry_time: int | None,
) -> None:
    metadata = value.get("metadata")
    if name in _MESSAGE_FIELDS or (name not in _MANAGEMENT and metadata is not None):
        try:
            meta = Metadata.model_validate(metadata)
        except ValidationError as exc:
            raise _Rejected("value.metadata: " + _validation_reason(exc)) from None
        chain_id, business_phone = meta.phone_number_id, meta.display_phone_number
    elif waba_id is not None:
        chain_id, business_phone = f"waba-{waba_id}", _business_phone_of(value)
    else:
        raise _Rejected("no phone_number_id or WABA id to route by")
    if not _CHAIN_ID.fullmatch(chain_id):
        raise _Rejected("chain id is not in the allowed alphabet (letters, digits, . _ : -)")
    contacts, single = _contacts(value.get("contacts"))
    change = _Change(sink, name, chain_id, waba_id, business_phone, entry_time, contacts, single)
    handler = _MANAGEMENT.get(name)
    if handler is not None:
        _one(sink, value, path, lambda item, item_path: handler(change, item, item_path))
        return
    known = _KNOWN_KEYS.get(name)
    if known is None:
        _one(sink, value, path, lambda item, item_path: _unsupported(change, item, item_path, None))
        return
    present = 0
    for key in value:
        key_path = f"{path}.{key}"
        if key in known:
            present += 1
            _each(sink, value[key], key_path, _ITEM_HANDLERS[name, key](change))
        elif key not in _VALUE_SIDE_KEYS and isinstance(value[key], dict | list):
            # Something Meta added that we do not model yet: archive it whole.
            present += 1
            _unknown_part(sink, change, value[key], key_path, key)
    if not present:
        _one(sink, value, path, lambda item, item_path: _unsupported(change, item, item_path, None))


def _unknown_part(sink: _Sink, change: _Change, part: Any, path: str, key: str) -> None:
    try:
        sink.records.append(_unsupported(change, part, path, key))
    except _Rejected as rejected:
        sink.reject(rejected.reason, path, part)


def _business_phone_of(value: dict[str, Any]) -> str | None:
    for key in ("display_phone_number", "phone_number"):
        found = value.get(key)
        if type(found) is str and len(found) <= 64:
            return found
    return None


def _contacts(raw: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Index ``value.contacts[]`` by wa_id and user_id; malformed entries are skipped here."""
    if not isinstance(raw, list):
        return {}, None
    index: dict[str, dict[str, Any]] = {}
    for contact in raw:
        if type(contact) is dict:
            for key in ("wa_id", "user_id"):
                ident = contact.get(key)
                if type(ident) is str:
                    index.setdefault(_phone(ident) or ident, contact)
    single = raw[0] if len(raw) == 1 and type(raw[0]) is dict else None
    return index, single


# ---------------------------------------------------------------------------------------------
# Scalars


def _seconds(value: Any, where: str) -> int | None:
    """Unix seconds from a string or an integer; malformed values reject the item."""
    if value is None:
        return None
    if type(value) is int:
        seconds = value
    elif type(value) is str and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        seconds = int(value)
    elif type(value) is str:
        raise _Rejected(f"{where} is not unix seconds (got {_string_shape(value)})")
    else:
        raise _Rejected(f"{where} is not unix seconds (got {_type_name(value)})")
    if not 0 <= seconds <= MAX_SECONDS:
        raise _Rejected(f"{where} is out of range (unix seconds up to the year 9999)")
    return seconds


def _string_shape(value: str) -> str:
    """What is wrong with a timestamp string, without its content."""
    if value.isascii() and value.isdigit():
        return f"{len(value)} digits, more than unix seconds up to the year 9999 have"
    if _DECIMAL.fullmatch(value):
        return "a negative number, or one with a fraction or exponent"
    return "a string that is not decimal digits"


def _id_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    if type(value) is str and 0 < len(value) <= 512:
        return value
    raise _Rejected(f"{where} is not an identifier (got {_type_name(value)})")


def _phone(number: str | None) -> str | None:
    """A phone number or wa_id without spaces or the leading ``+`` some payloads carry."""
    if number is None:
        return None
    cleaned = number.strip().lstrip("+")
    return cleaned or None


def _digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def message_record_id(chain_id: str, wamid: str) -> str:
    """Identity of a message in every sighting (live, echo, history, follow-up): chain + wamid."""
    # ``stable_id("message", chain_id, wamid)``, spelled out: this runs once or twice per event.
    joined = f"message\x1f{chain_id}\x1f{wamid}"
    return RecordId(hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32])


def _first_error(errors: list[WebhookError] | None) -> int | None:
    if errors:
        for error in errors:
            if error.code is not None:
                return error.code
    return None


# ---------------------------------------------------------------------------------------------
# Messages, echoes and history messages


@dataclass(frozen=True)
class _Content:
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
    if wamid is not None:
        record_id = message_record_id(change.chain_id, wamid)
    elif kind in (Kind.MESSAGE_EDIT, Kind.MESSAGE_REVOKE) and content.context_wamid is not None:
        # No own wamid: the edit is identified by what it edits and when.
        record_id = stable_id(kind.value, change.chain_id, content.context_wamid, seconds)
    else:
        raise _Rejected("id missing")
    ref_record_id = None
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
        extra: dict[str, Any] = {"history_media_followup": True} if history else {}
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
        extra: dict[str, Any] = {"history_media_followup": True} if history else {}
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


# ---------------------------------------------------------------------------------------------
# Statuses and errors


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


# ---------------------------------------------------------------------------------------------
# Fast paths
#
# Most of the traffic is plain text messages and statuses. For exactly those shapes the models'
# validation is known to pass and to hand back the values unchanged, so these functions read
# the values from the parsed JSON directly and build the record through the same code as the
# validated path; ``tests/unit/test_normalize_fast.py`` holds both paths to identical records.
# Anything they do not fully recognise (another key, another type, a str subclass such as
# NumberText) returns None, and the validated path decides, quarantine reasons included.

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
    """A plain inbound text message, or None to take the validated path."""
    if raw.keys() != _FAST_TEXT_KEYS or raw["type"] != "text" or type(raw["type"]) is not str:
        return None
    sender, wamid, text, timestamp = raw["from"], raw["id"], raw["text"], raw["timestamp"]
    if not (_fast_id(sender) and _fast_id(wamid) and timestamp is not None):
        return None
    if type(text) is not dict or text.keys() != {"body"} or type(text["body"]) is not str:
        return None
    if not _fast_timestamp(timestamp):
        return None
    return _message_record(
        change,
        _Content("text", text["body"], None, None, None, {}),
        _seconds(timestamp, "timestamp"),
        raw,
        path,
        has_context=False,
        wamid=wamid,
        default_kind=Kind.MESSAGE,
        origin=Origin.CUSTOMER,
        direction=Direction.INBOUND,
        wa_id=_phone(sender),
        user_id=None,
        extra={},
        status=None,
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


def _value_error(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        error = WebhookError.model_validate(raw)
        return change.record(
            record_id=stable_id("error", change.chain_id, change.field, error.code, _digest(raw)),
            kind=Kind.ACCOUNT_EVENT,
            origin=Origin.SYSTEM,
            direction=Direction.NONE,
            seconds=None,
            path=path,
            raw=raw,
            extra={},
            msg_type="webhook_error",
            status="error",
            error_code=error.code,
        )

    return handle


# ---------------------------------------------------------------------------------------------
# History chunks


def _history_chunk(sink: _Sink, change: _Change, raw: dict[str, Any], path: str) -> None:
    try:
        chunk = ChunkMetadata.model_validate(raw.get("metadata") or {})
    except ValidationError as exc:
        raise _Rejected("metadata: " + _validation_reason(exc)) from None
    chunk_detail = {
        "phase": chunk.phase,
        "chunk_order": chunk.chunk_order,
        "progress": chunk.progress,
    }
    threads = raw.get("threads")
    if threads is not None and not isinstance(threads, list):
        raise _Rejected(_not_a("threads", threads, "an array"))
    found = False
    if "errors" in raw:
        found = True
        _each(sink, raw["errors"], f"{path}.errors", _history_error(change))
    if threads is not None:
        for index, thread in enumerate(threads):
            thread_path = f"{path}.threads[{index}]"
            try:
                found = _thread(sink, change, thread, thread_path, chunk_detail) or found
            except _Rejected as rejected:
                sink.reject(rejected.reason, thread_path, thread)
    if not found:
        sink.records.append(_history_progress(change, raw, path, chunk_detail))


def _thread(sink: _Sink, change: _Change, thread: Any, path: str, chunk: dict[str, Any]) -> bool:
    if type(thread) is not dict:
        raise _Rejected(_not_a("thread", thread, "an object"))
    thread_id = _phone(_id_text(thread.get("id"), "thread.id"))
    try:
        context = ThreadContext.model_validate(thread.get("context") or {})
    except ValidationError as exc:
        raise _Rejected("context: " + _validation_reason(exc)) from None
    messages = thread.get("messages")
    if messages is None:
        return False
    history = {**chunk, "thread_id": thread_id, "thread_context": thread.get("context")}
    customer_wa = thread_id or _phone(context.wa_id)
    business = _phone(change.business_phone)

    def handle(raw: dict[str, Any], item_path: str) -> Record:
        msg = HistoryMessage.model_validate(raw)
        history_context = msg.history_context
        from_me = history_context.from_me if history_context is not None else None
        sender = _phone(msg.from_)
        outbound = bool(from_me) or (sender is not None and sender == business)
        if from_me is None and not outbound and msg.to is not None and sender != customer_wa:
            outbound = True
        status = history_context.status if history_context is not None else None
        if outbound:
            wa_id = _phone(msg.to) or customer_wa
            user_id = _text_extra(msg, "to_user_id") or context.user_id
        else:
            wa_id = sender or customer_wa
            user_id = msg.from_user_id or context.user_id
        return _message_like(
            change,
            msg,
            raw,
            item_path,
            wamid=msg.id,
            default_kind=Kind.HISTORY_MESSAGE,
            origin=Origin.HISTORY_IMPORT,
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            wa_id=wa_id,
            user_id=user_id,
            extra={"history": history},
            status=status.lower() if status is not None else None,
        )

    _each(sink, messages, f"{path}.messages", handle)
    return True


def _text_extra(model: BaseModel, key: str) -> str | None:
    extra = model.model_extra or {}
    found = extra.get(key)
    return found if type(found) is str else None


def _history_error(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        error = WebhookError.model_validate(raw)
        declined = error.code == HISTORY_DECLINED_CODE
        return change.record(
            record_id=stable_id("history_error", change.chain_id, error.code, _digest(raw)),
            kind=Kind.ACCOUNT_EVENT,
            origin=Origin.SYSTEM,
            direction=Direction.NONE,
            seconds=None,
            path=path,
            raw=raw,
            extra={},
            msg_type="history_declined" if declined else "history_error",
            status="declined" if declined else "error",
            error_code=error.code,
        )

    return handle


def _history_progress(
    change: _Change, raw: dict[str, Any], path: str, chunk: dict[str, Any]
) -> Record:
    """A chunk with no messages and no errors still says how far the import has got."""
    progress = chunk["progress"]
    return change.record(
        record_id=stable_id("history_chunk", change.chain_id, _digest(raw)),
        kind=Kind.ACCOUNT_EVENT,
        origin=Origin.SYSTEM,
        direction=Direction.NONE,
        seconds=None,
        path=path,
        raw=raw,
        extra={"history": chunk},
        msg_type="history_progress",
        status=None if progress is None else str(progress),
    )


# ---------------------------------------------------------------------------------------------
# Contact book, consent


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


# ---------------------------------------------------------------------------------------------
# Management fields (one event per change value) and unknown shapes


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
    return change.record(
        record_id=_management_id(change, raw),
        kind=kind,
        origin=Origin.SYSTEM,
        direction=Direction.NONE,
        seconds=None,
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
    return change.record(
        record_id=stable_id(
            "unsupported", change.chain_id, change.field, key, change.entry_time, _digest(raw)
        ),
        kind=Kind.UNSUPPORTED,
        origin=Origin.SYSTEM,
        direction=Direction.NONE,
        seconds=None,
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


def _history_chunks(change: _Change) -> Callable[[Any, str], Record | None]:
    def handle(raw: dict[str, Any], path: str) -> None:
        _history_chunk(change.sink, change, raw, path)

    return handle


_ITEM_HANDLERS: Final[dict[tuple[str, str], Callable[[_Change], Callable[[Any, str], Any]]]] = {
    ("messages", "messages"): _with_fast_path(
        _fast_text, lambda change: _inbound(change, history=False)
    ),
    ("messages", "statuses"): _with_fast_path(_fast_status, _status),
    ("smb_message_echoes", "message_echoes"): lambda change: _echo(change, history=False),
    ("history", "history"): _history_chunks,
    ("history", "messages"): lambda change: _inbound(change, history=True),
    ("history", "message_echoes"): lambda change: _echo(change, history=True),
    ("smb_app_state_sync", "state_sync"): _state_sync,
    ("user_preferences", "user_preferences"): _preference,
    **{(name, "errors"): _value_error for name in _KNOWN_KEYS},
}


# ---------------------------------------------------------------------------------------------
# Outbound capture


def _outbound(tree: dict[str, Any], sink: _Sink) -> Record:
    """A captured Cloud API send: the request as posted and Meta's answer with the wamid."""
    chain_id = _id_text(tree.get("phone_number_id"), "phone_number_id")
    if chain_id is None or not _CHAIN_ID.fullmatch(chain_id):
        raise _Rejected("phone_number_id missing or not a valid chain id")
    request, response = tree.get("request"), tree.get("response")
    if type(request) is not dict or type(response) is not dict:
        raise _Rejected("capture needs a request object and a response object")
    messages = response.get("messages")
    if type(messages) is not list or not messages or type(messages[0]) is not dict:
        raise _Rejected("response.messages[0] missing: the send has no wamid")
    wamid = _id_text(messages[0].get("id"), "response.messages[0].id")
    if wamid is None:
        raise _Rejected("response.messages[0].id missing")
    msg_type = request.get("type") if type(request.get("type")) is str else "text"
    content = _object(request.get(msg_type))
    found = request.get("template") if msg_type == "template" else None
    template: dict[str, Any] = found if type(found) is dict else {}
    language = template.get("language")
    context = _object(request.get("context"))
    to = request.get("to") if type(request.get("to")) is str else None
    contacts = response.get("contacts")
    answered = (
        contacts[0] if type(contacts) is list and contacts and type(contacts[0]) is dict else {}
    )
    wa_id = _phone(answered.get("wa_id") if type(answered.get("wa_id")) is str else to)
    user_id = request.get("recipient") if type(request.get("recipient")) is str else None
    sent_at = tree.get("sent_at")
    event_time = sent_at if type(sent_at) is int and sent_at > 0 else sink.received_time
    text = content.get("body") if msg_type == "text" else content.get("caption")
    detail = {
        "v": DETAIL_VERSION,
        "field": "outbound_capture",
        "path": "$",
        "time_source": "sent_at" if event_time == sent_at else "received",
        "raw": tree,
        **sink.auth,
    }
    return Record(
        chain_id=chain_id,
        record_id=message_record_id(chain_id, wamid),
        kind=_VALUES[Kind.OUTBOUND],
        origin=_VALUES[Origin.CLOUD_API],
        direction=_VALUES[Direction.OUTBOUND],
        event_time=event_time,
        received_time=sink.received_time,
        customer_id=wa_id if wa_id is not None else user_id,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        wamid=wamid,
        msg_type=msg_type,
        text=text if type(text) is str else None,
        media_id=content.get("id") if type(content.get("id")) is str else None,
        template_name=template.get("name") if type(template.get("name")) is str else None,
        template_language=(
            language.get("code")
            if type(language) is dict and type(language.get("code")) is str
            else None
        ),
        context_wamid=(
            context.get("message_id") if type(context.get("message_id")) is str else None
        ),
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        raw_key=sink.raw_key,
        raw_line=sink.raw_line,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}
