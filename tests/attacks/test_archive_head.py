"""Vanished, shortened and forked chains, and forged or deleted archive heads, are caught.

The attacker here is the storage admin, who deletes locked objects through SeaweedFS's
unauthenticated filer port (Object Lock does not stop them), or someone with the ingest role's
create-only S3 rights but no trusted key. Each test asserts the named failure.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from coexarchive.archive_head import (
    HeadWriter,
    PinnedHead,
    check_archive_heads,
    parse_pinned_head,
    write_head_after,
)
from coexarchive.cli import main
from coexarchive.errors import SealError
from coexarchive.export.holds import HOLDS_CHAIN, HoldRegister, HoldScope
from coexarchive.query.access_log import AccessEntry, AccessLog
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, sign_note
from coexarchive.seal.head import ArchiveHead, ChainHead, head_key, open_head, sign_head
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store.memory import MemoryStore
from coexarchive.store.s3 import S3Store
from coexarchive.verify import ArchiveVerificationError, Report, verify_archive
from support.archive import (
    ARCHIVE,
    START_MS,
    Built,
    build,
    make_records,
    short_policy,
    signer,
    trust_for,
    use_cli_environment,
)

pytestmark = pytest.mark.integration

OTHER = "900000000000002"
SCRIPT = Path(__file__).parents[2] / "schemas" / "independent" / "verify_archive.py"


class StorageAdmin:
    """Deletes objects, every version and lock notwithstanding, through the filer port."""

    def __init__(self, seaweed: Any, store: S3Store) -> None:
        self.base = f"http://127.0.0.1:{seaweed.ports['filer.port']}/buckets/{store.bucket}/"

    def delete(self, *keys: str) -> None:
        for key in keys:
            # A versioned object is a directory of versions named after its key.
            self._delete(f"{key}.versions", missing_ok=True)

    def delete_chain(self, chain_id: str) -> None:
        for prefix in ("archive/v1", "dedup/v1", "intents", "manifests", "checkpoints"):
            self._delete(f"{prefix}/chain={chain_id}/", missing_ok=False)

    def _delete(self, path: str, *, missing_ok: bool) -> None:
        response = httpx.delete(self.base + path, params={"recursive": "true"}, timeout=10)
        if not (response.is_success or (missing_ok and response.status_code == 404)):
            response.raise_for_status()


@pytest.fixture
def two_chains(s3_store: S3Store) -> Built:
    """Two chains, three commits: chain A on days 0 and 1, then chain B (heads 0, 1, 2)."""
    built = build(s3_store, days=(0, 1), per_day=10)
    build(s3_store, chain_id=OTHER, days=(0,), per_day=6)
    return built


@pytest.fixture
def admin(seaweed: Any, s3_store: S3Store) -> StorageAdmin:
    return StorageAdmin(seaweed, s3_store)


def head_failures(built: Built, pins: Sequence[PinnedHead] = ()) -> list[str]:
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(built.store, built.trust, archive_name=ARCHIVE, archive_heads=pins)
    return [f"{f.message} [{f.chain_id}]" for f in caught.value.report.failures]


def verified(built: Built, pins: Sequence[PinnedHead] = ()) -> Report:
    return verify_archive(built.store, built.trust, archive_name=ARCHIVE, archive_heads=pins)


def newest_note(built: Built) -> bytes:
    note: bytes = built.store.get(list(built.store.list("heads/"))[-1])
    return note


def text_of(note: bytes) -> ArchiveHead:
    return ArchiveHead.parse(note[: note.rfind(b"\n\n") + 1])


def test_a_clean_archive_names_the_head_it_was_checked_against(two_chains: Built) -> None:
    report = verified(two_chains)
    assert report.archive_head is not None
    assert (report.archive_head.seq, report.archive_head.chains) == (2, 2)
    assert report.archive_head.signed_by == ["coexarchive.test"]


def test_deleting_a_whole_chain_is_caught(two_chains: Built, admin: StorageAdmin) -> None:
    admin.delete_chain(OTHER)
    failures = head_failures(two_chains)
    assert (
        "chain vanished: the newest archive head 2 lists it with 6 records, the archive has none "
        f"of it [{OTHER}]"
    ) in failures


def test_a_chain_shortened_by_deleting_its_tail_is_caught(
    two_chains: Built, admin: StorageAdmin
) -> None:
    last = two_chains.manifests[-1]
    admin.delete(last.segment.key, last.record_index.key, last.key, last.checkpoint_key)
    failures = head_failures(two_chains)
    assert any(
        "chain shortened: the archive has 10 records, the newest archive head 2 vouches for 20" in f
        for f in failures
    )


def test_a_head_signed_with_an_untrusted_key_is_caught(two_chains: Built) -> None:
    # With create-only rights but no trusted key, the attacker appends a head that drops chain B.
    rogue = signer("coexarchive.test", b"rogue")
    newest = text_of(newest_note(two_chains))
    forged = ArchiveHead.build(ARCHIVE, 3, newest.body_hash(), newest.chains[:1])
    two_chains.store.put(head_key(3), sign_head(forged, [rogue]))
    failures = head_failures(two_chains)
    assert any("archive head does not verify" in f for f in failures)
    # And no honest writer extends it: the next commit refuses rather than sign on top of it.
    with pytest.raises(SealError, match="does not verify"):
        build(two_chains.store, chain_id="900000000000003", days=(0,), per_day=2)


def test_a_head_that_drops_a_chain_breaks_the_chain_of_heads(
    two_chains: Built, admin: StorageAdmin
) -> None:
    # Someone holding a trusted key (a stolen audit key) deletes chain B and appends a head that
    # no longer lists it: the head links, but it drops a chain the head before it listed.
    admin.delete_chain(OTHER)
    newest = text_of(newest_note(two_chains))
    forged = ArchiveHead.build(
        ARCHIVE, 3, newest.body_hash(), [c for c in newest.chains if c.chain_id != OTHER]
    )
    two_chains.store.put(head_key(3), sign_head(forged, [two_chains.signer]))
    failures = head_failures(two_chains)
    assert f"archive head 3 drops a chain head 2 listed [{OTHER}]" in failures


def test_deleting_the_newest_head_is_caught_against_a_kept_head(
    two_chains: Built,
    admin: StorageAdmin,
    seaweed: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_cli_environment(
        monkeypatch, seaweed, two_chains.store, two_chains.signer, tmp_path, auditor="t"
    )
    kept = tmp_path / "archive-head.note"
    assert main(["head", "--out", str(kept)]) == 0
    # The storage admin removes chain B and the head that first listed it: what remains is
    # consistent with head 1, so only the kept copy of head 2 catches it.
    admin.delete_chain(OTHER)
    admin.delete(head_key(2))
    capsys.readouterr()
    assert main(["verify"]) == 0
    assert "archive head 1 (heads/00000000000000000001)" in capsys.readouterr().out
    assert main(["verify", "--expect-head", str(kept)]) == 1
    out = capsys.readouterr().out
    assert "[archive-head] pinned archive head 2 is not in the archive" in out
    assert "chain vanished: the pinned archive head 2 lists it with 6 records" in out


def test_a_head_rewritten_after_a_rollback_is_caught_against_a_kept_head(
    two_chains: Built, admin: StorageAdmin
) -> None:
    kept = parse_pinned_head(newest_note(two_chains), two_chains.trust)
    # Roll back head 2 and chain B; the next honest commit then writes another head 2.
    admin.delete_chain(OTHER)
    admin.delete(head_key(2))
    build(two_chains.store, chain_id="900000000000003", days=(0,), per_day=2)
    failures = head_failures(two_chains, [kept])
    assert "archive head 2 differs from the pinned one (the heads were forked) [None]" in failures


def test_deleting_a_middle_head_breaks_the_chain_of_heads(
    two_chains: Built, admin: StorageAdmin
) -> None:
    admin.delete(head_key(1))
    failures = head_failures(two_chains)
    assert "archive heads 1..1 are missing (deleted?) [None]" in failures


def test_deleting_every_head_is_caught(two_chains: Built, admin: StorageAdmin) -> None:
    admin.delete(head_key(0), head_key(1), head_key(2))
    failures = head_failures(two_chains)
    assert any("the archive has chains but no verifiable archive head" in f for f in failures)


def test_a_head_replaced_by_one_that_does_not_link_is_caught(
    two_chains: Built, admin: StorageAdmin
) -> None:
    # A trusted key signs a head 1 that does not follow head 0 (a forked history of heads).
    original = text_of(two_chains.store.get(head_key(1)))
    admin.delete(head_key(1))
    forged = dataclasses.replace(original, prev=bytes(32))
    two_chains.store.put(head_key(1), sign_head(forged, [two_chains.signer]))
    failures = head_failures(two_chains)
    assert any("archive head 1 does not link to head 0" in f for f in failures)


def test_a_head_stating_another_root_is_caught(two_chains: Built, admin: StorageAdmin) -> None:
    original = text_of(newest_note(two_chains))
    chain = original.chain(OTHER)
    assert chain is not None
    forked = ChainHead(OTHER, chain.size, bytes(range(32)))
    forged = ArchiveHead.build(
        ARCHIVE, 2, original.prev, [c for c in original.chains if c.chain_id != OTHER] + [forked]
    )
    admin.delete(head_key(2))
    two_chains.store.put(head_key(2), sign_head(forged, [two_chains.signer]))
    failures = head_failures(two_chains)
    assert any(
        "the archive's tree at size 6 differs from the newest archive head 2" in f for f in failures
    )


def test_the_writer_never_shortens_a_chain_or_signs_a_fork(two_chains: Built) -> None:
    writer = HeadWriter(two_chains.store, signer=two_chains.signer, archive_name=ARCHIVE)
    first = two_chains.manifests[0]
    # A smaller size than the head states is no change; another root at the same size refuses.
    assert writer.commit([ChainHead(first.chain_id, first.tree_size, first.root_hash)]) is None
    last = two_chains.manifests[-1]
    with pytest.raises(SealError, match="refusing to sign a fork"):
        writer.commit([ChainHead(last.chain_id, last.tree_size, bytes(32))])


def test_the_writer_signs_no_size_without_a_trusted_checkpoint(two_chains: Built) -> None:
    writer = HeadWriter(two_chains.store, signer=two_chains.signer, archive_name=ARCHIVE)
    # Storage claims chain A has 25 records; no trusted checkpoint says so.
    with pytest.raises(SealError, match="no trusted checkpoint for size 25"):
        writer.commit([ChainHead(two_chains.chain_id, 25, bytes(32))])


def test_a_writer_that_loses_the_race_retries_with_the_next_seq(two_chains: Built) -> None:
    store: Any = two_chains.store
    late = "900000000000004"
    results = ChainWriter(
        store, late, signer=two_chains.signer, archive_name=ARCHIVE, policy=short_policy()
    ).append(make_records(late, 3))
    original_put = store.put
    raced: list[str] = []

    def put(key: str, data: bytes, **options: Any) -> bool:
        if key.startswith("heads/") and not raced:
            raced.append(key)  # another commit takes this seq first
            build(store, chain_id="900000000000005", days=(0,), per_day=2)
        return bool(original_put(key, data, **options))

    store.put = put
    try:
        head = write_head_after(
            store, [r.manifest for r in results], signer=two_chains.signer, archive_name=ARCHIVE
        )
    finally:
        del store.put
    assert raced == [head_key(3)]
    assert head is not None and head.seq == 4 and len(head.chains) == 4
    report = verified(two_chains)
    assert report.archive_head is not None and report.archive_head.seq == 4


def test_access_log_entries_commit_a_head(two_chains: Built) -> None:
    log = AccessLog(two_chains.store, signer=two_chains.signer, archive_name=ARCHIVE)
    log.append(AccessEntry("auditor", "SELECT 1", {}, 1, "0" * 64), now_ms=START_MS + 5)
    head, _ = open_head(newest_note(two_chains), two_chains.trust, archive_name=ARCHIVE)
    assert head.seq == 3 and head.chain("access-log") is not None
    assert verified(two_chains).archive_head is not None


def test_a_writer_with_another_key_opens_the_previous_head_only_with_the_trust_file(
    two_chains: Built,
) -> None:
    audit = signer("coexarchive.audit", b"audit")
    entry = AccessEntry("auditor", "SELECT 1", {}, 1, "0" * 64)
    alone = AccessLog(two_chains.store, signer=audit, archive_name=ARCHIVE)
    with pytest.raises(SealError, match="give the writer the trust file"):
        alone.append(entry, now_ms=START_MS + 5)
    trust = trust_for(two_chains.signer, audit)
    log = AccessLog(two_chains.store, signer=audit, archive_name=ARCHIVE, trust=trust)
    log.append(entry, now_ms=START_MS + 6)
    report = verify_archive(two_chains.store, trust, archive_name=ARCHIVE)
    assert report.archive_head is not None
    assert (report.archive_head.seq, report.archive_head.signed_by) == (3, ["coexarchive.audit"])


def test_hold_changes_commit_a_head(two_chains: Built) -> None:
    register = HoldRegister(two_chains.store, signer=two_chains.signer, archive_name=ARCHIVE)
    register.place(
        "matter-1", HoldScope(chain=OTHER), who="legal", now_ms=START_MS + 7, reason="test"
    )
    head, _ = open_head(newest_note(two_chains), two_chains.trust, archive_name=ARCHIVE)
    assert head.seq == 3 and head.chain(HOLDS_CHAIN) is not None
    assert verified(two_chains).archive_head is not None


def _copy_bucket(store: S3Store, root: Path) -> None:
    for key in store.list(""):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get(key))


def _independent(root: Path, trust: Path, *pinned: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root), str(trust), ARCHIVE, *map(str, pinned)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_same_size_fork_of_a_pinned_head_is_caught_by_the_independent_verifier(
    two_chains: Built, tmp_path: Path
) -> None:
    # The trusted key signed two trees of chain A at size 15 (inside a segment) and size 20:
    # sizes agree with the archive, roots do not.
    trust = tmp_path / "trust.txt"
    trust.write_text(two_chains.signer.verifier_key() + "\n")
    origin = checkpoint_origin(ARCHIVE, two_chains.chain_id)
    fork = tmp_path / "fork.note"
    fork.write_bytes(sign_note(Checkpoint(origin, 15, bytes(32)).body(), [two_chains.signer]))
    newest = text_of(newest_note(two_chains))
    forked_head = dataclasses.replace(
        newest,
        chains=tuple(
            ChainHead(c.chain_id, c.size, bytes(32)) if c.chain_id == OTHER else c
            for c in newest.chains
        ),
    )
    head_fork = tmp_path / "head-fork.note"
    head_fork.write_bytes(sign_head(forked_head, [two_chains.signer]))
    root = tmp_path / "bucket"
    _copy_bucket(two_chains.store, root)
    assert _independent(root, trust).returncode == 0
    run = _independent(root, trust, fork, head_fork)
    assert run.returncode == 1
    assert "the tree at size 15 differs from the pinned checkpoint (fork)" in run.stdout
    assert "archive head 2 differs from the pinned one (fork)" in run.stdout
    assert f"chain {OTHER}: the tree at size 6 differs from the pinned head (fork)" in run.stdout


def test_the_independent_verifier_prints_fail_for_a_missing_segment(
    two_chains: Built, admin: StorageAdmin, tmp_path: Path
) -> None:
    trust = tmp_path / "trust.txt"
    trust.write_text(two_chains.signer.verifier_key() + "\n")
    first = two_chains.manifests[0]
    admin.delete(first.segment.key)
    root = tmp_path / "bucket"
    _copy_bucket(two_chains.store, root)
    run = _independent(root, trust)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert f"FAIL chain {two_chains.chain_id} {0:020d}.json: {first.segment.key} is missing" in (
        run.stdout
    )


def test_the_independent_verifier_catches_a_vanished_chain(
    two_chains: Built, admin: StorageAdmin, tmp_path: Path
) -> None:
    trust = tmp_path / "trust.txt"
    trust.write_text(two_chains.signer.verifier_key() + "\n")
    admin.delete_chain(OTHER)
    root = tmp_path / "bucket"
    _copy_bucket(two_chains.store, root)
    run = _independent(root, trust)
    assert run.returncode == 1
    assert f"chain {OTHER} vanished: head 2 lists it with 6 records" in run.stdout


VECTORS = Path(__file__).parents[2] / "schemas" / "vectors"
VECTOR_FAILURES = {
    "broken_link": "archive head 1 does not link to head 0",
    "chain_dropped": "archive head 1 drops a chain head 0 listed",
    "chain_shortened": "archive head 1 shortens the chain from 4 to 3",
    "forked_root": "archive head 1 states another root for size 4",
    "untrusted_key": "archive head does not verify",
}


@pytest.mark.parametrize("attack", sorted(VECTOR_FAILURES))
def test_every_archive_head_attack_vector_fails(attack: str) -> None:
    vectors = json.loads((VECTORS / "archive_head.json").read_text(encoding="utf-8"))
    trust = TrustStore.from_file(VECTORS / "TEST-ONLY.trust")
    (vector,) = [v for v in vectors["negative"] if v["attack"] == attack]
    store = MemoryStore()
    store.put(head_key(0), vectors["heads"][0]["note"].encode())
    store.put(head_key(1), vector["note"].encode())
    report = Report()
    check_archive_heads(store, trust, report, archive_name="archive.example.com")
    assert any(VECTOR_FAILURES[attack] in f.message for f in report.failures), report.failures


def test_the_archive_head_vectors_link_and_verify() -> None:
    vectors = json.loads((VECTORS / "archive_head.json").read_text(encoding="utf-8"))
    trust = TrustStore.from_file(VECTORS / "TEST-ONLY.trust")
    store = MemoryStore()
    for head in vectors["heads"]:
        store.put(head_key(head["seq"]), head["note"].encode())
    report = Report()
    summary = check_archive_heads(store, trust, report, archive_name="archive.example.com")
    # Only the chains themselves are absent from this store: no link or signature failure.
    assert summary is not None and summary.heads == 2
    assert all("vanished" in f.message for f in report.failures)
