"""Reading a chain's past for enrichment: several reads at a time, taken in seq order.

Every run reads one manifest per segment of a chain, and the segments enrichment needs, so the
reads go ``READERS`` at a time (``coexarchive._internal.fetch``). What they give must not
depend on which read finishes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from coexarchive._internal import fetch as fetch_module
from coexarchive.enrich.context import ChainContext, load_context, waba_chain
from coexarchive.errors import FormatError, ObjectMissingError
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store.memory import MemoryStore
from enrich import harness
from enrich.scenario import PHONE, WABA, Scenario, at, build

SINCE_MS = at(20) * 1000
UNTIL_MS = at(31) * 1000


@pytest.fixture(scope="module")
def archive() -> MemoryStore:
    """The golden month sealed in segments of four records: dozens of segments per chain."""
    store = MemoryStore()
    scenario: Scenario = build()
    harness.ingest(store, scenario.objects(seed=11), max_segment_records=4)
    return store


def _copy(store: MemoryStore, into: MemoryStore) -> MemoryStore:
    """``into`` holding copies of ``store``'s objects: the same past, read through its get()."""
    into.unsafe_objects = dict(store.unsafe_objects)
    return into


def _load(store: MemoryStore) -> ChainContext:
    return load_context(store, PHONE, since_ms=SINCE_MS, until_ms=UNTIL_MS, trust=harness.TRUST)


class LateFirstStore(MemoryStore):
    """Answers a chain's earlier objects later: reads finish in reverse seq order."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.rank = {key: index for index, key in enumerate(order)}

    def get(self, key: str) -> bytes:
        if key in self.rank:
            time.sleep(0.002 * (len(self.rank) - self.rank[key]))
        return super().get(key)


class InFlightStore(MemoryStore):
    """Counts how many reads are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.now = self.most = 0

    def get(self, key: str) -> bytes:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.005)
            return super().get(key)
        finally:
            with self.lock:
                self.now -= 1


def _objects_in_seq_order(store: MemoryStore, chain_id: str) -> Iterator[str]:
    for key in list_manifests(store, chain_id):
        yield key
        yield Manifest.from_bytes(store.get(key), key=key).segment.key


def test_the_golden_month_gives_a_past_worth_reading(archive: MemoryStore) -> None:
    assert len(list_manifests(archive, PHONE)) > 20
    assert len(list_manifests(archive, waba_chain(WABA))) > 1
    context = _load(archive)
    assert context.waba_id == WABA
    assert context.consent_events and context.template_events
    assert context.inbound and context.echo_times and context.captured


def test_the_past_is_taken_in_seq_order_whichever_read_finishes_first(
    archive: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = [
        *_objects_in_seq_order(archive, PHONE),
        *_objects_in_seq_order(archive, waba_chain(WABA)),
    ]
    reversed_reads = _load(_copy(archive, LateFirstStore(order)))
    monkeypatch.setattr(fetch_module, "READERS", 1)
    one_at_a_time = _load(archive)
    assert reversed_reads == one_at_a_time
    # Order is part of what enrichment reads: the lists are not merely the same sets.
    assert reversed_reads.consent_events == one_at_a_time.consent_events
    assert reversed_reads.inbound == one_at_a_time.inbound


def test_reads_overlap_up_to_the_limit(archive: MemoryStore) -> None:
    store = _copy(archive, InFlightStore())
    _load(store)
    assert 1 < store.most <= fetch_module.READERS


def test_a_missing_segment_fails_the_load_naming_the_first_in_seq_order(
    archive: MemoryStore,
) -> None:
    store = _copy(archive, MemoryStore())
    segments = [
        Manifest.from_bytes(store.get(key), key=key).segment.key
        for key in list_manifests(store, PHONE)
    ]
    first, later = segments[3], segments[-2]
    store.unsafe_delete(later)
    store.unsafe_delete(first)
    with pytest.raises(ObjectMissingError, match=first):
        _load(store)


def test_a_segment_whose_bytes_differ_from_its_manifest_is_refused(archive: MemoryStore) -> None:
    # Someone able to bypass Object Lock (a storage admin) rewrites a committed segment.
    store = _copy(archive, MemoryStore())
    first = Manifest.from_bytes(store.get(list_manifests(store, PHONE)[0]))
    store.unsafe_objects[first.segment.key] = store.unsafe_objects[first.segment.key] + b" "
    with pytest.raises(FormatError, match=f"{first.segment.key}: segment of chain {PHONE} differs"):
        _load(store)
