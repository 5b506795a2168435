"""The pure half of the job's first step: a raw landing object → records by chain, quarantine.

Also how a batch of records travels between steps (:func:`pack_records`).
"""

from __future__ import annotations

import marshal
import operator
import pickle
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import zstandard

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.normalize import Quarantined, normalize_delivery
from coexarchive.raw import AUTH_MEMBER, VERIFIED, DeliveryAuth, decode_landing
from coexarchive.records import RECORD_FIELDS, Record

# Between the steps a batch travels as one bytes value: the records' field tuples, marshalled.
# Beam would otherwise pickle every Record (its slots, one by one), which costs more than
# normalising it. marshal keeps exact types and refuses what it cannot hold (a str subclass);
# such a batch goes as a pickle instead. Both ends run the same Python, as Beam requires. The
# bytes are zstd-compressed (level 1, about 9:1 in a few ms): the runner copies every element
# several times between workers, and that costs more than compressing it.
_RECORD_VALUES = operator.attrgetter(*RECORD_FIELDS)
_MARSHAL, _PICKLE = b"M", b"P"


def pack_records(records: Sequence[Record]) -> bytes:
    """One batch of records as bytes for the next step (see :func:`unpack_records`)."""
    rows = [_RECORD_VALUES(record) for record in records]
    try:
        kind, body = _MARSHAL, marshal.dumps(rows)
    except ValueError:
        kind, body = _PICKLE, pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    return kind + zstandard.ZstdCompressor(level=1).compress(body)


def unpack_records(data: bytes) -> list[Record]:
    """The records :func:`pack_records` packed, equal field by field."""
    # Only this job's own NormalizeObject writes these bytes, as Beam pickles its own elements.
    body = zstandard.ZstdDecompressor().decompress(memoryview(data)[1:])
    rows = marshal.loads(body) if data[:1] == _MARSHAL else pickle.loads(body)  # noqa: S301,S302
    return [Record(*row) for row in rows]


def normalize_object(
    key: str, data: bytes, counters: Any = None, *, auth: DeliveryAuth
) -> tuple[dict[str, list[Record]], list[Quarantined]]:
    """Decode a landing object, authenticate and normalise every delivery in it.

    Pure apart from counters. A delivery whose signature does not verify under ``auth`` is
    quarantined whole, as its exact landing line, and gives no record.
    """
    by_chain: dict[str, list[Record]] = defaultdict(list)
    bad: list[Quarantined] = []
    with cyclic_gc_paused():
        _normalize_lines(key, data, by_chain, bad, counters, auth)
    return by_chain, bad


def _normalize_lines(
    key: str,
    data: bytes,
    by_chain: dict[str, list[Record]],
    bad: list[Quarantined],
    counters: Any,
    auth: DeliveryAuth,
) -> None:
    for line in decode_landing(data, key=key):
        if line.delivery is None:
            bad.append(
                Quarantined(key, line.line, f"unreadable landing line: {line.error}", "$", line.raw)
            )
            if counters is not None:
                counters.unreadable.inc()
            continue
        if counters is not None:
            counters.deliveries.inc()
        verdict = auth.check(line.delivery)
        if isinstance(verdict, str):
            # Not proven to come from Meta (or from a capturing sender): kept, never sealed.
            bad.append(Quarantined(key, line.line, verdict, "$", line.raw))
            if counters is not None:
                counters.signature_invalid.inc()
            continue
        if counters is not None and verdict.get(AUTH_MEMBER) != VERIFIED:
            counters.unverified.inc()
        result = normalize_delivery(
            line.delivery.body,
            raw_key=key,
            raw_line=line.line,
            received_time=line.delivery.received_at,
            source=line.delivery.source,
            auth=verdict,
        )
        for record in result.records:
            by_chain[record.chain_id].append(record)
        bad.extend(result.quarantined)
