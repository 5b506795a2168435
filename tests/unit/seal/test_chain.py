"""Sealing batches of records: canonical bytes, leaf hashes, chain hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.errors import CanonicalizationError, FormatError, ProofError, SealError
from coexarchive.records import (
    RECORD_FIELDS,
    RECORD_SCHEMA,
    SEALED_FIELDS,
    Kind,
    Record,
    sealed_fields,
)
from coexarchive.seal.canonical import canonical_bytes, reference_canonical_bytes
from coexarchive.seal.chain import (
    chain_step,
    genesis,
    recompute_leaf_hashes,
    seal_records,
    sealed_object,
    verify_chain,
)
from coexarchive.seal.merkle import leaf_hash

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"


def _example_records() -> list[Record]:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records: list[Record] = module.example_records()
    return records


RECORDS = _example_records()


def test_genesis_is_documented_value() -> None:
    expected = hashlib.sha256(b"coexarchive/chain/v1\n106540352242922").digest()
    assert genesis("106540352242922") == expected
    assert genesis("a") != genesis("b")


def test_chain_step() -> None:
    prev, leaf = bytes(32), bytes(range(32))
    assert chain_step(prev, leaf) == hashlib.sha256(prev + leaf).digest()


def test_sealed_object_is_sealed_fields_in_jcs_order() -> None:
    for seq, record in enumerate(RECORDS):
        built = sealed_object(record, seq)
        assert list(built) == sorted(SEALED_FIELDS)
        assert {**built, "flags": list(built["flags"])} == sealed_fields(record, seq)


def test_seal_records_matches_the_definition() -> None:
    prev = genesis("106540352242922")
    sealed = seal_records(RECORDS, first_seq=40, prev_chain_hash=prev)
    for offset, (record, item) in enumerate(zip(RECORDS, sealed, strict=True)):
        canonical = reference_canonical_bytes(sealed_fields(record, 40 + offset))
        assert item.seq == 40 + offset
        assert item.record is record
        assert item.leaf_hash == leaf_hash(canonical)
        assert item.chain_hash == chain_step(prev, item.leaf_hash)
        prev = item.chain_hash


def test_sealing_in_batches_equals_sealing_at_once() -> None:
    start = genesis("c")
    whole = seal_records(RECORDS, first_seq=0, prev_chain_hash=start)
    first = seal_records(RECORDS[:3], first_seq=0, prev_chain_hash=start)
    rest = seal_records(RECORDS[3:], first_seq=3, prev_chain_hash=first[-1].chain_hash)
    assert whole == first + rest


def test_enum_values_seal_as_plain_strings() -> None:
    plain = RECORDS[0]
    with_enum = dataclasses.replace(plain, kind=Kind.MESSAGE)
    a = seal_records([plain], first_seq=0, prev_chain_hash=bytes(32))
    b = seal_records([with_enum], first_seq=0, prev_chain_hash=bytes(32))
    assert a[0].leaf_hash == b[0].leaf_hash


@pytest.mark.parametrize(
    "change",
    [
        {"event_time": 1717243200000.0},
        {"error_code": 2**53},
        {"text": 1.5},
        {"text": ("tuple", "in", "a", "string", "field")},
        {"flags": ("ok", 1.0)},
        {"flags": ("ok", None)},
        {"detail": b"bytes"},
        {"text": "lone \ud800 surrogate"},
    ],
    ids=repr,
)
def test_values_without_canonical_form_are_refused(change: dict[str, Any]) -> None:
    bad = dataclasses.replace(RECORDS[1], **change)
    with pytest.raises(CanonicalizationError, match="seq 8"):
        seal_records([RECORDS[0], bad], first_seq=7, prev_chain_hash=bytes(32))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SealError):
        seal_records(RECORDS, first_seq=-1, prev_chain_hash=bytes(32))
    with pytest.raises(SealError):
        seal_records(RECORDS, first_seq=0, prev_chain_hash=b"short")


def _table(records: list[Record], first_seq: int = 0) -> tuple[pa.Table, list[bytes]]:
    sealed = seal_records(records, first_seq=first_seq, prev_chain_hash=genesis("c"))
    rows = [
        {**sealed_fields(s.record, s.seq), "leaf_hash": s.leaf_hash, "chain_hash": s.chain_hash}
        for s in sealed
    ]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), [s.leaf_hash for s in sealed]


def test_recompute_leaf_hashes_matches_sealing() -> None:
    table, leaves = _table(RECORDS, first_seq=1000)
    assert recompute_leaf_hashes(table) == leaves
    # Column order and chunking must not matter.
    shuffled = table.select(sorted(table.column_names, reverse=True))
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    assert recompute_leaf_hashes(shuffled) == leaves
    assert recompute_leaf_hashes(chunked) == leaves


def test_recompute_detects_an_edited_cell() -> None:
    table, leaves = _table(RECORDS)
    texts = table.column("text").to_pylist()
    texts[4] = texts[4] + "!"
    edited = table.set_column(
        table.schema.get_field_index("text"), RECORD_SCHEMA.field("text"), pa.array(texts)
    )
    recomputed = recompute_leaf_hashes(edited)
    assert [i for i, (a, b) in enumerate(zip(recomputed, leaves, strict=True)) if a != b] == [4]


def test_recompute_refuses_wrong_column_types() -> None:
    table, _ = _table(RECORDS)
    with pytest.raises(FormatError, match="missing"):
        recompute_leaf_hashes(table.drop_columns(["wamid"]))
    as_micros = table.set_column(
        table.schema.get_field_index("event_time"),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        table.column("event_time").cast(pa.timestamp("us", tz="UTC")),
    )
    with pytest.raises(FormatError, match="event_time"):
        recompute_leaf_hashes(as_micros)


def test_canonical_bytes_of_records_equal_fast_path() -> None:
    for seq, record in enumerate(RECORDS):
        fields = sealed_fields(record, seq)
        assert canonical_bytes(fields) == reference_canonical_bytes(fields)


def test_verify_chain() -> None:
    start = genesis("c")
    sealed = seal_records(RECORDS, first_seq=5, prev_chain_hash=start)
    leaves = [s.leaf_hash for s in sealed]
    chain = [s.chain_hash for s in sealed]
    verify_chain(leaves, chain, prev_chain_hash=start, first_seq=5)
    with pytest.raises(ProofError, match="seq 7"):
        verify_chain(
            [*leaves[:2], leaves[3], leaves[2], *leaves[4:]],
            chain,
            prev_chain_hash=start,
            first_seq=5,
        )
    with pytest.raises(ProofError, match="seq 5"):
        verify_chain(leaves, chain, prev_chain_hash=genesis("other"), first_seq=5)
    with pytest.raises(ProofError):
        verify_chain(leaves, chain[:-1], prev_chain_hash=start)


# One dict is refilled per record (seal.chain._refill): no value may outlive its record.
_optional = st.none() | st.text(max_size=6)
_records = st.builds(
    Record,
    chain_id=st.sampled_from(["c1", "c2"]),
    record_id=st.text(min_size=1, max_size=8),
    kind=st.sampled_from(["message", "status", "echo"]),
    origin=st.sampled_from(["customer", "system"]),
    direction=st.sampled_from(["inbound", "none"]),
    event_time=st.integers(0, 2**53 - 1),
    received_time=st.none() | st.integers(0, 2**53 - 1),
    **{
        name: _optional
        for name in RECORD_FIELDS
        if name
        not in (
            "chain_id",
            "record_id",
            "kind",
            "origin",
            "direction",
            "event_time",
            "received_time",
            "error_code",
            "window_open",
            "flags",
            "raw_line",
        )
    },
    error_code=st.none() | st.integers(-(2**53) + 1, 2**53 - 1),
    window_open=st.none() | st.booleans(),
    flags=st.lists(st.text(max_size=4), max_size=3).map(tuple),
    raw_line=st.none() | st.integers(0, 2**31),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(_records, max_size=6),
    first_seq=st.integers(0, 2**40),
    version=st.sampled_from([1, 2]),
)
def test_every_leaf_is_the_reference_bytes_of_its_own_record(
    records: list[Record], first_seq: int, version: int
) -> None:
    sealed = seal_records(
        records, first_seq=first_seq, prev_chain_hash=bytes(32), record_version=version
    )
    prev = bytes(32)
    for offset, (record, item) in enumerate(zip(records, sealed, strict=True)):
        fields = {**sealed_fields(record, first_seq + offset), "record_version": version}
        assert item.leaf_hash == leaf_hash(reference_canonical_bytes(fields))
        assert item.chain_hash == chain_step(prev, item.leaf_hash)
        prev = item.chain_hash
