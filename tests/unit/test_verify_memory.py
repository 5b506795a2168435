"""Verify's memory is bounded by segment size: the verifying process keeps nothing per record.

A store read gives fresh bytes (as S3 does), so a verifier that kept each segment's bytes, rows
or leaf hashes would peak higher with every segment of the chain. Python's own allocations are
traced (``tracemalloc``), so the check measures what verify keeps, not what the allocator or the
process that started this one did (the bench's RSS figures once mixed those in).
"""

from __future__ import annotations

import tracemalloc

from coexarchive.store.memory import MemoryStore
from coexarchive.verify import verify_archive
from support.archive import build


class FreshReads(MemoryStore):
    """A memory store whose reads return new bytes each time, as a network store's do."""

    def get(self, key: str) -> bytes:
        return bytes(bytearray(super().get(key)))


def _verified(days: int) -> tuple[int, int, int]:
    """Verify's traced peak over a chain of ``days`` days; its segments; the largest one's bytes."""
    built = build(FreshReads(), days=tuple(range(days)), per_day=1500)
    largest = max(m.segment.size + m.record_index.size for m in built.manifests)
    tracemalloc.start()
    try:
        report = verify_archive(built.store, built.trust, media=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, report.chains[0].segments, largest


def test_verify_peak_does_not_grow_with_the_number_of_segments() -> None:
    few, few_segments, segment = _verified(2)
    many, many_segments, _ = _verified(8)
    assert many_segments >= few_segments + 6
    # Keeping each segment's bytes (or its rows' hashes) would add at least one segment's worth
    # per added segment; what verify keeps per segment (its manifest) is far below one.
    assert many - few < 2 * segment, (few, many, segment)
