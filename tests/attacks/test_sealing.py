"""Attacks on sealing: forged segments that continue a chain, forged intents, unsigned tails.

The attacker holds ordinary write access to the archive bucket: create-only puts that respect
Object Lock (an :class:`S3Store` on the real SeaweedFS server), the archive's public verifier key,
and coexarchive's own code to compute hashes, but no trusted signing key. Whatever they write, the
next ingest must not sign it, and ``verify`` must name it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.cli import main
from coexarchive.commands import upload_raw
from coexarchive.intents import parse_intent_key
from coexarchive.resume import UnsignedTailError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.checkpoint import open_checkpoint
from coexarchive.seal.keys import Ed25519Signer
from coexarchive.segments import ChainWriter, Manifest, SegmentResult, list_manifests
from coexarchive.store import layout
from coexarchive.store.s3 import S3Store
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.verify import ArchiveVerificationError, verify_archive
from support.archive import (
    ARCHIVE,
    Built,
    WithoutPuts,
    build,
    make_records,
    short_policy,
    signer,
    use_cli_environment,
)

pytestmark = pytest.mark.integration

ROGUE = signer("coexarchive.test", seed=b"rogue")  # the trusted key's name, another key


def forge_continuation(
    built: Built, *, intent_by: Ed25519Signer | None = None, day: int = 5
) -> Manifest:
    """Segment + record index + manifest continuing the chain by one record, never a checkpoint.

    With ``intent_by`` the forger also signs an intent with that (untrusted) key.
    """
    store: Any = built.store if intent_by else WithoutPuts(built.store, "intents/")  # type: ignore[arg-type]
    writer = ChainWriter(
        store,
        built.chain_id,
        signer=intent_by or ROGUE,
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=built.trust,  # the archive's verifier key is public
    )
    writer._commit = lambda manifest: None  # type: ignore[method-assign]  # no trusted key
    record = dataclasses.replace(make_records(built.chain_id, 1, day=day)[0], text="forged")
    return writer.append([record])[0].manifest


def genuine_writer(built: Built, store: Any = None) -> ChainWriter:
    return ChainWriter(
        store or built.store,
        built.chain_id,
        signer=built.signer,
        archive_name=ARCHIVE,
        policy=short_policy(),
    )


def commit_head(built: Built, results: list[SegmentResult]) -> None:
    """End the commit as ingest does: an archive head stating the chain's new size."""
    write_head_after(
        built.store, [r.manifest for r in results], signer=built.signer, archive_name=ARCHIVE
    )


def tail_failures(built: Built) -> list[Any]:
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(built.store, built.trust)
    return [f for f in caught.value.report.failures if f.step == "tail"]


def checkpoint_sizes(store: Any, chain_id: str) -> list[int]:
    return [layout.number_of(k) for k in store.list(layout.checkpoint_prefix(chain_id))]


@pytest.fixture
def built(s3_store: S3Store) -> Built:
    return build(s3_store, days=(0, 1), per_day=10)


@pytest.fixture
def cli(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Store:
    use_cli_environment(monkeypatch, seaweed, s3_store, signer(), tmp_path, auditor="attack-test")
    return s3_store


# --- the reported attack, end to end through the CLI --------------------------------------------


@pytest.mark.slow
def test_forged_segment_continuing_a_chain_is_not_signed(
    cli: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = RetentionPolicy.parse("GOVERNANCE:1")
    quiet = {"malformed_rate": 0.0, "duplicate_rate": 0.0, "include_history": False}
    first = simulate(SimulationConfig(seed=3, customers=2, days=1, **quiet))  # type: ignore[arg-type]
    upload_raw(cli, first.objects, policy=policy)
    assert main(["ingest"]) == 0
    chain = "900000000000001"
    sizes_before = checkpoint_sizes(cli, chain)
    built = Built(cli, signer(), _trust(), chain, [])

    forged = forge_continuation(built)

    # New traffic on another number arrives; the routine ingest runs.
    second = simulate(
        SimulationConfig(
            seed=4,
            customers=2,
            days=1,
            phone_number_id="900000000000002",
            receiver_id="simb",
            **quiet,  # type: ignore[arg-type]
        )
    )
    upload_raw(cli, second.objects, policy=policy)
    capsys.readouterr()
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert forged.key in err and "not signed" in err and "may be forged" in err
    assert "coexarchive verify" in err
    assert [line for line in err.splitlines() if "error" in line] == [err.strip()]
    # Nothing on the forged chain was signed; the other number's chain was sealed.
    assert checkpoint_sizes(cli, chain) == sizes_before
    assert not cli.exists(forged.checkpoint_key)
    other = list_manifests(cli, "900000000000002")
    assert other
    last = Manifest.from_bytes(cli.get(other[-1]))
    assert open_checkpoint(cli.get(last.checkpoint_key), _trust()).size == last.tree_size

    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "[tail] unsigned tail" in out and forged.key in out and "may be forged" in out
    assert forged.segment.key in out and forged.record_index.key in out


def _trust() -> Any:
    from support.archive import trust_for

    return trust_for(signer())


# --- forged or misused intents --------------------------------------------------------------------


def test_forged_intent_signed_by_an_untrusted_key_is_not_trusted(built: Built) -> None:
    forged = forge_continuation(built, intent_by=ROGUE)
    assert built.store.exists(forged.intent_key)
    with pytest.raises(UnsignedTailError, match="does not verify") as caught:
        genuine_writer(built).append(make_records(built.chain_id, 3, day=6))
    assert forged.key in str(caught.value)
    assert not built.store.exists(forged.checkpoint_key)
    failures = tail_failures(built)
    manifest_failure = next(f for f in failures if f.key == forged.key)
    assert "intent does not verify" in manifest_failure.message


def test_genuine_intent_replayed_for_other_manifest_bytes_is_not_trusted(built: Built) -> None:
    # The writer crashes after signing its intent, before its manifest.
    crashing = genuine_writer(built, WithoutPuts(built.store, "manifests/", crash=True))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="crash"):
        crashing.append(make_records(built.chain_id, 4, day=5))
    (genuine_intent,) = [
        k for k in built.store.list("intents/") if (parse_intent_key(k) or (0, ""))[0] == 20
    ]
    # The attacker writes their own manifest there and files the genuine intent under its digest.
    forged = forge_continuation(built)
    built.store.put(forged.intent_key, built.store.get(genuine_intent))
    with pytest.raises(UnsignedTailError, match="names other manifest bytes"):
        genuine_writer(built).state()
    assert not built.store.exists(forged.checkpoint_key)
    assert any("names other manifest bytes" in f.message for f in tail_failures(built))


def test_forged_checkpoint_signed_by_an_untrusted_key_is_not_a_commit(built: Built) -> None:
    rogue_writer = ChainWriter(
        built.store,
        built.chain_id,
        signer=ROGUE,
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=built.trust,
    )
    forged = rogue_writer.append(make_records(built.chain_id, 2, day=5))[0].manifest
    assert built.store.exists(forged.checkpoint_key)
    with pytest.raises(UnsignedTailError, match="checkpoint does not verify"):
        genuine_writer(built).append(make_records(built.chain_id, 3, day=6))
    assert checkpoint_sizes(built.store, built.chain_id) == [10, 20, 22]
    assert forged.key in {f.key for f in tail_failures(built)}


def test_forged_segment_without_a_manifest_is_an_unsigned_tail(built: Built) -> None:
    forged = forge_continuation(built)
    # Only the segment is left visible: the manifest is hidden by a delete marker.
    built.store.client.delete_object(Bucket=built.store.bucket, Key=forged.key)  # type: ignore[attr-defined]
    keys = {f.key for f in tail_failures(built)}
    assert {forged.segment.key, forged.record_index.key} <= keys


def test_forged_chain_with_no_checkpoint_at_all_fails_verify(s3_store: S3Store) -> None:
    built = build(s3_store, days=(0,), per_day=3)
    stranger = Built(s3_store, built.signer, built.trust, "900000000000777", [])
    forged = forge_continuation(stranger, intent_by=ROGUE)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(s3_store, built.trust)
    failures = [f for f in caught.value.report.failures if f.chain_id == stranger.chain_id]
    assert forged.key in {f.key for f in failures if f.step == "tail"}
    assert any("nothing was verified" in f.message for f in failures)


def test_unexpected_object_among_a_chains_intents_fails_verify(built: Built) -> None:
    key = f"intents/chain={built.chain_id}/not-an-intent"
    built.store.put(key, b"x", retention=built.manifests[0].retention)
    assert key in {f.key for f in tail_failures(built)}


# --- verify fails closed -------------------------------------------------------------------------


def test_verify_on_an_empty_bucket_verifies_nothing_and_fails(
    cli: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "nothing to verify" in out and "OK" not in out


def test_verify_on_a_bucket_with_only_raw_objects_fails(
    cli: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate(SimulationConfig(seed=9, customers=1, days=1))
    upload_raw(cli, sim.objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    assert main(["verify", "--json"]) == 1
    out = capsys.readouterr().out
    assert '"ok": false' in out and "nothing was verified" in out


def test_verify_on_a_bucket_without_object_lock_is_refused(
    cli: S3Store, seaweed: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = f"plain-{cli.bucket}"[:63]
    cli.client.create_bucket(Bucket=plain)
    sealed = build(cli, days=(0,), per_day=3).store
    for key in sealed.list(""):  # a copy of a sealed archive where nothing is locked
        cli.client.put_object(Bucket=plain, Key=key, Body=sealed.get(key))
    monkeypatch.setenv("COEXARCHIVE_BUCKET", plain)
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    (reason,) = [line for line in out.splitlines() if line.startswith("  - ")]
    assert "[retention]" in reason and "Object Lock" in reason and plain in reason
    assert "OK" not in out


def test_verify_of_a_chain_that_does_not_exist_fails(built: Built) -> None:
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(built.store, built.trust, chains=["900000000000999"])
    assert any("nothing was verified" in f.message for f in caught.value.report.failures)


# --- the genuine writer's crashes are recovered ---------------------------------------------------


def test_crash_between_manifest_and_checkpoint_is_recovered(built: Built) -> None:
    crashing = genuine_writer(built)
    crashing._commit = lambda manifest: None  # type: ignore[method-assign]  # crash before it
    pending = crashing.append(make_records(built.chain_id, 5, day=5))[0].manifest
    failures = tail_failures(built)
    assert any(f.key == pending.key and "trusted intent names it" in f.message for f in failures)
    resumed = genuine_writer(built)
    assert resumed.state().size == 25
    assert built.store.exists(pending.checkpoint_key)
    results = resumed.append(make_records(built.chain_id, 3, day=6))
    commit_head(built, results)
    report = verify_archive(built.store, built.trust)
    assert report.records_checked == 28 and report.chains[0].warnings == []


def test_crash_before_the_manifest_leaves_only_warnings_once_sealed_past(built: Built) -> None:
    crashing = genuine_writer(built, WithoutPuts(built.store, "manifests/", crash=True))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="crash"):
        crashing.append(make_records(built.chain_id, 4, day=5))
    # Until a later run seals past it, the leftover is an unsigned tail ...
    assert len(tail_failures(built)) == 3  # segment, record index, intent
    # ... afterwards, a warning: its seq range is sealed by a signed segment.
    commit_head(built, genuine_writer(built).append(make_records(built.chain_id, 6, day=6)))
    report = verify_archive(built.store, built.trust)
    assert len(report.chains[0].warnings) == 3
    assert all("unreferenced, never signed" in w for w in report.chains[0].warnings)
