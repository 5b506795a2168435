"""Per-segment compliance findings: what the compliance summary counts, totalled per segment.

The compliance summary counts, per finding and chain, the records carrying each compliance flag
(and each failed delivery), with the first and last event time. Scanning the flag columns of
every record of a large archive is its whole cost, so each manifest also carries those totals
for its own segment: the summary over whole segments is then a sum over manifests, and only
segments cut by the report's period are scanned. ``coexarchive verify`` recomputes the totals
from the segment's records, so a manifest that misstates them is caught. Format:
``schemas/SEALING.md`` ("Findings").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from coexarchive.errors import FormatError
from coexarchive.records import Record

__all__ = [
    "FAILED_DELIVERY",
    "Finding",
    "findings_from_json",
    "findings_json",
    "findings_of",
    "findings_of_table",
]

FAILED_DELIVERY = "failed_delivery"


@dataclass(frozen=True)
class Finding:
    """How many records carry one finding in a segment, and their first and last event time."""

    records: int
    first_time: int
    last_time: int

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "first_time": self.first_time, "last_time": self.last_time}


def _items(flags: Iterable[str], kind: str, status: str | None) -> Iterator[str]:
    # As the compliance SQL unnests them: every flag, once per occurrence, plus a failed delivery.
    yield from flags
    if kind == "status" and status == "failed":
        yield FAILED_DELIVERY


def _total(pairs: Iterable[tuple[str, int]]) -> dict[str, Finding]:
    totals: dict[str, list[int]] = {}
    for finding, when in pairs:
        seen = totals.get(finding)
        if seen is None:
            totals[finding] = [1, when, when]
        else:
            seen[0] += 1
            seen[1] = min(seen[1], when)
            seen[2] = max(seen[2], when)
    return {name: Finding(*totals[name]) for name in sorted(totals)}


def findings_of(records: Iterable[Record]) -> dict[str, Finding]:
    """The findings of records about to be sealed."""
    return _total(
        (finding, record.event_time)
        for record in records
        for finding in _items(record.flags, record.kind, record.status)
    )


def findings_of_table(table: pa.Table) -> dict[str, Finding]:
    """The findings of a segment's rows (``flags``, ``kind``, ``status``, ``event_time``)."""
    flagged = pc.greater(pc.list_value_length(table.column("flags")), 0)
    failed = pc.and_kleene(
        pc.equal(table.column("kind"), "status"), pc.equal(table.column("status"), "failed")
    )
    # Kleene logic: a null status must not hide a flagged row.
    wanted = pc.fill_null(pc.or_kleene(flagged, failed), False)
    rows = table.select(["flags", "kind", "status", "event_time"]).filter(wanted)
    times = rows.column("event_time").cast(pa.int64()).to_pylist()
    return _total(
        (finding, when)
        for flags, kind, status, when in zip(
            rows.column("flags").to_pylist(),
            rows.column("kind").to_pylist(),
            rows.column("status").to_pylist(),
            times,
            strict=True,
        )
        for finding in _items(flags or (), kind, status)
    )


def findings_json(findings: Mapping[str, Finding]) -> dict[str, dict[str, int]]:
    return {name: findings[name].to_json() for name in sorted(findings)}


def findings_from_json(value: Any, *, what: str = "findings") -> dict[str, Finding]:
    try:
        found = {
            str(name): Finding(int(v["records"]), int(v["first_time"]), int(v["last_time"]))
            for name, v in value.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{what}: not per-finding totals ({exc})") from None
    if any(f.records < 1 or f.first_time > f.last_time for f in found.values()):
        raise FormatError(f"{what}: a finding with no records or its times reversed")
    return found
