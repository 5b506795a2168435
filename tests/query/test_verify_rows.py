"""Verify-on-query: honest rows are proven; every kind of tampering fails and names the row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from query._archive import ALICE, CHAIN_A, CHAIN_B, Fixture, build_archive

from coexarchive.errors import FormatError, VerificationError
from coexarchive.query.reports import Params
from coexarchive.records import RECORD_SCHEMA
from coexarchive.seal.chain import chain_step, genesis, recompute_leaf_hashes
from coexarchive.seal.checkpoint import Checkpoint, open_checkpoint
from coexarchive.segments import ChainWriter, Manifest, list_manifests, parquet_bytes, read_segment
from coexarchive.store import MemoryStore
from support.archive import ARCHIVE, short_policy, signer

Edit = Callable[[pa.Table], pa.Table]


def manifest_of(store: MemoryStore, chain: str, seq: int) -> Manifest:
    for key in list_manifests(store, chain):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        if manifest.first_seq <= seq <= manifest.last_seq:
            return manifest
    raise AssertionError(f"no segment holds seq {seq}")


def rewrite_segment(store: MemoryStore, manifest: Manifest, edit: Edit) -> None:
    """An attacker with write access replaces the segment's bytes (manifest left as it was)."""
    table = edit(read_segment(store.get(manifest.segment.key)))
    store.unsafe_delete(manifest.segment.key)
    store.put(manifest.segment.key, parquet_bytes(table.cast(RECORD_SCHEMA)))


def set_column(table: pa.Table, name: str, seq: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[table.column("seq").to_pylist().index(seq)] = value
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, pa.array(values, RECORD_SCHEMA.field(name).type))


def rehash(table: pa.Table, prev: bytes) -> pa.Table:
    """Recompute leaf and chain hashes after an edit, as a careful forger would."""
    leaves = recompute_leaf_hashes(table)
    chain = []
    for leaf in leaves:
        prev = chain_step(prev, leaf)
        chain.append(prev)
    table = table.set_column(
        table.schema.get_field_index("leaf_hash"), "leaf_hash", pa.array(leaves, pa.binary(32))
    )
    return table.set_column(
        table.schema.get_field_index("chain_hash"), "chain_hash", pa.array(chain, pa.binary(32))
    )


@pytest.fixture
def fixture() -> Fixture:
    return build_archive(MemoryStore())


def transcript(
    fixture: Fixture, heads: dict[str, Checkpoint] | None = None, **params: object
) -> str:
    session = fixture.session()
    result = session.report(
        "transcript",
        Params(customer=ALICE, **params),  # type: ignore[arg-type]
        verify=True,
        heads=heads,
    )
    assert result.verification is not None
    return result.verification.summary()


def heads_now(fixture: Fixture) -> dict[str, Checkpoint]:
    """Each chain's newest checkpoint, as an auditor would have saved it with `coexarchive head`."""
    heads = {}
    for chain in (CHAIN_A, CHAIN_B):
        last = list_manifests(fixture.store, chain)[-1]
        manifest = Manifest.from_bytes(fixture.store.get(last), key=last)
        heads[chain] = open_checkpoint(fixture.store.get(manifest.checkpoint_key), fixture.trust)
    return heads


DAY_TWO = {"since": datetime(2026, 1, 6, tzinfo=UTC), "until": datetime(2026, 1, 7, tzinfo=UTC)}


# --- honest archive ----------------------------------------------------------------------------


def test_honest_rows_are_proven_against_the_signed_checkpoints(fixture: Fixture) -> None:
    summary = transcript(fixture)
    assert summary.startswith("verified 6 row(s)")
    assert f"{CHAIN_A} (checkpoint size 13)" in summary


def test_a_time_range_is_proven_complete_against_trusted_heads(fixture: Fixture) -> None:
    summary = transcript(fixture, heads_now(fixture), **DAY_TWO)
    assert f"time range complete against the trusted head ({CHAIN_A} at size 13" in summary
    assert "1 segment(s), 5 record(s) re-hashed" in summary


def test_without_a_head_a_time_range_is_not_called_complete(fixture: Fixture) -> None:
    summary = transcript(fixture, **DAY_TWO)
    assert "time range NOT proven complete" in summary and "--expect-head" in summary
    assert "time range complete" not in summary


def test_a_head_for_one_chain_leaves_the_other_not_complete(fixture: Fixture) -> None:
    heads = heads_now(fixture)
    del heads[CHAIN_B]
    summary = transcript(fixture, heads, **DAY_TWO)
    assert f"NOT proven complete ({CHAIN_B}: no trusted head)" in summary


def test_free_sql_needs_chain_and_seq_to_verify(fixture: Fixture) -> None:
    with pytest.raises(FormatError, match="chain_id and seq"):
        fixture.session().query("SELECT text FROM messages", verify=True)


# --- tampering ---------------------------------------------------------------------------------


def test_edited_text_fails_and_names_the_row(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    rewrite_segment(
        store, manifest_of(store, CHAIN_A, 1), lambda t: set_column(t, "text", 1, "No, not ready")
    )
    with pytest.raises(VerificationError) as caught:
        transcript(fixture)
    (failure,) = caught.value.failures
    assert (failure.step, failure.chain_id, failure.seq) == ("rows", CHAIN_A, 1)
    assert "3d7c9e664108b8918a1e12c610e47e32" in failure.message  # the row's record id
    assert "does not match its sealed leaf hash" in failure.message


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_time", 1_767_571_200_000 + 1),
        ("customer_id", "447700900009"),
        ("flags", ["capture_gap"]),
        ("detail", '{"n":99}'),
        ("window_open", False),
    ],
)
def test_any_sealed_column_edited_is_caught(fixture: Fixture, column: str, value: object) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    if column == "event_time":
        value = datetime.fromtimestamp(int(value) / 1000, UTC)  # type: ignore[arg-type]
    rewrite_segment(
        store, manifest_of(store, CHAIN_A, 1), lambda t: set_column(t, column, 1, value)
    )
    session = fixture.session()
    with pytest.raises(VerificationError) as caught:
        session.query(
            "SELECT chain_id, seq FROM records WHERE chain_id = $c AND seq = 1",
            {"c": CHAIN_A},
            verify=True,
        )
    assert [(f.chain_id, f.seq) for f in caught.value.failures] == [(CHAIN_A, 1)]


def test_edit_with_recomputed_hashes_breaks_the_signed_root(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    manifest = manifest_of(store, CHAIN_A, 1)
    rewrite_segment(
        store,
        manifest,
        lambda t: rehash(set_column(t, "text", 1, "No, not ready"), genesis(CHAIN_A)),
    )
    with pytest.raises(VerificationError) as caught:
        transcript(fixture)
    steps = {f.step for f in caught.value.failures}
    assert "tree" in steps
    tree = next(f for f in caught.value.failures if f.step == "tree")
    assert tree.key == manifest.segment.key and tree.seq == 0
    # The returned rows of that chain are named as unproven.
    assert {(f.chain_id, f.seq) for f in caught.value.failures if f.step == "rows"} >= {
        (CHAIN_A, 1)
    }


def test_deleted_row_is_caught(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    manifest = manifest_of(store, CHAIN_A, 2)
    rewrite_segment(store, manifest, lambda t: t.filter(pc.not_equal(t.column("seq"), 2)))
    with pytest.raises(
        VerificationError, match=r"holds 12 row\(s\) where its checkpoint vouches for seq 0..12"
    ):
        transcript(fixture)


def test_reordered_rows_are_caught(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)

    def swap(table: pa.Table) -> pa.Table:
        seqs = table.column("seq").to_pylist()
        seqs[0], seqs[1] = seqs[1], seqs[0]
        return table.set_column(
            table.schema.get_field_index("seq"), "seq", pa.array(seqs, pa.int64())
        )

    rewrite_segment(store, manifest_of(store, CHAIN_A, 0), swap)
    with pytest.raises(VerificationError) as caught:
        transcript(fixture)
    assert any(f.chain_id == CHAIN_A and f.seq in (0, 1) for f in caught.value.failures)


def test_archive_resealed_with_another_key_is_rejected(fixture: Fixture) -> None:
    """A forger who rewrites a whole chain and signs it with their own key proves nothing."""
    forged_store = MemoryStore()
    forged = build_archive(forged_store)
    intruder = replace(forged, trust=fixture.trust)
    for key in list(forged_store.list("checkpoints/")):
        forged_store.unsafe_delete(key)
    mallory = signer(seed=b"mallory")
    for chain, writer in forged.writers.items():
        for key in list_manifests(forged_store, chain):
            manifest = Manifest.from_bytes(forged_store.get(key), key=key)
            ChainWriter(
                forged_store, chain, signer=mallory, archive_name=ARCHIVE, policy=short_policy()
            )._commit(manifest)
        del writer
    with pytest.raises(VerificationError, match="checkpoint does not verify"):
        transcript(intruder)


def test_missing_checkpoint_is_caught(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    last = manifest_of(store, CHAIN_A, 12)
    store.unsafe_delete(last.checkpoint_key)
    with pytest.raises(VerificationError, match="latest segment has no checkpoint"):
        transcript(fixture)


def test_removed_row_inside_the_range_is_caught_by_the_range_check(fixture: Fixture) -> None:
    """A row removed from a segment the query did not return rows from still fails the range."""
    store = fixture.store
    assert isinstance(store, MemoryStore)
    manifest = manifest_of(store, CHAIN_A, 8)
    rewrite_segment(store, manifest, lambda t: t.filter(pc.not_equal(t.column("seq"), 8)))
    with pytest.raises(VerificationError) as caught:
        transcript(
            fixture, since=datetime(2026, 1, 6, tzinfo=UTC), until=datetime(2026, 1, 7, tzinfo=UTC)
        )
    assert any(f.step == "range" and f.seq == 8 for f in caught.value.failures)


def test_row_beyond_the_signed_tree_is_caught(fixture: Fixture) -> None:
    session = fixture.session()
    with pytest.raises(VerificationError, match="beyond the signed tree"):
        session.query(f"SELECT '{CHAIN_A}' AS chain_id, 99::BIGINT AS seq", verify=True)
