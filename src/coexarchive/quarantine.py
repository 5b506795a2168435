"""Quarantine: input that did not parse, kept with its reason and a pointer to its raw bytes.

One quarantine object per raw object that had bad input, at
``quarantine/v1/<raw key without raw/>.jsonl.zst``; each line names the raw object and line, the
JSON path of the bad part, the reason, and carries the bad bytes. Deterministic, so a re-run writes
the same object (create-only, so it is written once).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import orjson
import zstandard

from coexarchive.errors import FormatError
from coexarchive.normalize import Quarantined
from coexarchive.records import Kind, Record
from coexarchive.retention import RetentionPolicy
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore

FORMAT = "coexarchive.quarantine/v1"


def quarantine_key(raw_key: str, content: bytes) -> str:
    """Content-addressed, so a re-drive that still fails on fewer items writes a new object."""
    name = raw_key.removeprefix(layout.RAW_PREFIX)
    for suffix in (".jsonl.zst", ".jsonl"):
        name = name.removesuffix(suffix)
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"{layout.QUARANTINE_PREFIX}v1/{name}-{digest}.jsonl.zst"


def encode(items: Sequence[Quarantined]) -> bytes:
    lines = [
        orjson.dumps(
            {
                "format": FORMAT,
                "raw_key": item.raw_key,
                "raw_line": item.raw_line,
                "location": item.location,
                "reason": item.reason,
                "payload_b64": base64.b64encode(item.payload).decode("ascii"),
            },
            option=orjson.OPT_SORT_KEYS,
        )
        for item in sorted(items, key=lambda q: (q.raw_line, q.location, q.reason))
    ]
    return zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n")


def decode(data: bytes, *, key: str) -> Iterator[Quarantined]:
    try:
        text = zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{key}: unreadable quarantine object ({exc})") from exc
    for number, line in enumerate(text.splitlines()):
        try:
            doc = orjson.loads(line)
            if doc.get("format") != FORMAT:
                raise FormatError(f"{key} line {number}: unknown format {doc.get('format')!r}")
            yield Quarantined(
                raw_key=doc["raw_key"],
                raw_line=int(doc["raw_line"]),
                reason=doc["reason"],
                location=doc["location"],
                payload=base64.b64decode(doc["payload_b64"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{key} line {number}: not a quarantine entry ({exc})") from exc


def write(
    store: ObjectStore, raw_key: str, items: Sequence[Quarantined], *, policy: RetentionPolicy
) -> str:
    """Store the quarantined parts of one raw object, locked like the raw object itself."""
    content = encode(items)
    key = quarantine_key(raw_key, content)
    marker = Record(
        chain_id="quarantine",
        record_id="-",
        kind=Kind.UNSUPPORTED.value,
        origin="system",
        direction="none",
        event_time=_date_ms(raw_key),
    )
    store.put(key, content, retention=policy.retention_for([marker]))
    return key


def _date_ms(raw_key: str) -> int:
    from datetime import UTC, datetime

    for part in raw_key.split("/"):
        if part.startswith("date="):
            moment = datetime.strptime(part[5:], "%Y-%m-%d").replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
    raise FormatError(f"{raw_key}: raw object key has no date= segment")


@dataclass(frozen=True)
class QuarantineEntry:
    key: str
    item: Quarantined


def entries(store: ObjectStore) -> Iterator[QuarantineEntry]:
    for key in store.list(f"{layout.QUARANTINE_PREFIX}v1/"):
        for item in decode(store.get(key), key=key):
            yield QuarantineEntry(key, item)
