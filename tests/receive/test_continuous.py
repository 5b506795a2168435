"""Continuous ingest: new raw objects are ingested once, a restart re-processes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from coexarchive.raw import Delivery, encode_landing, landing_key
from coexarchive.receive.continuous import ContinuousIngest, marker_key
from coexarchive.store.memory import MemoryStore

NOW = 1_767_607_260_000  # 2026-01-05T10:01:00Z


def land(store: MemoryStore, seq: int, received_at: int, count: int = 2) -> str:
    deliveries = [
        Delivery("rcv-a", seq + n, received_at + n, "webhook", {}, b'{"n":%d}' % n)
        for n in range(count)
    ]
    key = landing_key("rcv-a", seq, received_at)
    store.put(key, encode_landing(deliveries))
    return key


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    def __call__(self, keys: Sequence[str]) -> None:
        if self.fail:
            raise RuntimeError("pipeline failed")
        self.batches.append(list(keys))


def follower(
    store: MemoryStore, runner: Recorder, now: int = NOW, **options: int
) -> ContinuousIngest:
    return ContinuousIngest(store, runner, clock_ms=lambda: now, **options)


def test_new_objects_are_ingested_once_and_marked() -> None:
    store = MemoryStore()
    first = land(store, 0, NOW - 30_000)
    runner = Recorder()
    ingest = follower(store, runner)
    assert ingest.step().keys == [first]
    assert store.exists(marker_key(first))
    assert ingest.step().keys == []
    second = land(store, 2, NOW - 10_000)
    assert ingest.step().keys == [second]
    assert runner.batches == [[first], [second]]


def test_latency_is_measured_per_delivery_from_receipt_to_seal() -> None:
    store = MemoryStore()
    land(store, 0, NOW - 30_000, count=3)
    ingest = follower(store, Recorder())
    assert ingest.step().latencies_ms == [30_000, 29_999, 29_998]
    assert ingest.p95_ms() == 30_000


def test_restart_reads_the_ledger_and_reprocesses_nothing() -> None:
    store = MemoryStore()
    keys = [land(store, n * 2, NOW - 5_000) for n in range(3)]
    follower(store, Recorder()).step()
    again = Recorder()
    restarted = follower(store, again)
    assert restarted.pending() == []
    assert restarted.step().keys == [] and again.batches == []
    assert all(store.exists(marker_key(k)) for k in keys)


def test_a_failed_pass_marks_nothing_and_is_retried() -> None:
    store = MemoryStore()
    key = land(store, 0, NOW - 1_000)
    with pytest.raises(RuntimeError):
        follower(store, Recorder(fail=True)).step()
    assert not store.exists(marker_key(key))
    runner = Recorder()
    assert follower(store, runner).step().keys == [key]


def test_follow_survives_a_failing_pass() -> None:
    import threading

    store = MemoryStore()
    land(store, 0, NOW - 1_000)
    stop = threading.Event()
    calls = 0

    def flaky(keys: Sequence[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("S3 unreachable")
        stop.set()

    ContinuousIngest(store, flaky, poll=0.01, clock_ms=lambda: NOW).follow(stop)
    assert calls == 2


def test_batches_are_bounded() -> None:
    store = MemoryStore()
    for n in range(5):
        land(store, n * 2, NOW - 1_000)
    runner = Recorder()
    ingest = follower(store, runner, max_batch=2)
    while ingest.step().keys:
        pass
    assert [len(b) for b in runner.batches] == [2, 2, 1]


def test_only_landing_objects_are_considered() -> None:
    store = MemoryStore()
    store.put("raw/date=2026-01-05/notes.txt", b"x")
    store.put("raw/date=2026-01-05/RCV-00000000000000000000.jsonl.zst", b"x")
    assert follower(store, Recorder()).pending() == []


def test_after_the_first_scan_only_recent_days_are_listed() -> None:
    store = MemoryStore()
    ingest = follower(store, Recorder(), lookback_days=2)
    ingest.step()
    old = land(store, 0, NOW - 10 * 86_400_000)  # landed late into an old partition
    recent = land(store, 2, NOW - 86_400_000)
    assert ingest.pending() == [recent]
    # A restart scans everything once, so the late object is not lost.
    assert follower(store, Recorder()).pending() == [old, recent]
