"""The tamper suite: every attack on a sealed archive on a real S3 server is caught and named.

Attacks use what a storage-level attacker really has on an object-locked bucket: new versions put
on top of locked ones and delete markers (Object Lock stops neither), never the writer's key unless
the attack is a compromised writer (the fork case).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
import zstandard

from coexarchive.archive_head import write_head_after
from coexarchive.customer_filter import CustomerFilter
from coexarchive.errors import RetentionError
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, sign_note
from coexarchive.seal.head import head_key
from coexarchive.segments import (
    ChainWriter,
    Manifest,
    ObjectRef,
    parquet_bytes,
    read_segment,
)
from coexarchive.store.base import Retention, sha256_hex
from coexarchive.verify import ArchiveVerificationError, Head, verify_archive
from support.archive import ARCHIVE, Built, build, make_records, short_policy, signer, trust_for

pytestmark = pytest.mark.integration


class Attacker:
    """Raw S3 access to the bucket, as someone holding storage credentials (no bypass)."""

    def __init__(self, built: Built) -> None:
        self.built = built
        store: Any = built.store
        self.client = store.client
        self.bucket = store.bucket

    def put_version(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def hide(self, key: str) -> None:
        """A delete marker on top of a locked version: the object vanishes from reads."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def segment(self, index: int) -> pa.Table:
        manifest = self.built.manifests[index]
        return read_segment(self.built.store.get(manifest.segment.key)).sort_by("seq")

    def replace_segment(self, index: int, table: pa.Table, *, fix_manifest: bool) -> None:
        manifest = self.built.manifests[index]
        data = parquet_bytes(table)
        self.put_version(manifest.segment.key, data)
        if fix_manifest:
            forged = dataclasses.replace(
                manifest, segment=ObjectRef(manifest.segment.key, sha256_hex(data), len(data))
            )
            self.put_version(manifest.key, forged.to_bytes())


def failures_of(built: Built, **kwargs: Any) -> list[Any]:
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(built.store, built.trust, **kwargs)
    return caught.value.report.failures


def steps_of(failures: list[Any]) -> set[str]:
    return {failure.step for failure in failures}


def with_column(table: pa.Table, name: str, mutate: Callable[[list[Any]], list[Any]]) -> pa.Table:
    index = table.schema.get_field_index(name)
    values = mutate(table.column(name).to_pylist())
    return table.set_column(
        index, table.schema.field(name), pa.array(values, table.schema.field(name).type)
    )


@pytest.fixture
def built(s3_store: Any) -> Built:
    return build(s3_store)


def test_clean_archive_verifies(built: Built) -> None:
    report = verify_archive(built.store, built.trust)
    assert report.ok
    assert report.records_checked == 60
    assert report.chains[0].checkpoints == 3


def test_field_edited_in_a_row_is_caught_by_the_manifest_hash(built: Built) -> None:
    attacker = Attacker(built)
    table = with_column(attacker.segment(1), "text", lambda v: ["edited", *v[1:]])
    attacker.replace_segment(1, table, fix_manifest=False)
    failures = failures_of(built)
    objects = [f for f in failures if f.step == "objects"]
    assert [f.key for f in objects] == [built.manifests[1].segment.key]
    assert "rows" not in steps_of(failures)


def test_field_edited_with_forged_manifest_hash_names_the_row(built: Built) -> None:
    attacker = Attacker(built)
    table = with_column(attacker.segment(1), "text", lambda v: [*v[:5], "edited", *v[6:]])
    attacker.replace_segment(1, table, fix_manifest=True)
    failures = failures_of(built)
    rows = [f for f in failures if f.step == "rows"]
    assert [f.seq for f in rows] == [25]
    assert "leaf hash" in rows[0].message


def test_row_deleted_is_named(built: Built) -> None:
    attacker = Attacker(built)
    table = attacker.segment(0)
    table = pa.concat_tables([table.slice(0, 7), table.slice(8)])
    attacker.replace_segment(0, table, fix_manifest=True)
    failures = failures_of(built)
    assert any(f.step == "rows" and f.seq == 7 and "missing" in f.message for f in failures)


def test_row_inserted_is_named(built: Built) -> None:
    attacker = Attacker(built)
    table = attacker.segment(0)
    extra = with_column(table.slice(3, 1), "seq", lambda v: [20])
    attacker.replace_segment(0, pa.concat_tables([table, extra]), fix_manifest=True)
    failures = failures_of(built)
    assert any(f.step == "rows" and f.seq == 20 and "outside" in f.message for f in failures)


def test_two_rows_swapped_are_named(built: Built) -> None:
    attacker = Attacker(built)
    table = attacker.segment(2)
    order = list(range(table.num_rows))
    order[3], order[4] = order[4], order[3]
    swapped = table.take(order)
    # Keep the seq column in place so only the contents move.
    swapped = with_column(swapped, "seq", lambda v: sorted(v))
    attacker.replace_segment(2, swapped, fix_manifest=True)
    failures = failures_of(built)
    assert {f.seq for f in failures if f.step == "rows"} == {43, 44}


def test_middle_segment_deleted_is_a_gap(built: Built) -> None:
    attacker = Attacker(built)
    middle = built.manifests[1]
    for key in (middle.segment.key, middle.key, middle.checkpoint_key):
        attacker.hide(key)
    failures = failures_of(built)
    assert any(f.step == "manifests" and "20..39" in f.message for f in failures)


def test_tail_truncated_is_caught_against_a_pinned_head(built: Built) -> None:
    pinned = Head(built.chain_id, _checkpoint_of(built, 2))
    attacker = Attacker(built)
    last = built.manifests[-1]
    for key in (
        last.segment.key,
        last.record_index.key,
        last.intent_key,
        last.key,
        last.checkpoint_key,
    ):
        attacker.hide(key)
    attacker.hide(head_key(2))  # the archive head of the last day's commit
    # Without an outside anchor a clean cut at a commit boundary is invisible: that is why heads
    # must be pinned outside the writer's reach.
    verify_archive(built.store, built.trust)
    failures = failures_of(built, heads=[pinned])
    assert any(f.step == "head" and "tail truncated" in f.message for f in failures)


def test_tail_cut_that_leaves_objects_behind_is_an_unsigned_tail(built: Built) -> None:
    attacker = Attacker(built)
    last = built.manifests[-1]
    for key in (last.key, last.checkpoint_key):
        attacker.hide(key)
    failures = failures_of(built)
    tail = {f.key for f in failures if f.step == "tail"}
    assert tail == {last.segment.key, last.record_index.key, last.intent_key}


def test_segment_replaced_and_resigned_with_untrusted_key(built: Built) -> None:
    attacker = Attacker(built)
    rogue = signer("coexarchive.test", seed=b"rogue")
    last = built.manifests[-1]
    for key in (last.segment.key, last.record_index.key, last.key, last.checkpoint_key):
        attacker.hide(key)
    # Rebuild the last day from the committed head with different content, signed by the rogue key.
    writer = ChainWriter(
        built.store,
        built.chain_id,
        signer=rogue,
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=built.trust,  # the genuine verifier key is public
    )
    forged = [
        dataclasses.replace(r, text="forged") for r in make_records(built.chain_id, 20, day=2)
    ]
    original_put = built.store.put
    built.store.put = lambda key, data, **kw: attacker.put_version(key, data) or True  # type: ignore[method-assign]
    try:
        writer.append(forged)
    finally:
        built.store.put = original_put  # type: ignore[method-assign]
    failures = failures_of(built)
    assert any(f.step == "checkpoint" and f.key == last.checkpoint_key for f in failures)


def test_two_checkpoints_for_one_size_is_a_fork(built: Built) -> None:
    attacker = Attacker(built)
    middle = built.manifests[1]
    other_root = bytes(32)
    note = sign_note(
        Checkpoint(checkpoint_origin(ARCHIVE, built.chain_id), middle.tree_size, other_root).body(),
        [built.signer],
    )
    attacker.put_version(middle.checkpoint_key, note)
    failures = failures_of(built)
    assert any(f.step == "fork" and f.key == middle.checkpoint_key for f in failures)


def test_fork_against_a_pinned_head(built: Built) -> None:
    forged = Checkpoint(checkpoint_origin(ARCHIVE, built.chain_id), 40, bytes(32))
    failures = failures_of(built, heads=[Head(built.chain_id, forged)])
    assert any(f.step == "head" and "fork" in f.message for f in failures)


def test_manifest_pointing_at_another_file(built: Built) -> None:
    attacker = Attacker(built)
    first, second = built.manifests[0], built.manifests[1]
    forged = dataclasses.replace(second, segment=first.segment)
    attacker.put_version(second.key, forged.to_bytes())
    failures = failures_of(built)
    assert any(f.step == "rows" and f.key == first.segment.key for f in failures)


def test_object_with_no_retention(built: Built) -> None:
    attacker = Attacker(built)
    manifest = built.manifests[0]
    attacker.put_version(manifest.key, built.store.get(manifest.key))  # same bytes, no lock
    failures = failures_of(built)
    assert [(f.step, f.key) for f in failures] == [("retention", manifest.key)]


def test_shortening_compliance_retention_is_refused(s3_store: Any) -> None:
    built = build(s3_store, days=(0,), policy=short_policy("COMPLIANCE", 1))
    key = built.manifests[0].segment.key
    current = s3_store.info(key).retention
    assert current is not None and current.mode == "COMPLIANCE"
    shorter = Retention("COMPLIANCE", current.retain_until - timedelta(days=30))
    with pytest.raises(RetentionError):
        s3_store.extend_retention(key, shorter)
    assert s3_store.info(key).retention == current


def test_a_crash_before_the_checkpoint_is_rolled_forward(s3_store: Any) -> None:
    built = build(s3_store, days=(0,))
    writer = ChainWriter(
        s3_store, built.chain_id, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    commit = writer._commit
    writer._commit = lambda manifest: None  # type: ignore[method-assign]  # crash before the checkpoint
    writer.append(make_records(built.chain_id, 10, day=1))
    writer._commit = commit  # type: ignore[method-assign]
    with pytest.raises(ArchiveVerificationError):
        verify_archive(s3_store, built.trust)
    resumed = ChainWriter(
        s3_store, built.chain_id, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    assert resumed.state().size == 30
    resumed.append(make_records(built.chain_id, 5, day=2))
    assert verify_archive(s3_store, built.trust).records_checked == 35


def test_rerunning_the_same_input_seals_the_same_bytes(s3_store: Any) -> None:
    built = build(s3_store, days=(0,))
    again = ChainWriter(
        s3_store,
        "900000000000002",
        signer=built.signer,
        archive_name=ARCHIVE,
        policy=short_policy(),
    )
    first = again.append(make_records("900000000000002", 15))
    replay = ChainWriter(
        s3_store,
        "900000000000002",
        signer=built.signer,
        archive_name=ARCHIVE,
        policy=short_policy(),
    )
    replay._state = None
    # A writer starting from the same state produces identical objects: every put is a no-op.
    from coexarchive.segments import ChainState

    replay._state = ChainState.empty("900000000000002")
    second = replay.append(make_records("900000000000002", 15))
    assert [r.manifest for r in first] == [r.manifest for r in second]
    assert [r.created for r in second] == [False]


def test_two_concurrent_writers_cannot_both_succeed(s3_store: Any) -> None:
    from coexarchive.errors import SealError

    built = build(s3_store, days=(0,))
    a = ChainWriter(
        s3_store, built.chain_id, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    b = ChainWriter(
        s3_store, built.chain_id, signer=built.signer, archive_name=ARCHIVE, policy=short_policy()
    )
    a.state(), b.state()
    a.append(make_records(built.chain_id, 5, day=1))
    with pytest.raises(SealError, match="another writer"):
        b.append(
            [dataclasses.replace(r, text="other") for r in make_records(built.chain_id, 5, day=1)]
        )
    assert verify_archive(s3_store, built.trust).records_checked == 25


def _checkpoint_of(built: Built, index: int) -> Checkpoint:
    from coexarchive.seal.checkpoint import open_checkpoint

    manifest: Manifest = built.manifests[index]
    return open_checkpoint(built.store.get(manifest.checkpoint_key), built.trust)


# --- the customer filter: a forged one would make a customer's report skip records -----------


def forge_manifest(attacker: Attacker, index: int, **changes: Any) -> Manifest:
    """A new manifest version with these changes, locked like the original (so only the changed
    members differ: an attacker allowed to set retention)."""
    manifest = attacker.built.manifests[index]
    forged = dataclasses.replace(manifest, **changes)
    attacker.client.put_object(
        Bucket=attacker.bucket,
        Key=manifest.key,
        Body=forged.to_bytes(),
        ObjectLockMode=manifest.retention.mode,
        ObjectLockRetainUntilDate=manifest.retention.retain_until,
    )
    return forged


def test_every_manifest_carries_a_filter_of_its_customers(built: Built) -> None:
    for manifest in built.manifests:
        segment = read_segment(built.store.get(manifest.segment.key))
        assert manifest.customers is not None and manifest.customers.first_seq == 0
        assert manifest.customers.missing(set(segment.column("customer_id").to_pylist())) == []


def test_customer_filter_emptied_is_caught(built: Built) -> None:
    attacker = Attacker(built)
    known = built.manifests[1].customers
    assert known is not None
    emptied = CustomerFilter(known.first_seq, known.bits, bytes(len(known.data)))
    forged = forge_manifest(attacker, 1, customers=emptied)
    failures = failures_of(built)
    assert {(f.step, f.key) for f in failures} == {
        ("manifests", forged.key),  # does not hold the previous manifest's filter
        ("manifests", forged.segment.key),  # lacks the segment's own customers
    }
    assert all("customer" in f.message for f in failures)


def test_customer_filter_restarted_without_the_segment_customers_is_caught(
    built: Built,
) -> None:
    attacker = Attacker(built)
    manifest = built.manifests[2]
    nobody = CustomerFilter.of(["nobody"], first_seq=manifest.first_seq, bits=1 << 16)
    forged = forge_manifest(attacker, 2, customers=nobody)
    failures = failures_of(built)
    assert [(f.step, f.key) for f in failures] == [("manifests", forged.segment.key)]


def test_customer_filter_claiming_more_history_than_it_holds_is_caught(built: Built) -> None:
    attacker = Attacker(built)
    manifest = built.manifests[2]
    segment = read_segment(built.store.get(manifest.segment.key))
    # Only this segment's customers, but claiming to answer from seq 0: earlier customers that
    # happened to differ would be skipped; the generation rule refuses it whatever they are.
    own = CustomerFilter.of(
        set(segment.column("customer_id").to_pylist()), first_seq=0, bits=1 << 17
    )
    forged = forge_manifest(attacker, 2, customers=own)
    failures = failures_of(built)
    assert [(f.step, f.key) for f in failures] == [("manifests", forged.key)]


def test_manifests_without_filters_still_verify(built: Built) -> None:
    attacker = Attacker(built)
    for index in range(len(built.manifests)):
        forge_manifest(attacker, index, customers=None)
    assert verify_archive(built.store, built.trust).ok


# --- per-segment findings: a forged total would misstate the compliance summary -------------


@pytest.fixture
def flagged(s3_store: Any) -> Built:
    """One chain, three days; two records a day carry a compliance flag."""
    key, chain = signer(), "900000000000001"
    writer = ChainWriter(s3_store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
    results = []
    for day in range(3):
        records = make_records(chain, 10, day=day)
        records[2] = dataclasses.replace(records[2], flags=("marketing_without_consent",))
        records[5] = dataclasses.replace(records[5], flags=("capture_gap", "sent_after_opt_out"))
        results += writer.append(records)
    write_head_after(s3_store, [results[-1].manifest], signer=key, archive_name=ARCHIVE)
    return Built(s3_store, key, trust_for(key), chain, results)


def test_manifests_record_their_segments_findings(flagged: Built) -> None:
    for manifest in flagged.manifests:
        assert manifest.findings is not None
        assert {name: f.records for name, f in manifest.findings.items()} == {
            "capture_gap": 1,
            "marketing_without_consent": 1,
            "sent_after_opt_out": 1,
        }
    assert verify_archive(flagged.store, flagged.trust).ok


@pytest.mark.parametrize(
    "change",
    ["dropped", "undercounted", "time moved", "invented"],
)
def test_forged_findings_are_caught(flagged: Built, change: str) -> None:
    attacker = Attacker(flagged)
    findings = dict(flagged.manifests[1].findings or {})
    real = findings["marketing_without_consent"]
    if change == "dropped":
        del findings["marketing_without_consent"]
    elif change == "undercounted":
        findings["capture_gap"] = dataclasses.replace(findings["capture_gap"], records=2)
    elif change == "time moved":
        findings["marketing_without_consent"] = dataclasses.replace(
            real, last_time=real.last_time + 1
        )
    else:
        findings["template_not_approved"] = real
    forged = forge_manifest(attacker, 1, findings=findings)
    failures = failures_of(flagged)
    assert [(f.step, f.key) for f in failures] == [("manifests", forged.segment.key)]
    assert "findings" in failures[0].message


# --- what period queries trust: a manifest's event-time range, date and segment key ---------


@pytest.mark.parametrize("shift", ["later", "earlier", "wider"])
def test_manifest_event_times_moved_are_caught(built: Built, shift: str) -> None:
    manifest = built.manifests[0]
    low, high = manifest.min_event_time, manifest.max_event_time
    moved = {
        "later": (low + 2 * 86_400_000, high + 2 * 86_400_000),
        "earlier": (low - 1, high),
        "wider": (low, high + 1),
    }[shift]
    forged = forge_manifest(Attacker(built), 0, min_event_time=moved[0], max_event_time=moved[1])
    failures = failures_of(built)
    assert ("manifests", forged.segment.key) in [(f.step, f.key) for f in failures]
    assert any("event-time range" in f.message for f in failures)


def test_manifest_date_moved_is_caught(built: Built) -> None:
    forged = forge_manifest(Attacker(built), 1, date="2026-03-01")
    failures = failures_of(built)
    steps_keys = [(f.step, f.key) for f in failures]
    assert ("manifests", forged.segment.key) in steps_keys  # not the rows' date
    assert ("manifests", forged.key) in steps_keys  # not the date the segment key names


def test_an_empty_customer_id_is_no_false_alarm(s3_store: Any) -> None:
    key = signer()
    chain = "900000000000001"
    writer = ChainWriter(s3_store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
    records = make_records(chain, 6)
    records[3] = dataclasses.replace(records[3], customer_id="", customer_wa_id="")
    results = writer.append(records)
    write_head_after(s3_store, [results[-1].manifest], signer=key, archive_name=ARCHIVE)
    assert verify_archive(s3_store, trust_for(key)).ok


# --- the record index: ingest trusts it to skip records already sealed -------------------------


def _forge_index(attacker: Attacker, index: int, data: bytes) -> None:
    manifest = attacker.built.manifests[index]
    attacker.put_version(manifest.record_index.key, data)
    forge_manifest(
        attacker,
        index,
        record_index=ObjectRef(manifest.record_index.key, sha256_hex(data), len(data)),
    )


def _index_lines(attacker: Attacker, index: int) -> list[str]:
    manifest = attacker.built.manifests[index]
    text = zstandard.ZstdDecompressor().decompress(
        attacker.built.store.get(manifest.record_index.key)
    )
    return text.decode().splitlines()


def test_record_index_listing_a_record_the_segment_lacks_is_caught(built: Built) -> None:
    # With this line, de-duplication would take a future genuine delivery for one already sealed.
    attacker = Attacker(built)
    lines = _index_lines(attacker, 1)
    forged = "\n".join(sorted([*lines[1:], f"{'f' * 32} message"])) + "\n"
    data = zstandard.ZstdCompressor().compress((lines[0] + "\n" + forged).encode())
    _forge_index(attacker, 1, data)
    (failure,) = [f for f in failures_of(built) if f.step == "objects"]
    assert failure.key == built.manifests[1].record_index.key
    assert "does not list exactly the segment's records" in failure.message


def test_record_index_without_its_content_size_is_caught(built: Built) -> None:
    attacker = Attacker(built)
    text = "\n".join(_index_lines(attacker, 0)) + "\n"
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    data = compressor.compress(text.encode())
    _forge_index(attacker, 0, data)
    (failure,) = [f for f in failures_of(built) if f.step == "objects"]
    assert "does not state its content size" in failure.message


def test_a_chain_from_another_archive_is_caught_by_its_manifests(built: Built) -> None:
    # Same signing key, other archive name (say a test archive): its checkpoints verify, but its
    # manifests name the other archive.
    failures = failures_of(built, archive_name="other.example")
    manifests = [f for f in failures if f.step == "manifests"]
    assert len(manifests) == len(built.manifests)
    assert all("belongs to archive" in f.message for f in manifests)
    assert verify_archive(built.store, built.trust, archive_name=ARCHIVE).ok
