# SQL here is a module constant; no value is ever formatted into it.
"""The compliance summary from manifests: whole segments summed, cut segments scanned.

The summary (``report compliance``) counts, per finding and chain, the records carrying each
compliance flag or failed delivery, with their first and last event time. Every manifest records
those totals for its own segment (``coexarchive.findings``, checked by ``coexarchive verify``),
so a segment lying wholly inside the report's period contributes its manifest's totals; only
segments the period cuts, and segments sealed before manifests carried findings, are scanned by
the report's own SQL. Both parts are merged by :data:`MERGE_SQL` into exactly the table the scan
of every segment would give.

Findings count each record's *sealed* flags, but the summary counts current flags (a record's
latest assessment's, ``coexarchive reassess``). A chain holding any assessment record, or whose
manifests do not say which kinds they hold, is therefore scanned whole: its totals cannot be
summed from sealed findings.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from coexarchive.query.views import Segment, Window
from coexarchive.records import Kind
from coexarchive.segments import Manifest

__all__ = ["MERGE_SQL", "PARTIAL_SCHEMA", "from_manifests", "reassessed", "split"]

ASSESSMENT = Kind.ASSESSMENT.value

_TIME = pa.timestamp("us", tz="UTC")
PARTIAL_SCHEMA = pa.schema(
    [
        ("finding", pa.string()),
        ("chain_id", pa.string()),
        ("records", pa.int64()),
        ("first_time", _TIME),
        ("last_time", _TIME),
    ]
)

# ``summary_scanned``: the report's SQL over the scanned segments; ``summary_sealed``: the totals
# of the whole segments, from their manifests.
MERGE_SQL = """
SELECT finding, chain_id, CAST(sum(records) AS BIGINT) AS records,
       min(first_time) AS first_time, max(last_time) AS last_time
FROM (SELECT finding, chain_id, records, first_time, last_time FROM summary_scanned
      UNION ALL
      SELECT finding, chain_id, records, first_time, last_time FROM summary_sealed)
GROUP BY ALL ORDER BY finding, chain_id
"""


def reassessed(manifests: Sequence[Manifest]) -> set[str]:
    """Chains whose current flags may differ from their sealed flags: a manifest of theirs
    holds an assessment record, or does not say which kinds it holds."""
    return {
        m.chain_id
        for m in manifests
        if m.kinds.get(ASSESSMENT, 0) > 0 or (not m.kinds and m.record_count > 0)
    }


def split(
    segments: Sequence[Segment], manifests: Sequence[Manifest], window: Window | None
) -> tuple[list[Manifest], list[Segment]]:
    """The manifests of segments wholly inside ``window`` that carry findings, and the segments
    to scan (cut by the window, without findings, not matching their manifest, or of a chain
    that holds assessments); segments wholly outside the window are in neither, as the report's
    filter drops all their rows."""
    by_start = {(m.chain_id, m.first_seq): m for m in manifests}
    scan_whole = reassessed(manifests)
    whole: list[Manifest] = []
    cut: list[Segment] = []
    for segment in segments:
        manifest = by_start.get((segment.chain_id, segment.first_seq))
        if manifest is not None and window is not None and not window.overlaps(manifest):
            continue
        if (
            manifest is None
            or segment.chain_id in scan_whole
            or manifest.findings is None
            or manifest.segment.key != segment.key
            or (window is not None and not window.contains(manifest))
        ):
            cut.append(segment)
        else:
            whole.append(manifest)
    return whole, cut


def from_manifests(manifests: Sequence[Manifest]) -> pa.Table:
    """One row per manifest and finding: the segment's totals (manifests must carry findings)."""
    rows: dict[str, list[object]] = {name: [] for name in PARTIAL_SCHEMA.names}
    for manifest in manifests:
        for name, finding in sorted((manifest.findings or {}).items()):
            rows["finding"].append(name)
            rows["chain_id"].append(manifest.chain_id)
            rows["records"].append(finding.records)
            rows["first_time"].append(finding.first_time * 1000)
            rows["last_time"].append(finding.last_time * 1000)
    return pa.table(rows, schema=PARTIAL_SCHEMA)
