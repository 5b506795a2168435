"""CRM consent import: CSV or JSON rows → validated ``consent_event`` records (origin ``crm``).

Each row states customer, purpose, state, timestamp, source and evidence reference (and may name
its chain). A row that does not validate is reported with its line number and skipped; the other
rows are kept. Pure: the caller passes the file's bytes and the clock.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from coexarchive.customers import is_bsuid, normalize_customer
from coexarchive.enrich.consent import ALL, MARKETING, OPTED_IN, OPTED_OUT, OTHER
from coexarchive.errors import FormatError, InvalidArgumentError
from coexarchive.records import Direction, Kind, Origin, Record, stable_id

__all__ = ["FIELDS", "ConsentImport", "RowProblem", "parse_consent_file"]

FIELDS: Final = ("customer", "purpose", "state", "timestamp", "source", "evidence")
_OPTIONAL: Final = ("chain_id",)
_STATES: Final[dict[str, str]] = {
    "opted_in": OPTED_IN, "opt_in": OPTED_IN, "opt-in": OPTED_IN, "in": OPTED_IN,
    "granted": OPTED_IN, "yes": OPTED_IN,
    "opted_out": OPTED_OUT, "opt_out": OPTED_OUT, "opt-out": OPTED_OUT, "out": OPTED_OUT,
    "revoked": OPTED_OUT, "withdrawn": OPTED_OUT, "no": OPTED_OUT,
}  # fmt: skip
_PURPOSES: Final = frozenset({MARKETING, OTHER, ALL})
_CHAIN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_TEXT: Final = 1024
# Unix seconds up to 9999-12-31; milliseconds are refused rather than misread.
_MAX_SECONDS: Final = 253_402_300_799


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ConsentImport:
    records: list[Record] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0

    def report(self) -> list[str]:
        return [str(problem) for problem in self.problems]


def parse_consent_file(
    data: bytes,
    *,
    fmt: str,
    source_name: str,
    now_ms: int,
    chain_id: str | None = None,
) -> ConsentImport:
    """Validate every row; ``chain_id`` applies to rows that do not name their own chain."""
    if chain_id is not None and not _CHAIN.fullmatch(chain_id):
        raise FormatError(f"--chain {chain_id!r} is not a valid chain id")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{source_name}: not UTF-8 text (at byte {exc.start})") from None
    rows = _csv_rows(text) if fmt == "csv" else _json_rows(text, source_name)
    result = ConsentImport()
    for line, row in rows:
        result.rows += 1
        try:
            result.records.append(_record(row, line, source_name, now_ms, chain_id))
        except _BadRow as bad:
            result.problems.append(RowProblem(line, str(bad)))
    return result


class _BadRow(Exception):
    pass


def _csv_rows(text: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, f"unreadable CSV header ({exc})"
        return
    missing = [name for name in FIELDS if name not in header]
    if missing:
        raise FormatError(f"CSV header lacks {', '.join(missing)} (line 1)")
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, f"unreadable CSV ({exc})"
            continue
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            yield line, f"{len(values)} fields where the header has {len(header)}"
            continue
        yield line, dict(zip(header, values, strict=True))


def _json_rows(text: str, source_name: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """A JSON array of objects, or JSON Lines; each row with the line it starts on."""
    decoder = json.JSONDecoder(parse_float=str)
    stripped = text.lstrip()
    if not stripped.startswith("["):
        for number, content in enumerate(text.splitlines(), 1):
            if content.strip():
                try:
                    yield number, decoder.decode(content)
                except ValueError as exc:
                    yield number, f"not JSON ({str(exc).split(':')[0]})"
        return
    position = text.index("[") + 1
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            raise FormatError(f"{source_name}: JSON array is not closed")
        if text[position] == "]":
            return
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError as exc:
            raise FormatError(f"{source_name}: line {line}: not JSON ({exc})") from None
        yield line, value
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _record(
    row: Mapping[str, Any] | str, line: int, source_name: str, now_ms: int, chain_id: str | None
) -> Record:
    if isinstance(row, str):
        raise _BadRow(row)
    if not isinstance(row, Mapping):
        raise _BadRow("row is not an object")
    values = {str(k).strip().lower(): v for k, v in row.items()}
    problems = [f"{name} missing" for name in FIELDS if _blank(values.get(name))]
    if problems:
        raise _BadRow("; ".join(problems))
    customer = _text(values["customer"], "customer")
    wa_id = user_id = None
    try:
        customer = normalize_customer(customer)
    except InvalidArgumentError:
        raise _BadRow("customer is neither a phone number (wa_id) nor a BSUID") from None
    if is_bsuid(customer):
        user_id = customer
    else:
        wa_id = customer
    purpose = _text(values["purpose"], "purpose").lower()
    if purpose not in _PURPOSES:
        raise _BadRow(f"purpose {purpose!r} is not marketing, other or all")
    state = _STATES.get(_text(values["state"], "state").lower())
    if state is None:
        raise _BadRow("state is not opted_in or opted_out")
    event_time = _timestamp(values["timestamp"], now_ms)
    source = _text(values["source"], "source")
    evidence = _text(values["evidence"], "evidence")
    chain = values.get("chain_id")
    chain = _text(chain, "chain_id") if not _blank(chain) else chain_id
    if chain is None:
        raise _BadRow("no chain: pass --chain or give a chain_id column")
    if not _CHAIN.fullmatch(chain):
        raise _BadRow("chain_id is not a valid chain id")
    customer_id = wa_id or user_id
    detail = {
        "v": 1,
        "field": "crm_import",
        "path": f"line {line}",
        "time_source": "item",
        "source": source,
        "evidence": evidence,
        "file": source_name,
        "raw": {k: _plain(v) for k, v in sorted(values.items()) if k in (*FIELDS, *_OPTIONAL)},
    }
    return Record(
        chain_id=chain,
        record_id=stable_id(
            "consent_crm", chain, customer_id, purpose, state, event_time, source, evidence
        ),
        kind=Kind.CONSENT_EVENT.value,
        origin=Origin.CRM.value,
        direction=Direction.NONE.value,
        event_time=event_time,
        received_time=now_ms,
        customer_id=customer_id,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        msg_type=purpose,
        status=state,
        consent_state=state,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _BadRow(f"{name} is not text")
    text: str = value.strip()
    if len(text) > _MAX_TEXT or any(ord(c) < 32 for c in text):
        raise _BadRow(f"{name} is too long or has control characters")
    return text


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | bool) or value is None else str(value)


def _timestamp(value: Any, now_ms: int) -> int:
    if isinstance(value, bool):
        raise _BadRow("timestamp is not a date-time")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = int(value)
        if not 0 < seconds <= _MAX_SECONDS:
            raise _BadRow("timestamp is out of range (unix seconds expected)")
        millis = seconds * 1000
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _BadRow(
                f"timestamp {value.strip()[:40]!r} is not ISO 8601 or unix seconds"
            ) from None
        if moment.tzinfo is None:
            raise _BadRow("timestamp has no time zone (add Z or an offset)")
        millis = int(moment.timestamp() * 1000)
    else:
        raise _BadRow("timestamp is not a date-time")
    if millis > now_ms:
        raise _BadRow("timestamp is in the future")
    return millis
