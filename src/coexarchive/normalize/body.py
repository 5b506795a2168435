"""The body and its envelope: parse, ``object`` → ``entry[]`` → ``changes[]``, route each value."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from pydantic import ValidationError

from coexarchive.jsonstrict import duplicate_key, skeleton
from coexarchive.normalize._base import (
    _CHAIN_ID,
    _MISSING,
    MAX_BODY_BYTES,
    MAX_DEPTH,
    NormalizeResult,
    _Change,
    _each,
    _id_text,
    _not_a,
    _one,
    _phone,
    _Rejected,
    _seconds,
    _Sink,
    _type_name,
    _validation_reason,
)
from coexarchive.normalize.contacts import _preference, _state_sync
from coexarchive.normalize.fast import _fast_id, _fast_status, _fast_text, _with_fast_path
from coexarchive.normalize.history import _history_chunks
from coexarchive.normalize.management import _MANAGEMENT, _unsupported
from coexarchive.normalize.media import media_receipt_record
from coexarchive.normalize.messages import _echo, _inbound, _status, _value_error
from coexarchive.normalize.outbound import _outbound
from coexarchive.webhooks._base import NumberText
from coexarchive.webhooks.envelope import WHATSAPP_OBJECT, Metadata

# After strings are removed: a fraction, an exponent, or an integer orjson may turn into a float.
_INEXACT_NUMBER = re.compile(rb"[0-9][.eE]|[0-9]{19}")
# The same test as four substring searches once every digit reads "0" (scanning every body's
# skeleton with the regex cost four times as much): see _has_inexact_number.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_NINETEEN_DIGITS = b"0" * 19
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
    Cloud API send (``schemas/RAW_LANDING.md`` §4), ``"media"`` for a media fetch receipt (§4a).
    ``auth`` holds the ``detail`` members that say how the delivery was authenticated
    (``coexarchive.raw.DeliveryAuth.check``); every record of the delivery carries them.
    """
    sink = _Sink(raw_key, raw_line, received_time, auth or {})
    try:
        tree = _parse_body(body)
        if source == "outbound":
            sink.records.append(_outbound(tree, sink))
        elif source == "media":
            sink.records.append(media_receipt_record(tree, sink))
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
    if _has_inexact_number(text_skeleton):
        tree = json.loads(body.decode("utf-8"), parse_float=NumberText, parse_int=_exact_int)
    return tree


def _has_inexact_number(skeleton: bytes) -> bool:
    """Whether ``_INEXACT_NUMBER`` matches ``skeleton``: a digit before ``.``/``e``/``E``, or 19
    digits in a row (only digits become ``0``, so each match is one of the marks)."""
    zeroed = skeleton.translate(_DIGITS_AS_ZERO)
    return b"0." in zeroed or b"0e" in zeroed or b"0E" in zeroed or _NINETEEN_DIGITS in zeroed


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
        if "metadata" not in value:
            raise _Rejected("value.metadata is missing (expected an object with phone_number_id)")
        if type(metadata) is not dict:
            raise _Rejected(_not_a("value.metadata", metadata, "an object"))
        chain_id, business_phone = _route_of(metadata)
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


def _route_of(metadata: dict[str, Any]) -> tuple[str, str | None]:
    """The chain id and business phone of ``value.metadata``, as ``Metadata`` validates them.

    Plain strings (every delivery Meta sends) are what validation hands back unchanged; any other
    shape is validated (``tests/unit/test_normalize_fast.py`` holds both to the same result).
    """
    phone, display = metadata.get("phone_number_id"), metadata.get("display_phone_number")
    if _fast_id(phone) and (display is None or _fast_id(display)):
        return phone, display
    return _validated_route(metadata)


def _validated_route(metadata: dict[str, Any]) -> tuple[str, str | None]:
    try:
        meta = Metadata.model_validate(metadata)
    except ValidationError as exc:
        raise _Rejected("value.metadata: " + _validation_reason(exc)) from None
    return meta.phone_number_id, meta.display_phone_number


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
