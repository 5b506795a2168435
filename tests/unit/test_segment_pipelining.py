"""``ChainWriter.commit_segments``: the next segment is made while one is written, and the writes
keep the order, one at a time, that a crash or a racing writer relies on (``segments`` module
docstring): a segment's first write only after the one before it has committed, nothing after the
first failure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from coexarchive.errors import ObjectExistsError, SealError
from coexarchive.segments import (
    ChainState,
    ChainWriter,
    EncodedPart,
    SegmentPlan,
    encode_records,
)
from coexarchive.store.base import Retention
from coexarchive.store.memory import MemoryStore
from support.archive import ARCHIVE, make_records, short_policy, signer

CHAIN = "c1"
WAIT = 10.0  # seconds; a pipelined commit takes milliseconds


class RecordingStore(MemoryStore):
    """Logs every write in order and fails if two ever overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.busy = threading.Lock()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention | None = None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        if not self.busy.acquire(blocking=False):
            raise AssertionError(f"two writes at once ({key})")
        try:
            self.writes.append(key)
            self.before_put(key)
            return super().put(key, data, retention=retention, content_type=content_type)
        finally:
            self.busy.release()

    def before_put(self, key: str) -> None:
        """Where a test stalls or fails a write."""


def writer(store: MemoryStore) -> ChainWriter:
    return ChainWriter(
        store, CHAIN, signer=signer(), archive_name=ARCHIVE, policy=short_policy(),
        max_segment_records=40,
    )  # fmt: skip


def three_segments(store: MemoryStore) -> list[tuple[SegmentPlan, list[EncodedPart]]]:
    planned = writer(store).plan(make_records(CHAIN, 100, day=1))
    assert len(planned) == 3
    return [
        (plan, [encode_records(stored, plan.first_seq, plan.record_version)])
        for plan, stored in planned
    ]


def kind_of(key: str) -> str:
    return {"archive": "segment", "dedup": "index"}.get(key.split("/")[0], key.split("/")[0])


def test_writes_keep_the_order_of_one_segment_after_another() -> None:
    store = RecordingStore()
    results = writer(store).commit_segments(three_segments(store))
    assert [r.manifest.first_seq for r in results] == [0, 40, 80]
    kinds = [kind_of(key) for key in store.writes]
    one = ["segment", "index", "intents", "manifests", "checkpoints"]
    assert kinds == one * 3, store.writes
    checkpoints = [key for key in store.writes if key.startswith("checkpoints/")]
    assert checkpoints == [f"checkpoints/chain={CHAIN}/{size:020d}" for size in (40, 80, 100)]


def test_the_same_objects_as_committing_one_segment_at_a_time() -> None:
    one_by_one, pipelined = MemoryStore(), MemoryStore()
    plain = writer(one_by_one)
    for plan, parts in three_segments(one_by_one):
        plain.commit_segment(plan, parts)
    writer(pipelined).commit_segments(three_segments(pipelined))
    assert pipelined.unsafe_objects == one_by_one.unsafe_objects


def test_the_next_segment_is_encoded_while_one_is_written() -> None:
    asked = threading.Event()

    class Stalling(RecordingStore):
        def before_put(self, key: str) -> None:
            # The first segment's write waits until the next segment has been asked for: a
            # commit that encoded only after writing would never get there.
            if key.startswith("archive/") and len(self.writes) == 1:
                assert asked.wait(WAIT), "the next segment was not made during the write"

    store = Stalling()
    segments = three_segments(store)

    def lazily() -> Iterator[tuple[SegmentPlan, Sequence[EncodedPart]]]:
        yield segments[0]
        asked.set()
        yield from segments[1:]

    assert len(writer(store).commit_segments(lazily())) == 3


def test_a_lost_race_stops_the_writes_and_is_the_error_raised() -> None:
    class Raced(RecordingStore):
        def before_put(self, key: str) -> None:
            if key == f"manifests/chain={CHAIN}/{40:020d}.json":
                raise ObjectExistsError(key, "another writer")

    store = Raced()
    with pytest.raises(SealError, match="another writer committed seq 40 first"):
        writer(store).commit_segments(three_segments(store))
    # Segment 0 committed; segment 1 stopped at its manifest; segment 2 never written.
    assert store.writes[4] == f"checkpoints/chain={CHAIN}/{40:020d}"
    assert [kind_of(key) for key in store.writes[5:]] == [
        "segment",
        "index",
        "intents",
        "manifests",
    ]
    assert store.writes[-1] == f"manifests/chain={CHAIN}/{40:020d}.json"


def test_a_failure_while_making_the_next_segment_leaves_the_one_in_flight_committed() -> None:
    store = RecordingStore()
    segments = three_segments(store)
    plan, parts = segments[1]
    broken = [(plan, parts[:0])]  # no parts: they do not cover the segment
    with pytest.raises(SealError, match="encoded parts do not cover the segment"):
        writer(store).commit_segments([segments[0], *broken, segments[2]])
    # The write in flight finished whole (its checkpoint is there); nothing after it began.
    assert store.writes[-1] == f"checkpoints/chain={CHAIN}/{40:020d}"
    assert len(store.writes) == 5


def test_a_failed_write_wins_over_the_failure_that_followed_it() -> None:
    class Refusing(RecordingStore):
        def before_put(self, key: str) -> None:
            if key.startswith("checkpoints/"):
                raise ObjectExistsError(key, "a fork")

    store = Refusing()
    segments = three_segments(store)
    plan, parts = segments[1]
    with pytest.raises(SealError, match="refusing to sign a fork") as raised:
        writer(store).commit_segments([segments[0], (plan, parts[:0])])
    assert isinstance(raised.value.__cause__, ObjectExistsError)


def test_a_segment_prepared_for_another_head_is_not_written() -> None:
    store = MemoryStore()
    segments = three_segments(store)
    chain = writer(store)
    first = chain.prepare_segment(*segments[0], chain.state())
    prepared = chain.prepare_segment(*segments[1], ChainState.after(first.manifest))
    with pytest.raises(SealError, match="prepared at seq 40 but the chain stands at 0"):
        chain.write_segment(prepared)
    assert store.unsafe_objects == {}
