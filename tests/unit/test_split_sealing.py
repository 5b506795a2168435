"""The ingest job seals a chain in three steps on different workers; the bytes must not change.

``ChainWriter.append`` plans, encodes each segment whole and commits in one process. The job plans
on one worker, encodes runs of a few records on any worker (their columns and leaf hashes travel
as Arrow IPC, in whatever order they arrive) and commits on a writer that only has the planned
state. Both must write the same objects, byte for byte, with the same legal holds: over several
dates, a date split into segments, personal content sealed encrypted, a legal hold and a chain
that already has a tail.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from coexarchive.datakeys import DataKeyStore, LocalWrapper
from coexarchive.errors import ConfigError, FormatError, SealError
from coexarchive.records import Record
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import ChainWriter, EncodedPart, encode_records, read_segment
from coexarchive.store.memory import MemoryStore
from pipelines.seal_step import ChainPlan, WorkUnit, work_units
from support.archive import ARCHIVE, make_records, short_policy, signer

CHAIN = "c1"
HELD_CUSTOMER = "447700900003"
NOW = 1_800_000_000_000


def held(chain_id: str, records: Sequence[Record]) -> bool:
    """A hold on one customer of one day only: some segments are held, others not."""
    return any(
        record.customer_id == HELD_CUSTOMER and record.raw_line % 50 == 3 for record in records
    )


def writer(store: MemoryStore, personal: PersonalSealer | None) -> ChainWriter:
    return ChainWriter(
        store,
        CHAIN,
        signer=signer(),
        archive_name=ARCHIVE,
        policy=short_policy(),
        max_segment_records=60,
        personal=personal,
        legal_holds=held,
    )


def tail() -> list[Record]:
    return make_records(CHAIN, 25, day=0)


def batch() -> list[Record]:
    # Three dates, one of them more than a segment holds; shuffled, as arrival order is.
    records = make_records(CHAIN, 10, day=1) + make_records(CHAIN, 130, day=2)
    records += make_records(CHAIN, 41, day=3)
    random.Random(5).shuffle(records)
    return records


def sealed_by_append(personal: PersonalSealer | None) -> MemoryStore:
    store = MemoryStore()
    writer(store, personal).append(tail())
    writer(store, personal).append(batch())
    return store


def sealed_in_steps(personal: PersonalSealer | None, *, unit_records: int) -> MemoryStore:
    """What the job does: plan, encode units apart (any order), commit on another writer."""
    store = MemoryStore()
    writer(store, personal).append(tail())
    planner = writer(store, personal)
    planned = planner.plan(batch())
    plan = ChainPlan(CHAIN, planner.state(), segments=tuple(segment for segment, _ in planned))
    units = list(work_units(plan, [stored for _, stored in planned], unit_records=unit_records))
    # Units smaller than a segment really split segments across units.
    assert len(units) > len(planned) if unit_records < 60 else len(units) == len(planned)
    random.Random(9).shuffle(units)
    wire = [(unit.segment, encode_travelled(unit)) for unit in units]
    # The commit step gets the state as the runner hands it over: pickled, in another process.
    state = pickle.loads(pickle.dumps(plan.state))  # noqa: S301
    committer = ChainWriter(
        store, CHAIN, signer=signer(), archive_name=ARCHIVE, legal_holds=held
    ).with_state(state)
    for number, segment in enumerate(plan.segments):
        parts = sorted(
            (EncodedPart.from_bytes(data) for n, data in wire if n == number),
            key=lambda part: part.first_seq,
        )
        committer.commit_segment(segment, parts)
    return store


def encode_travelled(unit: WorkUnit) -> bytes:
    return encode_records(list(unit.records), unit.first_seq, unit.record_version).to_bytes()


def holds_of(store: MemoryStore) -> dict[str, bool]:
    return {key: store.info(key).legal_hold for key in store.unsafe_objects}


@pytest.fixture(params=["plain", "encrypted"])
def personal(request: pytest.FixtureRequest, tmp_path: Path) -> PersonalSealer | None:
    if request.param == "plain":
        return None
    keys = DataKeyStore(tmp_path / "keys", LocalWrapper(b"k" * 32), clock=lambda: NOW)
    return PersonalSealer(keys.current)


@pytest.mark.parametrize("unit_records", [1, 7, 60])
def test_the_three_steps_seal_exactly_what_append_seals(
    personal: PersonalSealer | None, unit_records: int
) -> None:
    expected = sealed_by_append(personal)
    got = sealed_in_steps(personal, unit_records=unit_records)
    assert sorted(got.unsafe_objects) == sorted(expected.unsafe_objects)
    differing = [k for k, v in expected.unsafe_objects.items() if got.unsafe_objects[k] != v]
    assert differing == []
    assert holds_of(got) == holds_of(expected)
    # The scenario covers what it claims: a split date, held and unheld segments.
    segments = [k for k in expected.unsafe_objects if k.endswith(".parquet")]
    assert len(segments) == 1 + 1 + 3 + 1
    held_segments = [k for k in segments if holds_of(expected)[k]]
    assert 0 < len(held_segments) < len(segments)
    versions = {
        version
        for k in segments
        for version in read_segment(expected.unsafe_objects[k]).column("record_version").to_pylist()
    }
    assert versions == ({1} if personal is None else {2})


def test_a_commit_refuses_parts_that_do_not_cover_its_segment() -> None:
    store = MemoryStore()
    planner = writer(store, None)
    (segment, stored), *_ = planner.plan(make_records(CHAIN, 30, day=1))
    whole = encode_records(stored, segment.first_seq, segment.record_version)
    first = encode_records(stored[:10], segment.first_seq, segment.record_version)
    rest = encode_records(stored[10:], segment.first_seq + 10, segment.record_version)
    shifted = encode_records(stored[10:], segment.first_seq + 11, segment.record_version)
    for parts in ([], [first], [rest, first], [first, shifted], [whole, rest]):
        with pytest.raises(SealError, match="do not cover"):
            writer(store, None).with_state(planner.state()).commit_segment(segment, parts)
    assert store.unsafe_objects == {}


def test_a_commit_refuses_a_plan_made_against_another_state() -> None:
    store = MemoryStore()
    planner = writer(store, None)
    (segment, stored), *_ = planner.plan(make_records(CHAIN, 5, day=1))
    part = encode_records(stored, segment.first_seq, segment.record_version)
    writer(store, None).append(make_records(CHAIN, 3, day=0))  # another run moved the chain on
    with pytest.raises(SealError, match="planned at seq 0 but the chain stands at 3"):
        writer(store, None).commit_segment(segment, [part])


def test_work_units_hold_at_least_one_record() -> None:
    planner = writer(MemoryStore(), None)
    planned = planner.plan(make_records(CHAIN, 5, day=1))
    plan = ChainPlan(CHAIN, planner.state(), segments=tuple(s for s, _ in planned))
    with pytest.raises(ConfigError):
        list(work_units(plan, [stored for _, stored in planned], unit_records=0))


def test_an_encoded_part_travels_as_arrow_ipc_unchanged() -> None:
    records = make_records(CHAIN, 12, day=1)
    part = encode_records(records, 40, 1)
    back = EncodedPart.from_bytes(part.to_bytes())
    assert back.first_seq == 40
    assert back.index_lines == part.index_lines and len(back.index_lines) == 12
    assert back.table.equals(part.table)
    assert back.table.schema.equals(part.table.schema, check_metadata=True)
    with pytest.raises(FormatError):
        EncodedPart.from_bytes(b"not arrow")
