"""De-duplication: nothing sealed twice, nothing lost, across batches, runs and crashes."""

from __future__ import annotations

import dataclasses

from coexarchive.dedup import DedupIndex
from coexarchive.records import Kind
from coexarchive.segments import ChainWriter
from coexarchive.store.memory import MemoryStore
from support.archive import (
    ARCHIVE,
    DAY_MS,
    ListingStore,
    make_records,
    short_policy,
    signer,
)

CHAIN = "900000000000001"


def writer(store: MemoryStore) -> ChainWriter:
    return ChainWriter(store, CHAIN, signer=signer(), archive_name=ARCHIVE, policy=short_policy())


def index(store: MemoryStore) -> DedupIndex:
    sealer = writer(store)
    return DedupIndex(store, CHAIN, committed_size=sealer.state().size, trust=sealer.trust)


def test_duplicates_within_a_batch_are_dropped() -> None:
    records = make_records(CHAIN, 10)
    result = index(MemoryStore()).classify(records + records[:4])
    assert len(result.new) == 10
    assert result.duplicates == 4
    assert not result.observations


def test_a_copy_days_later_is_not_sealed_again() -> None:
    store = MemoryStore()
    records = make_records(CHAIN, 10)
    writer(store).append(records)
    later = [
        dataclasses.replace(
            r, received_time=(r.received_time or 0) + 6 * DAY_MS, raw_key="raw/late"
        )
        for r in records
    ]
    result = index(store).classify(later)
    assert result.to_seal == []
    assert result.duplicates == 10


def test_a_history_copy_of_a_live_message_becomes_one_observation() -> None:
    store = MemoryStore()
    live = make_records(CHAIN, 3)
    writer(store).append(live)
    history = [
        dataclasses.replace(r, kind=Kind.HISTORY_MESSAGE.value, origin="history_import")
        for r in live
    ]
    first = index(store).classify(history)
    assert [o.ref_record_id for o in first.observations] == [
        r.record_id for r in sorted(live, key=lambda r: r.record_id)
    ]
    assert all(o.kind == Kind.OBSERVATION for o in first.observations)
    writer(store).append(first.to_seal)
    again = index(store).classify(history)
    assert again.to_seal == [] and again.duplicates == 3


def test_live_wins_over_history_in_one_batch_whatever_the_order() -> None:
    live = make_records(CHAIN, 2)
    history = [dataclasses.replace(r, kind=Kind.HISTORY_MESSAGE.value) for r in live]
    a = index(MemoryStore()).classify(history + live)
    b = index(MemoryStore()).classify(live + history)
    assert a.new == b.new and {r.kind for r in a.new} == {Kind.MESSAGE.value}
    assert a.observations == b.observations and len(a.observations) == 2


def test_leftovers_of_a_crashed_run_do_not_hide_events() -> None:
    store = MemoryStore()
    crashed = writer(store)
    crashed._commit = lambda manifest: None  # type: ignore[method-assign]
    records = make_records(CHAIN, 5)
    # The crash happens after the index object but before the manifest: drop the manifest.
    crashed.append(records)
    for key in list(store.list("manifests/")):
        store.unsafe_delete(key)
    result = index(store).classify(records)
    assert len(result.new) == 5


def test_only_the_event_dates_window_is_read() -> None:
    store = MemoryStore()
    writer(store).append(make_records(CHAIN, 5, day=0) + make_records(CHAIN, 5, day=10))
    idx = index(store)
    result = idx.classify(make_records(CHAIN, 1, day=10))
    assert result.duplicates == 1
    # Day 10's five ids were read; day 0's were not needed and not loaded.
    assert set(idx.seen) == {r.record_id for r in make_records(CHAIN, 5, day=10)}


def test_a_chain_with_nothing_committed_reads_no_index() -> None:
    store = ListingStore()
    # A crashed run's index object and segment without a manifest: never committed.
    crashed = writer(store)
    crashed._commit = lambda manifest: None  # type: ignore[method-assign]
    crashed.append(make_records(CHAIN, 5))
    for key in list(store.list("manifests/")):
        store.unsafe_delete(key)
    store.listed.clear()
    result = DedupIndex(store, CHAIN, committed_size=0).classify(make_records(CHAIN, 5))
    assert len(result.new) == 5
    assert store.listed == []


def test_a_chain_with_committed_records_still_reads_its_indexes() -> None:
    store = ListingStore()
    writer(store).append(make_records(CHAIN, 5))
    store.listed.clear()
    result = index(store).classify(make_records(CHAIN, 5))
    assert result.duplicates == 5
    assert any(prefix.startswith("dedup/") for prefix in store.listed)
