"""Segments, manifests and checkpoints on the in-memory store; verification of their shape."""

from __future__ import annotations

import dataclasses

import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.errors import FormatError, ObjectExistsError, SealError
from coexarchive.seal.checkpoint import open_checkpoint
from coexarchive.seal.merkle import root_from_leaves
from coexarchive.segments import (
    ChainState,
    ChainWriter,
    Manifest,
    index_bytes,
    read_index,
    read_segment,
)
from coexarchive.store.memory import MemoryStore
from coexarchive.verify import ArchiveVerificationError, verify_archive
from support.archive import ARCHIVE, build, make_records, short_policy, signer

CHAIN = "900000000000001"


def test_one_segment_per_event_date_with_contiguous_seq() -> None:
    built = build(MemoryStore(), days=(0, 1), per_day=5)
    ranges = [(m.first_seq, m.last_seq, m.date) for m in built.manifests]
    assert ranges == [(0, 4, "2026-01-05"), (5, 9, "2026-01-06")]


def test_checkpoint_signs_the_root_of_every_leaf_so_far() -> None:
    store = MemoryStore()
    built = build(store, days=(0, 1), per_day=5)
    leaves: list[bytes] = []
    for manifest in built.manifests:
        leaves += [
            bytes(v)
            for v in read_segment(store.get(manifest.segment.key)).column("leaf_hash").to_pylist()
        ]
        checkpoint = open_checkpoint(store.get(manifest.checkpoint_key), built.trust)
        assert checkpoint.size == len(leaves)
        assert checkpoint.root_hash == root_from_leaves(leaves) == manifest.root_hash


def test_manifest_round_trips_and_rejects_garbage() -> None:
    manifest = build(MemoryStore(), days=(0,), per_day=3).manifests[0]
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    for bad in (b"", b"{}", b"[1]", manifest.to_bytes().replace(b"manifest/v1", b"manifest/v9")):
        with pytest.raises(FormatError):
            Manifest.from_bytes(bad)


def test_record_index_round_trips() -> None:
    records = make_records(CHAIN, 4)
    assert sorted(read_index(index_bytes(records))) == sorted(
        (r.record_id, r.kind) for r in records
    )
    with pytest.raises(FormatError):
        list(read_index(b"not zstd"))


def test_writer_refuses_records_of_another_chain() -> None:
    writer = ChainWriter(
        MemoryStore(), CHAIN, signer=signer(), archive_name=ARCHIVE, policy=short_policy()
    )
    with pytest.raises(SealError, match="belongs to chain"):
        writer.append(make_records("900000000000009", 1))


def test_every_object_is_locked() -> None:
    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    manifest = built.manifests[0]
    for key in (
        manifest.segment.key,
        manifest.record_index.key,
        manifest.key,
        manifest.checkpoint_key,
    ):
        info = store.info(key)
        assert (
            info.retention is not None
            and info.retention.retain_until == manifest.retention.retain_until
        )


def test_a_writer_never_signs_a_second_checkpoint_for_one_size() -> None:
    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    stale = ChainWriter(
        store, CHAIN, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    stale._state = ChainState.empty(CHAIN)  # believes the chain is empty
    other = [dataclasses.replace(r, text="different") for r in make_records(CHAIN, 3)]
    with pytest.raises(SealError):
        stale.append(other)
    assert verify_archive(store, built.trust).records_checked == 3


def test_create_only_store_refuses_different_bytes() -> None:
    store = MemoryStore()
    store.put("k", b"a")
    assert store.put("k", b"a") is False
    with pytest.raises(ObjectExistsError):
        store.put("k", b"b")


def test_verify_names_a_missing_checkpoint() -> None:
    store = MemoryStore()
    built = build(store, days=(0, 1), per_day=3)
    store.unsafe_delete(built.manifests[0].checkpoint_key)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, built.trust)
    assert [(f.step, f.key) for f in caught.value.report.failures] == [
        ("checkpoint", built.manifests[0].checkpoint_key)
    ]


def test_verify_with_an_empty_trust_file_fails_every_checkpoint() -> None:
    from coexarchive.seal.keys import TrustStore

    store = MemoryStore()
    build(store, days=(0, 1), per_day=3)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, TrustStore.parse(""))
    # Nothing is trusted: neither the checkpoints nor the archive heads.
    failures = caught.value.report.failures
    assert {f.step for f in failures} == {"checkpoint", "tail", "archive-head"}
    assert any("nothing was verified" in f.message for f in failures)


def test_key_rotation_keeps_old_checkpoints_verifiable() -> None:
    from support.archive import trust_for

    store = MemoryStore()
    old, new = signer("coexarchive.test", b"2025"), signer("coexarchive.test", b"2026")
    results = ChainWriter(
        store, CHAIN, signer=old, archive_name=ARCHIVE, policy=short_policy()
    ).append(make_records(CHAIN, 3))
    write_head_after(store, [r.manifest for r in results], signer=old, archive_name=ARCHIVE)
    # The new key continues the chain only if told to trust the old key's checkpoints.
    with pytest.raises(SealError, match="rotated"):
        ChainWriter(store, CHAIN, signer=new, archive_name=ARCHIVE, policy=short_policy()).state()
    results = ChainWriter(
        store, CHAIN, signer=new, archive_name=ARCHIVE, policy=short_policy(), trust=trust_for(old)
    ).append(make_records(CHAIN, 3, day=1))
    write_head_after(
        store,
        [r.manifest for r in results],
        signer=new,
        archive_name=ARCHIVE,
        trust=trust_for(old, new),
    )
    assert verify_archive(store, trust_for(old, new)).records_checked == 6
    with pytest.raises(ArchiveVerificationError):
        verify_archive(store, trust_for(new))


def test_since_until_limits_the_rows_rehashed() -> None:
    from support.archive import DAY_MS, START_MS

    store = MemoryStore()
    built = build(store, days=(0, 1, 2), per_day=4)
    report = verify_archive(
        store, built.trust, since=START_MS + DAY_MS, until=START_MS + 2 * DAY_MS
    )
    assert report.records_checked == 4


def test_worker_processes_find_the_same_failures_as_one_process() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from coexarchive.segments import parquet_bytes
    from coexarchive.store.base import sha256_hex

    store = MemoryStore()
    built = build(store, days=tuple(range(6)), per_day=5)
    serial = verify_archive(store, built.trust)
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = verify_archive(store, built.trust, executor=pool)
    assert parallel.records_checked == serial.records_checked == 30
    # Edit a row in the fifth segment (beyond the first batch in flight) and fix its manifest hash.
    manifest = built.manifests[4]
    table = read_segment(store.get(manifest.segment.key))
    texts = table.column("text").to_pylist()
    texts[2] = "edited"
    table = table.set_column(table.schema.get_field_index("text"), "text", [texts])
    data = parquet_bytes(table)
    store.unsafe_objects[manifest.segment.key] = data
    forged = dataclasses.replace(
        manifest,
        segment=dataclasses.replace(manifest.segment, sha256=sha256_hex(data), size=len(data)),
    )
    store.unsafe_objects[manifest.key] = forged.to_bytes()
    with (
        ProcessPoolExecutor(max_workers=2) as pool,
        pytest.raises(ArchiveVerificationError) as caught,
    ):
        verify_archive(store, built.trust, executor=pool)
    failures = caught.value.report.failures
    assert [f.seq for f in failures if f.step == "rows"] == [22]
    assert {f.step for f in failures} == {"rows", "chain", "merkle"}


# --- intents and the resume rule (the attacks on a real S3 server are in tests/attacks) ----------


def test_intent_round_trips_and_parses_strictly() -> None:
    from coexarchive.intents import Intent

    intent = Intent.for_manifest(ARCHIVE, CHAIN, 20, 29, b"manifest bytes")
    assert Intent.parse(intent.body()) == intent
    body = intent.body()
    for bad in (
        body + b"extra line\n",
        body.replace(b"first-seq 20", b"first-seq 020"),
        body.replace(b"last-seq 29", b"last-seq 19"),
        body.replace(intent.manifest_sha256.encode(), intent.manifest_sha256.upper().encode()),
        body.rstrip(b"\n"),
    ):
        with pytest.raises(FormatError):
            Intent.parse(bad)


def test_an_intent_is_never_a_checkpoint_nor_a_checkpoint_an_intent() -> None:
    from coexarchive.intents import Intent, intent_origin, open_intent

    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    manifest = built.manifests[0]
    note = store.get(manifest.intent_key)
    assert open_intent(note, built.trust, origin=intent_origin(ARCHIVE, CHAIN)).last_seq == 2
    with pytest.raises(FormatError):
        open_checkpoint(note, built.trust)
    with pytest.raises(FormatError):
        open_intent(
            store.get(manifest.checkpoint_key), built.trust, origin=intent_origin(ARCHIVE, CHAIN)
        )
    other = Intent.for_manifest("other.archive", CHAIN, 0, 2, manifest.to_bytes()).sign(signer())
    from coexarchive.errors import SignatureError

    with pytest.raises(SignatureError, match="origin"):
        open_intent(other, built.trust, origin=intent_origin(ARCHIVE, CHAIN))


def test_an_intent_of_another_archive_does_not_commit_a_manifest() -> None:
    from coexarchive.intents import Intent
    from coexarchive.resume import UnsignedTailError

    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    crashing = ChainWriter(
        store, CHAIN, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    crashing._commit = lambda manifest: None  # type: ignore[method-assign]
    pending = crashing.append(make_records(CHAIN, 2, day=1))[0].manifest
    # Swap the genuine intent for one the same key signed for another archive.
    data = pending.to_bytes()
    store.unsafe_objects[pending.intent_key] = Intent.for_manifest(
        "other.archive", CHAIN, pending.first_seq, pending.last_seq, data
    ).sign(built.signer)
    with pytest.raises(UnsignedTailError, match="does not verify"):
        ChainWriter(
            store, CHAIN, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
        ).state()


def test_a_writer_of_another_archive_name_is_told_so() -> None:
    store = MemoryStore()
    build(store, days=(0,), per_day=3)
    writer = ChainWriter(
        store, CHAIN, signer=signer(), archive_name="renamed", policy=short_policy()
    )
    with pytest.raises(SealError, match="COEXARCHIVE_NAME"):
        writer.state()


def test_verify_refuses_a_store_without_object_lock() -> None:
    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    store.object_lock = False
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, built.trust)
    (failure,) = caught.value.report.failures
    assert failure.step == "retention" and "Object Lock" in failure.message
    assert caught.value.report.chains == []


def test_verify_refuses_a_store_that_cannot_show_object_lock() -> None:
    class Plain:
        def __init__(self, store: MemoryStore) -> None:
            self.store = store

        def __getattr__(self, name: str) -> object:
            if name == "require_object_lock":
                raise AttributeError(name)
            return getattr(self.store, name)

    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    with pytest.raises(ArchiveVerificationError, match="Object Lock"):
        verify_archive(Plain(store), built.trust)  # type: ignore[arg-type]


def test_ingest_leaves_a_chain_with_an_unsigned_tail_unsealed_and_says_so() -> None:
    from pipelines.ingest import IngestSummary, SealSpec, seal_chain

    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    # Someone without the key writes a manifest continuing the chain (no intent, no checkpoint).
    forger = ChainWriter(
        store,
        CHAIN,
        signer=signer("coexarchive.test", b"rogue"),
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=built.trust,
    )
    forger._commit = lambda manifest: None  # type: ignore[method-assign]
    forged = forger.append(make_records(CHAIN, 1, day=3))[0].manifest
    store.unsafe_delete(forged.intent_key)
    summary = seal_chain(
        store,
        CHAIN,
        make_records(CHAIN, 2, day=4),
        signer=built.signer,
        spec=SealSpec("unused", ARCHIVE),
        policy=short_policy(),
    )
    assert summary["segments"] == 0 and forged.key in summary["unsigned_tail"]
    assert not store.exists(forged.checkpoint_key)
    with pytest.raises(SealError, match="may be forged") as caught:
        IngestSummary(unsigned_tails=[summary["unsigned_tail"]]).check()
    assert forged.key in str(caught.value)
    IngestSummary().check()  # nothing refused: no error
