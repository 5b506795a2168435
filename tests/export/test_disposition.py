"""Disposition: content whose retention ended goes, proofs stay, and verify tells the two apart."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.disposition import (
    DISPOSITIONS_CHAIN,
    Disposer,
    disposition_record,
    plan_disposition,
    read_dispositions,
    retention_report,
)
from coexarchive.errors import RetentionError, SealError
from coexarchive.export.bundle import ExportRequest, Selection, build_bundle
from coexarchive.export.holds import HoldRegister, HoldScope, held_keys
from coexarchive.export.proofs import chain_tree
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.merkle import verify_inclusion
from coexarchive.segments import ChainWriter, Manifest, list_manifests, read_segment
from coexarchive.store import MemoryStore, S3Store
from coexarchive.store.base import ObjectStore
from coexarchive.verify import ArchiveVerificationError, verify_archive
from support.archive import (
    ARCHIVE,
    DAY_MS,
    make_records,
    midday,
    short_policy,
    signer,
    trust_for,
)

INDEPENDENT = Path(__file__).parents[2] / "schemas" / "independent" / "verify_archive.py"
CHAIN = "900000000000041"
HELD = "447700900001"  # make_records' customer of row 1
KEY = signer()
POLICY = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))


def captured_at(records: list[Record], at_ms: int) -> list[Record]:
    return [replace(r, received_time=at_ms) for r in records]


def build(store: ObjectStore, expired_ms: int, live_ms: int) -> list[Manifest]:
    """Three segments: other customers (expiring), HELD's (expiring), everyone later (live).

    Retention runs from the capture time (``captured_at``); event times only place the records
    in their day's segment."""
    writer = ChainWriter(store, CHAIN, signer=KEY, archive_name=ARCHIVE, policy=POLICY)
    early = make_records(CHAIN, 14, start_ms=midday(expired_ms - 3 * DAY_MS))
    writer.append(captured_at([r for r in early if r.customer_id != HELD], expired_ms))
    writer.append(
        captured_at(
            [
                r
                for r in make_records(CHAIN, 8, start_ms=midday(expired_ms - 3 * DAY_MS), day=1)
                if r.customer_id == HELD
            ],
            expired_ms,
        )
    )
    writer.append(
        captured_at(make_records(CHAIN, 5, start_ms=midday(live_ms - 2 * DAY_MS), day=2), live_ms)
    )
    segments = manifests_of(store)
    write_head_after(store, segments, signer=KEY, archive_name=ARCHIVE)
    return segments


def manifests_of(store: ObjectStore, chain: str = CHAIN) -> list[Manifest]:
    return [Manifest.from_bytes(store.get(k)) for k in list_manifests(store, chain)]


def hold_and_dispose(store: ObjectStore, now_ms: int) -> list[Manifest]:
    register = HoldRegister(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy())
    register.place("M-1", HoldScope(customer=HELD), who="dana@legal", now_ms=now_ms)
    plan = plan_disposition(store, until_ms=now_ms, now_ms=now_ms, trust=trust_for(KEY))
    free, held, live = manifests_of(store)
    assert [m.first_seq for m in plan.due] == [free.first_seq]
    assert [(m.first_seq, matters) for m, matters in plan.held] == [(held.first_seq, ["M-1"])]
    Disposer(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy()).execute(
        plan, who="records@firm", now_ms=now_ms, policy="GOVERNANCE:1", reason="schedule 4"
    )
    return [free, held, live]


def check_proofs_of_remaining(store: ObjectStore, segments: list[Manifest]) -> int:
    """Every remaining record's recomputed leaf proves into every checkpoint that covers it."""
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    trust = trust_for(KEY)
    proven = 0
    for size in (m.tree_size for m in segments):
        tree = chain_tree(catalog, CHAIN, trust, size=size)
        for manifest in segments:
            if manifest.tree_size > size or not store.exists(manifest.segment.key):
                continue
            table = read_segment(store.get(manifest.segment.key)).sort_by("seq")
            for seq, leaf in zip(
                table.column("seq").to_pylist(), recompute_leaf_hashes(table), strict=True
            ):
                path = [tree.levels.node(*slot) for slot in tree.levels.path(seq)]
                verify_inclusion(leaf, seq, size, path, tree.checkpoint.root_hash)
                proven += 1
    return proven


# --- on the real S3 server, whose Object Lock decides what may go ------------------------------


@pytest.mark.integration
def test_disposition_on_s3_keeps_held_segment_and_every_proof(s3_store: S3Store) -> None:
    store = s3_store
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    expired_ms = int(expires.replace(year=expires.year - 1).timestamp() * 1000)
    live_ms = int(datetime.now(UTC).timestamp() * 1000) - DAY_MS
    free, held, live = build(store, expired_ms, live_ms)
    now = int(datetime.now(UTC).timestamp() * 1000)
    # Before the retention ends nothing is due, and S3 itself refuses the deletion.
    assert not plan_disposition(store, until_ms=now + DAY_MS, now_ms=now, trust=trust_for(KEY)).due
    with pytest.raises(RetentionError):
        store.dispose(free.segment.key)

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.5)
    now = int(datetime.now(UTC).timestamp() * 1000)
    hold_and_dispose(store, now)

    assert not store.exists(free.segment.key) and not store.exists(free.record_index.key)
    assert store.versions(free.segment.key) == []  # every version gone, not a delete marker
    assert store.exists(held.segment.key) and store.info(held.segment.key).legal_hold
    assert store.exists(free.key) and store.exists(free.checkpoint_key)  # hashes stay
    # A held object refuses deletion even though its retention ended.
    with pytest.raises(RetentionError):
        store.dispose(held.segment.key)
    report = verify_archive(store, trust_for(KEY), held_keys=held_keys(store, trust=trust_for(KEY)))
    (chain,) = [c for c in report.chains if c.chain_id == CHAIN]
    assert chain.records_disposed == free.record_count
    assert chain.records_checked == held.record_count + live.record_count
    assert check_proofs_of_remaining(store, [free, held, live]) > 0


# --- in memory: the rules, and the attacks ---------------------------------------------------


NOW = int(datetime(2026, 12, 6, tzinfo=UTC).timestamp() * 1000)
EXPIRED = NOW - 400 * DAY_MS  # captured 400 days ago, kept one year: retention ended
LIVE = NOW - 10 * DAY_MS


@pytest.fixture
def disposed() -> tuple[MemoryStore, list[Manifest]]:
    store = MemoryStore()
    build(store, EXPIRED, LIVE)
    return store, hold_and_dispose(store, NOW)


def failures(store: ObjectStore) -> list[tuple[str, str | None, str]]:
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(KEY), held_keys=held_keys(store, trust=trust_for(KEY)))
    return [(f.step, f.key, f.message) for f in caught.value.report.failures]


def test_disposition_in_memory_verifies_and_proves(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (free, held, live) = disposed
    verify_archive(store, trust_for(KEY), held_keys=held_keys(store, trust=trust_for(KEY)))
    proven = check_proofs_of_remaining(store, [free, held, live])
    # Held records prove into the two checkpoints covering them, live ones into the last.
    assert proven == 2 * held.record_count + live.record_count
    (entry,) = read_dispositions(store, trust_for(KEY)).values()
    assert (entry.first_seq, entry.last_seq, entry.segment) == (
        free.first_seq,
        free.last_seq,
        free.segment,
    )


def test_deleting_content_without_a_disposition_is_named_by_verify() -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    store.dispose(free.segment.key)  # retention ended, so S3 would let an administrator do this
    found = failures(store)
    assert [(step, key) for step, key, _ in found] == [("objects", free.segment.key)]
    assert "no signed disposition" in found[0][2]


def test_a_disposition_excuses_only_the_segment_it_names(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (_, held, _) = disposed
    store.unsafe_delete(held.segment.key)
    assert [(step, key) for step, key, _ in failures(store)] == [("objects", held.segment.key)]


def test_kept_leaves_altered_or_gone_are_named(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, _ = disposed
    (entry,) = read_dispositions(store, None).values()
    data = store.unsafe_objects[entry.leaves.key]
    store.unsafe_objects[entry.leaves.key] = data[:-1] + bytes([data[-1] ^ 1])
    assert [(s, k) for s, k, _ in failures(store)] == [("objects", entry.leaves.key)]
    store.unsafe_delete(entry.leaves.key)
    assert [(s, k) for s, k, _ in failures(store)] == [("objects", entry.leaves.key)]


class Forger(Disposer):
    """Someone with write access to the bucket and a key of their own seals the register."""

    def _seal(self, detail: Mapping[str, Any], *, now_ms: int) -> Manifest:
        writer = ChainWriter(
            self.store, DISPOSITIONS_CHAIN, signer=self.signer, archive_name=ARCHIVE, policy=POLICY
        )
        return writer.append([disposition_record(detail, now_ms=now_ms)])[0].manifest


def test_a_disposition_signed_by_another_key_excuses_nothing() -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    rogue = signer("coexarchive.test", b"rogue")
    Forger(store, signer=rogue, archive_name=ARCHIVE).execute(
        plan, who="mallory", now_ms=NOW, policy="GOVERNANCE:1"
    )
    assert not store.exists(free.segment.key)
    found = failures(store)
    assert ("objects", free.segment.key) in [(s, k) for s, k, _ in found]
    assert any(m.startswith("disposition register") for _, _, m in found)


class _NoDeletes:
    """The ingest role's view of the bucket: create-only puts, and no delete."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def dispose(self, key: str) -> None:
        raise PermissionError(f"AccessDenied: DeleteObject {key}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class TailForger(Disposer):
    """Seals a disposition as the register would, past its last checkpoint, signing nothing."""

    def _seal(self, detail: Mapping[str, Any], *, now_ms: int) -> Manifest:
        writer = ChainWriter(
            self.store, DISPOSITIONS_CHAIN, signer=self.signer, archive_name=ARCHIVE, policy=POLICY
        )
        writer._commit = lambda manifest: None  # type: ignore[method-assign]
        return writer.append([disposition_record(detail, now_ms=now_ms)])[0].manifest


def test_a_disposition_nobody_signed_is_not_finished_by_the_next_run() -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    assert free in plan.due and not plan.pending
    rogue = signer("coexarchive.test", b"rogue")
    attacker = TailForger(_NoDeletes(store), signer=rogue, archive_name=ARCHIVE)  # type: ignore[arg-type]
    with pytest.raises(PermissionError):
        attacker.execute(plan, who="mallory", now_ms=NOW, policy="GOVERNANCE:1")
    # The forged entry is not a disposition a run must finish: the next plan is the same, and
    # carrying it out stops at the register's unsigned tail before anything is deleted.
    again = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    assert free in again.due and not again.pending
    with pytest.raises(SealError, match="past the last signed checkpoint"):
        Disposer(store, signer=KEY, archive_name=ARCHIVE).execute(
            again, who="ops", now_ms=NOW, policy="GOVERNANCE:1"
        )
    assert store.exists(free.segment.key)


def test_a_forged_leaf_file_in_a_replaced_manifest_is_refused(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (free, _, _) = disposed
    # Someone rewrites the disposed segment's manifest: the disposition no longer names it.
    forged = replace(free, kinds={"message": 1})
    store.unsafe_delete(free.key)
    store.put(free.key, forged.to_bytes())
    steps = {(s, k) for s, k, _ in failures(store)}
    assert ("objects", free.segment.key) in steps


def test_a_crash_after_sealing_is_finished_without_sealing_again() -> None:
    store = MemoryStore()
    free, second, _ = build(store, EXPIRED, LIVE)  # no hold here: both expired segments go
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    disposer = Disposer(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy())
    real_dispose = store.dispose
    crash = OSError("crash")
    store.dispose = lambda key: (_ for _ in ()).throw(crash)  # type: ignore[method-assign]
    with pytest.raises(OSError, match="crash"):
        disposer.execute(plan, who="a", now_ms=NOW, policy="GOVERNANCE:1")
    store.dispose = real_dispose  # type: ignore[method-assign]
    assert store.exists(free.segment.key)
    verify_archive(store, trust_for(KEY))  # sealed but not yet deleted: still whole
    again = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    assert not again.due
    assert [e.first_seq for e in again.pending] == [free.first_seq, second.first_seq]
    # A hold placed meanwhile on one of them keeps it, though its disposition is sealed.
    HoldRegister(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy()).place(
        "M-LATE",
        HoldScope(chain=CHAIN, until=second.max_event_time + 1, since=second.min_event_time),
        who="a",
        now_ms=NOW,
    )
    again = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    assert [e.first_seq for e in again.pending] == [free.first_seq]
    assert [(m.first_seq, matters) for m, matters in again.held] == [(second.first_seq, ["M-LATE"])]
    outcome = disposer.execute(again, who="a", now_ms=NOW + 1, policy="GOVERNANCE:1")
    assert store.exists(second.segment.key)
    assert outcome.sealed == [] and not store.exists(free.segment.key)
    assert len(manifests_of(store, DISPOSITIONS_CHAIN)) == 1
    verify_archive(store, trust_for(KEY))


def test_a_segment_that_does_not_match_its_seal_is_not_disposed() -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    data = store.unsafe_objects[free.segment.key]
    store.unsafe_objects[free.segment.key] = data[:-9] + b"x" + data[-8:]
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    with pytest.raises(SealError, match="refusing to dispose"):
        Disposer(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy()).execute(
            plan, who="a", now_ms=NOW, policy="GOVERNANCE:1"
        )
    assert store.exists(free.segment.key) and not list_manifests(store, DISPOSITIONS_CHAIN)


def test_nothing_before_its_retention_ends_and_the_dry_run_deletes_nothing() -> None:
    store = MemoryStore()
    segments = build(store, EXPIRED, LIVE)
    early = plan_disposition(store, until_ms=EXPIRED, now_ms=NOW, trust=trust_for(KEY))
    assert not early.due and not early.held
    later = plan_disposition(store, until_ms=NOW + 400 * DAY_MS, now_ms=NOW, trust=trust_for(KEY))
    assert len(later.due) == 2  # the live segment's retention has not ended by now
    assert all(store.exists(m.segment.key) for m in segments)


def test_queries_and_holds_read_around_disposed_segments(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (free, held, live) = disposed
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    firsts = [s.first_seq for s in catalog.segments(chains=[CHAIN])]
    assert firsts == [held.first_seq, live.first_seq]
    rows = catalog.dataset(catalog.segments(chains=[CHAIN])).to_table(columns=["seq"]).num_rows
    assert rows == held.record_count + live.record_count
    assert free.segment.key not in held_keys(store, trust=trust_for(KEY))


def test_retention_report_counts_due_records_and_the_matters_that_block_them() -> None:
    store = MemoryStore()
    free, held, live = build(store, EXPIRED, LIVE)
    HoldRegister(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy()).place(
        "M-9", HoldScope(customer=HELD), who="a", now_ms=NOW
    )
    rows = retention_report(store, trust=trust_for(KEY))
    month = free.retention.retain_until.strftime("%Y-%m")
    due = [r for r in rows if r.month == month]
    assert sum(r.records for r in due) == free.record_count + held.record_count
    assert sum(r.held for r in due) == held.record_count
    assert {m for r in due for m in r.matters} == {"M-9"}
    later = live.retention.retain_until.strftime("%Y-%m")
    # The live segment holds one of HELD's messages too: all of it stays while M-9 lasts.
    assert [(r.month, r.records, r.held) for r in rows if r.month == later] == [
        (later, live.record_count, live.record_count)
    ]


def test_an_evidence_bundle_after_disposition_proves_and_verifies_offline(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (_, held, _) = disposed
    request = ExportRequest(
        matter="M-1",
        selection=Selection(customer=HELD),
        who="dana@legal",
        as_of=NOW,
        zone="UTC",
    )
    bundle = build_bundle(ArchiveCatalog(store), trust_for(KEY), request)
    # HELD's records in the held segment and the one in the live segment, none disposed of.
    assert bundle.record_count == held.record_count + 1
    report = verify_bundle(bundle.files, trust=trust_for(KEY))
    assert report.ok and report.trusted


def test_a_verified_transcript_after_disposition_proves_the_remaining_rows(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (_, held, _) = disposed
    log = AccessLog(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy())
    ticks = iter(range(NOW, NOW + 10**9, 1_000))
    session = AuditSession(
        store, access_log=log, who="a@firm", trust=trust_for(KEY), clock=lambda: next(ticks)
    )
    result = session.report("transcript", Params(customer=HELD), verify=True)
    # A failed proof raises; what comes back was proven against the signed checkpoint.
    assert result.verification is not None
    assert result.verification.rows == held.record_count + 1
    assert result.verification.summary().startswith(f"verified {held.record_count + 1} row(s)")


def run_independent(store: MemoryStore, root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The verifier written from SEALING.md alone, on a directory copy of the bucket."""
    for key, data in store.unsafe_objects.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    trust = root.parent / "trust.txt"
    trust.write_text(KEY.verifier_key() + "\n")
    spec = importlib.util.spec_from_file_location("independent_verifier", INDEPENDENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    code = module.main([str(root), str(trust), ARCHIVE])
    out = capsys.readouterr().out
    return f"exit {code}\n{out}"


def test_the_independent_verifier_accepts_a_signed_disposition(
    disposed: tuple[MemoryStore, list[Manifest]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, _ = disposed
    out = run_independent(store, tmp_path / "bucket", capsys)
    assert out.startswith("exit 0\n") and "FAIL" not in out


def test_the_independent_verifier_names_content_deleted_without_a_disposition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    store.dispose(free.segment.key)
    out = run_independent(store, tmp_path / "bucket", capsys)
    assert out.startswith("exit 1\n")
    assert f"{free.segment.key} is missing, and no signed disposition names it" in out


def test_the_independent_verifier_refuses_altered_kept_leaves(
    disposed: tuple[MemoryStore, list[Manifest]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, _ = disposed
    (entry,) = read_dispositions(store, None).values()
    data = store.unsafe_objects[entry.leaves.key]
    store.unsafe_objects[entry.leaves.key] = data[:-1] + bytes([data[-1] ^ 1])
    out = run_independent(store, tmp_path / "bucket", capsys)
    assert out.startswith("exit 1\n") and "differs from the SHA-256 the disposition sealed" in out


def test_the_independent_verifier_ignores_a_disposition_no_trusted_key_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MemoryStore()
    free, _, _ = build(store, EXPIRED, LIVE)
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    Forger(store, signer=signer("coexarchive.test", b"rogue"), archive_name=ARCHIVE).execute(
        plan, who="mallory", now_ms=NOW, policy="GOVERNANCE:1"
    )
    out = run_independent(store, tmp_path / "bucket", capsys)
    assert out.startswith("exit 1\n")
    assert f"{free.segment.key} is missing, and no signed disposition names it" in out


def test_each_run_extends_the_kept_leaves_to_the_chains_longest_retention(
    disposed: tuple[MemoryStore, list[Manifest]],
) -> None:
    store, (_, _, live) = disposed
    (entry,) = read_dispositions(store, None).values()
    before = store.info(entry.leaves.key).retention
    assert before is not None and before.retain_until == live.retention.retain_until
    # Records captured later are kept longer; the next run extends the leaves' lock to match.
    writer = ChainWriter(store, CHAIN, signer=KEY, archive_name=ARCHIVE, policy=POLICY)
    (later,) = writer.append(captured_at(make_records(CHAIN, 2, start_ms=NOW, day=9), NOW + DAY_MS))
    plan = plan_disposition(store, until_ms=NOW, now_ms=NOW, trust=trust_for(KEY))
    Disposer(store, signer=KEY, archive_name=ARCHIVE, policy=short_policy()).execute(
        plan, who="a", now_ms=NOW, policy="GOVERNANCE:1"
    )
    after = store.info(entry.leaves.key).retention
    assert after is not None and after.retain_until == later.manifest.retention.retain_until
    assert after.retain_until > before.retain_until
