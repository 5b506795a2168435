"""What one ingest run did, read back from the pipeline's metrics (:class:`IngestSummary`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson
from apache_beam.metrics.metric import MetricsFilter

from coexarchive.errors import SealError

NAMESPACE = "coexarchive.ingest"
# One counter per chain that ends in an unsigned tail, named by its error line (keys, no content).
UNSIGNED_TAIL_NAMESPACE = "coexarchive.ingest.unsigned_tail"
# One counter per chain whose new messages supervision could not scan, named by its gap line.
SUPERVISION_GAP_NAMESPACE = "coexarchive.ingest.supervision_gap"
DERIVED_PREFIX = "derived_"


@dataclass
class IngestSummary:
    """What one run did, from the pipeline's metrics; it adds up (see :meth:`unaccounted`).

    Every normalised event ends as exactly one of: sealed by this run (``sealed``, of which
    ``observations`` are second sightings), a duplicate of what the archive already held
    (``duplicates``), or sealed by a concurrent run of the same data before this one could
    (``concurrent``), or held back unsealed because its chain ends in objects no trusted key
    signed (``held_back``, see ``unsigned_tails``). Input that never became an event is
    ``quarantined``. Records the archive
    derived itself (consent events from opt-out keywords, ...) are counted apart, by kind, in
    ``derived``: they are not input.
    """

    raw_objects: int = 0
    deliveries: int = 0
    unreadable_lines: int = 0
    events: int = 0
    sealed: int = 0
    observations: int = 0
    duplicates: int = 0
    concurrent: int = 0
    held_back: int = 0
    quarantined: int = 0
    segments: int = 0
    chains: int = 0
    derived: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)
    # One line per chain left unsealed because it ends in objects no trusted key signed.
    unsigned_tails: list[str] = field(default_factory=list)
    # One line per chain whose new messages were sealed but not scanned by supervision (the
    # policies could not be verified); each is also sealed in the chain as a ``scan_gap``.
    supervision_gaps: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise :class:`SealError` naming every chain this run refused to seal (if any)."""
        if self.unsigned_tails:
            raise SealError("\n".join(self.unsigned_tails))

    def add(self, other: IngestSummary) -> None:
        """Add ``other``'s counts to these (the passes of ``ingest --follow``)."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.derived, other.derived), (self.extra, other.extra)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.unsigned_tails = sorted({*self.unsigned_tails, *other.unsigned_tails})
        self.supervision_gaps = sorted({*self.supervision_gaps, *other.supervision_gaps})

    def unaccounted(self) -> int:
        """Normalised events not accounted for as sealed, duplicate, concurrent or held back."""
        return self.events - self.sealed - self.duplicates - self.concurrent - self.held_back

    def lines(self) -> list[str]:
        derived = sum(self.derived.values())
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(self.derived.items()))
        lines = [
            f"raw objects read:    {self.raw_objects:>10,}",
            f"deliveries:          {self.deliveries:>10,}",
            f"input events:        {self.events + self.quarantined:>10,}",
            f"  sealed (new):      {self.sealed:>10,}"
            f"  (of which observations, second sightings: {self.observations:,})",
            f"  duplicates:        {self.duplicates:>10,}  (already in the archive; skipped)",
        ]
        if self.concurrent:
            lines.append(
                f"  sealed by another: {self.concurrent:>10,}"
                "  (a concurrent run committed the same records first)"
            )
        if self.held_back:
            lines.append(
                f"  held back:         {self.held_back:>10,}"
                "  (their chain ends in unsigned objects: nothing sealed there)"
            )
        lines += [
            f"  quarantined:       {self.quarantined:>10,}"
            f"  (unreadable lines: {self.unreadable_lines:,}; kept under quarantine/)",
            f"derived records:     {derived:>10,}" + (f"  ({kinds})" if kinds else ""),
            f"segments written:    {self.segments:>10,}  across {self.chains:,} chain(s)",
        ]
        lines += [f"SUPERVISION GAP: {gap}" for gap in self.supervision_gaps]
        if self.unaccounted():
            lines.append(f"unaccounted events:  {self.unaccounted():>10,}  (a bug: please report)")
        return lines

    def pass_line(self) -> str:
        """One line for one pass of ``ingest --follow``."""
        parts = [
            f"{self.raw_objects:,} object(s)",
            f"{self.events + self.quarantined:,} event(s): {self.sealed:,} sealed",
            f"{self.duplicates:,} duplicate",
            f"{self.quarantined:,} quarantined",
        ]
        if self.concurrent:
            parts.append(f"{self.concurrent:,} sealed by another run")
        if self.held_back:
            parts.append(f"{self.held_back:,} held back")
        derived = sum(self.derived.values())
        if derived:
            parts.append(f"{derived:,} derived")
        if self.supervision_gaps:
            parts.append(f"SUPERVISION GAP in {len(self.supervision_gaps)} chain(s)")
        return ", ".join(parts)


COUNT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(IngestSummary)
    if f.name not in ("derived", "extra", "unsigned_tails", "supervision_gaps")
)


def summary_from(result: Any) -> IngestSummary:
    summary = IngestSummary()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    names = set(COUNT_FIELDS)
    for counter in counters:
        name, value = counter.key.metric.name, int(counter.committed or counter.attempted or 0)
        if name in names:
            setattr(summary, name, getattr(summary, name) + value)
        elif name.startswith(DERIVED_PREFIX):
            kind = name[len(DERIVED_PREFIX) :]
            summary.derived[kind] = summary.derived.get(kind, 0) + value
        else:
            summary.extra[name] = summary.extra.get(name, 0) + value
    tails = result.metrics().query(MetricsFilter().with_namespace(UNSIGNED_TAIL_NAMESPACE))
    summary.unsigned_tails = sorted(
        {c.key.metric.name for c in tails["counters"] if c.committed or c.attempted}
    )
    gaps = result.metrics().query(MetricsFilter().with_namespace(SUPERVISION_GAP_NAMESPACE))
    summary.supervision_gaps = sorted(
        {c.key.metric.name for c in gaps["counters"] if c.committed or c.attempted}
    )
    return summary


def summary_json(summary: IngestSummary) -> bytes:
    return orjson.dumps(dataclasses.asdict(summary), option=orjson.OPT_SORT_KEYS)
