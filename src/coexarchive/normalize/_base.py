"""What every part of the normaliser shares: results, quarantine plumbing, scalars, records."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import ValidationError

from coexarchive.records import Direction, Kind, Origin, Record, RecordId, stable_id
from coexarchive.webhooks._base import NumberText
from coexarchive.webhooks.envelope import WebhookError

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
    records = sink.records
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        # _one, inlined: this loop runs once per event.
        try:
            if type(item) is not dict:
                raise _Rejected(_not_a("item", item, "an object"))
            record = handle(item, item_path)
        except ValidationError as exc:
            sink.reject(_validation_reason(exc), item_path, item)
        except _Rejected as rejected:
            sink.reject(rejected.reason, item_path, item)
        except Exception as exc:  # keep the siblings: one odd item must not fail the delivery
            sink.reject(f"internal error ({type(exc).__name__})", item_path, item)
        else:
            if record is not None:
                records.append(record)


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
        customer_wa_id: str | None = None,
        customer_user_id: str | None = None,
        wamid: str | None = None,
        msg_type: str | None = None,
        text: str | None = None,
        media_id: str | None = None,
        template_name: str | None = None,
        template_language: str | None = None,
        template_category: str | None = None,
        template_status: str | None = None,
        status: str | None = None,
        error_code: int | None = None,
        context_wamid: str | None = None,
        ref_record_id: str | None = None,
        consent_state: str | None = None,
        window_open: bool | None = None,
        flags: tuple[str, ...] = (),
    ) -> Record:
        sink = self.sink
        if seconds is not None:
            event_time, source = seconds * 1000, "item"
        elif self.entry_time is not None:
            event_time, source = self.entry_time * 1000, "entry"
        else:
            event_time, source = sink.received_time, "received"
        extra["v"] = DETAIL_VERSION
        extra["field"] = self.field
        extra["path"] = path
        extra["time_source"] = source
        extra["raw"] = raw
        extra.update(sink.auth)
        detail = orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
        if len(detail) > MAX_DETAIL_CHARS:
            raise _Rejected(f"item is larger than {MAX_DETAIL_CHARS} characters")
        # Positional, in field order: one event, one record, and keywords cost twice as much.
        return Record(
            self.chain_id, record_id, _VALUES[kind], _VALUES[origin], _VALUES[direction],
            event_time, sink.received_time, self.waba_id, self.business_phone,
            customer_wa_id if customer_wa_id is not None else customer_user_id,
            customer_wa_id, customer_user_id, wamid, msg_type, text, media_id, template_name,
            template_language, template_category, template_status, status, error_code,
            context_wamid, ref_record_id, consent_state, window_open, flags, detail,
            sink.raw_key, sink.raw_line,
        )  # fmt: skip

    def system_record(
        self,
        *,
        record_id: str,
        path: str,
        raw: Any,
        kind: Kind = Kind.ACCOUNT_EVENT,
        extra: dict[str, Any] | None = None,
        **columns: Any,
    ) -> Record:
        """An event the platform itself reports (an error, a status): no item time, no party."""
        return self.record(
            record_id=record_id,
            kind=kind,
            origin=Origin.SYSTEM,
            direction=Direction.NONE,
            seconds=None,
            path=path,
            raw=raw,
            extra={} if extra is None else extra,
            **columns,
        )

    def contact(self, wa_id: str | None, user_id: str | None) -> dict[str, Any] | None:
        found = self.contacts.get(wa_id or "") or self.contacts.get(user_id or "")
        return found if found is not None else self.single_contact


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


FOLLOW_UP: Final = "history_media_followup"


def follow_up_record_id(chain_id: str, wamid: str) -> str:
    """Identity of a history media follow-up: its own, beside its placeholder's message id."""
    return stable_id(FOLLOW_UP, chain_id, wamid)


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
