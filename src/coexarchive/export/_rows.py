"""Sealed records as the bundle carries them: one canonical JSON object per record.

A bundle row is the record's *sealed object* (``schemas/SEALING.md``): 32 members, times as
integer milliseconds. Its RFC 8785 bytes are exactly one line of ``records/records.jsonl`` and
``SHA-256(0x00 || line)`` is its leaf hash. Every renderer (CSV, transcript, RSMF) reads these
rows, so the verifier can rebuild each derived file from records it has just proven.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from coexarchive.errors import ParseError
from coexarchive.export.formats import CURRENT, Rendering
from coexarchive.records import SEALED_FIELDS

Row = dict[str, Any]

SEALED_ORDER: tuple[str, ...] = tuple(sorted(SEALED_FIELDS))
SEALED_SET = frozenset(SEALED_FIELDS)
_TIME_COLUMNS = ("event_time", "received_time")
_ORJSON = orjson.OPT_STRICT_INTEGER
_LEAF = b"\x00"
_PLAIN = frozenset({str, int, bool, type(None), list})

# The CSV's columns: identity and place first, then what auditors read, then the rest.
CSV_COLUMNS: tuple[str, ...] = (
    "chain_id",
    "seq",
    "record_id",
    "kind",
    "origin",
    "direction",
    "event_time_utc",
    "event_time",
    "received_time_utc",
    "received_time",
    "customer_id",
    "customer_wa_id",
    "customer_user_id",
    "business_phone",
    "waba_id",
    "wamid",
    "msg_type",
    "text",
    "media_id",
    "template_name",
    "template_language",
    "template_category",
    "template_status",
    "status",
    "error_code",
    "context_wamid",
    "ref_record_id",
    "consent_state",
    "window_open",
    "flags",
    "current_flags",
    "flags_seq",
    "detail",
    "raw_key",
    "raw_line",
    "record_version",
    "leaf_hash",
)
# The columns of coexarchive.bundle/v1, which showed flags as sealed only.
CSV_COLUMNS_V1 = tuple(c for c in CSV_COLUMNS if c not in ("current_flags", "flags_seq"))


def sealed_rows(table: pa.Table) -> list[Row]:
    """The sealed objects of a records table, keys in canonical (sorted) order."""
    columns = []
    for name in SEALED_ORDER:
        column = table.column(name)
        if name in _TIME_COLUMNS:
            column = column.cast(pa.int64())
        columns.append(column.to_pylist())
    order = SEALED_ORDER
    return [dict(zip(order, values, strict=True)) for values in zip(*columns, strict=True)]


def canonical_line(row: Row) -> bytes:
    """RFC 8785 bytes of a row whose keys are already in canonical order (no floats)."""
    return orjson.dumps(row, option=_ORJSON)


def leaf_of(line: bytes) -> bytes:
    return hashlib.sha256(_LEAF + line).digest()


def parse_line(line: bytes) -> Row:
    """A JSONL line back into a row; raises ValueError unless it is a canonical sealed object."""
    row = orjson.loads(line)
    if not isinstance(row, dict) or row.keys() != SEALED_SET:
        raise ParseError("not a sealed record object (members differ from record version 1)")
    if not set(map(type, row.values())) <= _PLAIN:
        raise ParseError("a member has a type no sealed record holds")
    try:
        canonical = orjson.dumps(row, option=_ORJSON | orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 2**53, which no sealed record holds
        raise ParseError(
            "a member is outside what a sealed record holds (integer beyond 2^53)"
        ) from None
    if canonical != line:
        raise ParseError("not in canonical form (RFC 8785)")
    # Canonical form sorts the members, so the row's keys are already in canonical order.
    return row


def iso_utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_utc_many(values: Sequence[int | None]) -> list[str]:
    """:func:`iso_utc` for many times at once ("" for None)."""
    millis = np.array([0 if v is None else v for v in values], dtype="int64")
    texts = np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms").tolist()
    return ["" if v is None else t + "Z" for v, t in zip(values, texts, strict=True)]


def records_csv(rows: Sequence[Row], leaves: Sequence[bytes], rules: Rendering = CURRENT) -> bytes:
    """RFC 4180 CSV of the rows (UTF-8, CRLF), one per record, values exactly as sealed, plus
    each record's current flags and the assessment they come from (:func:`current_flags`).

    With the rules of a format before current flags (``coexarchive.bundle/v1``), the columns
    are ``CSV_COLUMNS_V1``: no ``current_flags`` and ``flags_seq``.
    """
    event_utc = iso_utc_many([row["event_time"] for row in rows])
    received_utc = iso_utc_many([row["received_time"] for row in rows])
    # The current flags' two cells, between the sealed flags and the trailer (none in v1).
    derived: list[tuple[str, int | None] | tuple[()]]
    if rules.current_flags:
        columns = CSV_COLUMNS
        derived = [(";".join(flags), seq) for flags, seq in current_flags(rows)]
    else:
        columns, derived = CSV_COLUMNS_V1, [()] * len(rows)
    # Encoded as it is written: no second copy of the whole text before encoding it.
    sink = io.BytesIO()
    out = io.TextIOWrapper(sink, encoding="utf-8", newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    # The csv module writes None as an empty cell.
    writer.writerows(
        (
            *_IDENTITY(row),
            event,
            row["event_time"],
            received,
            row["received_time"],
            *_CONTENT(row),
            _BOOL_CELLS[row["window_open"]],
            ";".join(row["flags"]),
            *current,
            *_TRAILER(row),
            leaf.hex(),
        )
        for row, leaf, event, received, current in zip(
            rows, leaves, event_utc, received_utc, derived, strict=True
        )
    )
    out.flush()
    return sink.getvalue()


# CSV_COLUMNS in runs of sealed members, between the cells records_csv derives.
_IDENTITY = itemgetter(*CSV_COLUMNS[: CSV_COLUMNS.index("event_time_utc")])
_CONTENT = itemgetter(
    *CSV_COLUMNS[CSV_COLUMNS.index("received_time") + 1 : CSV_COLUMNS.index("window_open")]
)
_TRAILER = itemgetter(*CSV_COLUMNS[CSV_COLUMNS.index("flags_seq") + 1 : -1])
_BOOL_CELLS = {None: "", True: "true", False: "false"}


# --- conversations ------------------------------------------------------------------------------

ConversationKey = tuple[str, str | None]


def customer_of(row: Row) -> str | None:
    customer: str | None = row["customer_id"] or row["customer_wa_id"] or row["customer_user_id"]
    return customer


def conversations(rows: Sequence[Row]) -> dict[ConversationKey, list[int]]:
    """Row positions per (chain, customer), each in (event time, seq) order, keys sorted.

    Records naming no customer (account or template events) form the chain's own conversation,
    keyed with customer ``None`` and sorted first.
    """
    groups: dict[ConversationKey, list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault((row["chain_id"], customer_of(row)), []).append(position)
    when = [(row["event_time"], row["seq"]) for row in rows]
    ordered: dict[ConversationKey, list[int]] = {}
    for key in sorted(groups, key=lambda k: (k[0], k[1] is not None, k[1] or "")):
        ordered[key] = sorted(groups[key], key=when.__getitem__)
    return ordered


def safe_name(text: str) -> str:
    """A file-name-safe form of an id; ids that had to change get a short digest appended."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)
    cleaned = cleaned.strip(".") or "_"
    if cleaned != text:
        cleaned = f"{cleaned[:80]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return cleaned


def detail_of(row: Row) -> dict[str, Any]:
    try:
        value = orjson.loads(row["detail"])
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --- current flags and message types the catalogue does not know ---------------------------------

ASSESSMENT = "assessment"
CurrentFlags = tuple[Sequence[str], int | None]


def current_flags(rows: Sequence[Row]) -> list[CurrentFlags]:
    """Per row: its current flags and the seq of the assessment they come from (None: its own).

    A record's current flags are those of its latest assessment (the highest-seq ``assessment``
    of its chain whose ``ref_record_id`` names it), else its own (``schemas/ENRICHMENT.md``).
    An assessment row keeps its own flags. A bundle holds every assessment of the records it
    selects, so the flags rendered here are the archive's at the bundle's checkpoints.
    """
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:
        if row["kind"] == ASSESSMENT and row["ref_record_id"] is not None:
            key = (row["chain_id"], row["ref_record_id"])
            if key not in latest or row["seq"] > latest[key]["seq"]:
                latest[key] = row
    out: list[CurrentFlags] = []
    for row in rows:
        found = (
            None if row["kind"] == ASSESSMENT else latest.get((row["chain_id"], row["record_id"]))
        )
        out.append((found["flags"], found["seq"]) if found is not None else (row["flags"], None))
    return out


def is_uncatalogued_message(row: Row) -> bool:
    """A message whose type the catalogue does not know (a poll): kind ``unsupported`` with the
    direction of the message it came in as (unknown webhook fields have none)."""
    return bool(row["kind"] == "unsupported" and row["direction"] in ("inbound", "outbound"))


_LABELS = ("name", "question", "title", "text", "body", "option_name")


def _label(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return next((str(value[k]) for k in _LABELS if isinstance(value.get(k), str | int)), None)
    return None


def uncatalogued_text(row: Row) -> str:
    """A message of a type the catalogue does not know, readably: a poll's question and options
    (or a vote's poll and chosen options) from the original JSON in ``detail.raw``."""
    msg_type = row["msg_type"] or "unknown"
    raw = detail_of(row).get("raw")
    body = raw.get(msg_type) if isinstance(raw, dict) else None
    parts = [f"[{msg_type.replace('_', ' ')}]"]
    if isinstance(body, dict):
        question = _label(body)
        if question is None and _label(body.get("poll_id")) is not None:
            question = f"poll {body['poll_id']}"
        if question:
            parts.append(question)
        options = body.get("options")
        if isinstance(options, list) and options:
            labels = [_label(option) or "?" for option in options]
            parts.append("options: " + " / ".join(labels))
    if len(parts) == 1:
        parts.append("(a message type the archive does not interpret; its JSON is in detail.raw)")
    return " ".join(parts)
