"""Legal holds on the embedded S3: held objects outlive their retention; the register is sealed."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from export._evidence import ALICE, BOB, CHAIN_A, CHAIN_B, build_evidence

from coexarchive.errors import ConfigError, FormatError
from coexarchive.export.holds import HOLDS_CHAIN, HoldRegister, HoldScope, held_keys, read_register
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.segments import ChainWriter, Manifest, list_manifests
from coexarchive.store import MemoryStore, S3Store
from coexarchive.verify import ArchiveVerificationError, verify_archive
from support.archive import (
    ARCHIVE,
    DAY_MS,
    START_MS,
    make_records,
    midday,
    short_policy,
    signer,
    trust_for,
)

NOW = START_MS + 30 * DAY_MS
CHAIN = "900000000000009"
HELD = "447700900000"


def register_for(evidence) -> HoldRegister:  # type: ignore[no-untyped-def]
    return HoldRegister(
        evidence.store, signer=evidence.key, archive_name=ARCHIVE, policy=short_policy()
    )


def segment_keys(store, chain: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    out = []
    for key in list_manifests(store, chain):
        m = Manifest.from_bytes(store.get(key))
        out.append([m.segment.key, m.record_index.key, m.key, m.checkpoint_key])
    return out


@pytest.mark.integration
def test_held_objects_survive_retention_expiry_and_refuse_deletion(s3_store: S3Store) -> None:
    # Records captured a year ago, kept one year: their retention ends a few seconds from now.
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    captured = int(expires.replace(year=expires.year - 1).timestamp() * 1000)
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    store = s3_store
    records = [
        replace(r, received_time=captured)
        for r in make_records(CHAIN, 6, start_ms=midday(captured - 9_000_000))
    ]
    key = signer()
    writer = ChainWriter(store, CHAIN, signer=key, archive_name=ARCHIVE, policy=policy)
    writer.append([r for r in records if r.customer_id == HELD])
    writer.append([r for r in records if r.customer_id != HELD])
    held_segment, free_segment = segment_keys(store, CHAIN)
    register = HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy())
    outcome = register.place("M-1", HoldScope(customer=HELD), who="dana@legal", now_ms=NOW)
    assert sorted(outcome.keys) == sorted(held_segment)
    assert all(store.info(k).legal_hold for k in held_segment)
    assert not any(store.info(k).legal_hold for k in free_segment)
    assert held_keys(store, trust=trust_for(key)) == set(held_segment)
    verify_archive(
        store, trust_for(key), chains=[CHAIN], held_keys=held_keys(store, trust=trust_for(key))
    )

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.5)
    client = store.client
    for object_key in held_segment:
        version = store.info(object_key).version_id
        with pytest.raises(ClientError):
            client.delete_object(Bucket=store.bucket, Key=object_key, VersionId=version)
        with pytest.raises(ClientError):
            client.delete_object(
                Bucket=store.bucket,
                Key=object_key,
                VersionId=version,
                BypassGovernanceRetention=True,
            )
        assert store.exists(object_key)
    # The unheld segment's retention has expired too: it can go, which shows the test bites.
    free = free_segment[0]
    client.delete_object(Bucket=store.bucket, Key=free, VersionId=store.info(free).version_id)
    assert not store.exists(free)

    register.release("M-1", who="dana@legal", now_ms=NOW + 1, reason="matter closed")
    assert held_keys(store, trust=trust_for(key)) == set()
    target = held_segment[0]
    client.delete_object(Bucket=store.bucket, Key=target, VersionId=store.info(target).version_id)
    assert not store.exists(target)


@pytest.mark.integration
def test_hold_on_s3_by_customer_covers_every_chain_and_every_object(s3_store: S3Store) -> None:
    evidence = build_evidence(s3_store)
    register = register_for(evidence)
    outcome = register.place("M-2", HoldScope(customer=ALICE), who="dana@legal", now_ms=NOW)
    # Alice wrote on days 0 and 1 of chain A (day 2 holds only Bob) and on day 0 of chain B.
    days = segment_keys(s3_store, CHAIN_A)[:2] + segment_keys(s3_store, CHAIN_B)
    expected = {k for seg in days for k in seg}
    assert set(outcome.keys) == expected
    assert {k for k in expected if s3_store.info(k).legal_hold} == expected


def test_hold_by_chain_and_window_holds_only_matching_segments() -> None:
    evidence = build_evidence(MemoryStore())
    register = register_for(evidence)
    day1 = HoldScope(chain=CHAIN_A, since=START_MS + DAY_MS, until=START_MS + 2 * DAY_MS)
    outcome = register.place("M-3", day1, who="dana@legal", now_ms=NOW)
    assert set(outcome.keys) == set(segment_keys(evidence.store, CHAIN_A)[1])
    assert outcome.sealed is not None and outcome.sealed.chain_id == HOLDS_CHAIN


def test_repeated_placement_seals_nothing_new_but_new_segments_get_held() -> None:
    evidence = build_evidence(MemoryStore())
    register = register_for(evidence)
    scope = HoldScope(customer=BOB)
    first = register.place("M-4", scope, who="dana@legal", now_ms=NOW)
    again = register.place("M-4", scope, who="dana@legal", now_ms=NOW + 1)
    assert first.sealed is not None and again.sealed is None and again.keys == ()
    from export._evidence import customer

    ChainWriter(
        evidence.store, CHAIN_A, signer=evidence.key, archive_name=ARCHIVE, policy=short_policy()
    ).append([customer(CHAIN_A, 50, 6, 0, BOB, "later")])
    later = register.place("M-4", scope, who="dana@legal", now_ms=NOW + 2)
    assert set(later.keys) == set(segment_keys(evidence.store, CHAIN_A)[-1])
    assert len(read_register(evidence.store, evidence.trust)) == 2


def test_release_keeps_objects_held_by_another_matter() -> None:
    evidence = build_evidence(MemoryStore())
    register = register_for(evidence)
    register.place("M-5", HoldScope(customer=ALICE), who="a", now_ms=NOW)
    register.place("M-6", HoldScope(customer=BOB), who="b", now_ms=NOW + 1)
    shared = set(register.holds()[0].keys) & set(register.holds()[1].keys)
    assert shared
    outcome = register.release("M-5", who="a", now_ms=NOW + 2)
    assert set(outcome.kept) == shared
    assert all(evidence.store.info(k).legal_hold for k in shared)
    assert not any(evidence.store.info(k).legal_hold for k in outcome.keys)
    states = {h.matter: h.active for h in register.holds()}
    assert states == {"M-5": False, "M-6": True}
    with pytest.raises(ConfigError, match="no active legal hold"):
        register.release("M-5", who="a", now_ms=NOW + 3)


def test_bad_scopes_and_matters_are_refused() -> None:
    with pytest.raises(ConfigError):
        HoldScope()
    with pytest.raises(ConfigError):
        HoldScope(customer=ALICE, chain=CHAIN_A)
    with pytest.raises(ConfigError):
        HoldScope(chain=CHAIN_A, since=5, until=5)
    register = register_for(build_evidence(MemoryStore()))
    with pytest.raises(ConfigError):
        register.place(" ", HoldScope(customer=ALICE), who="a", now_ms=NOW)
    with pytest.raises(ConfigError):
        register.release("never-held", who="a", now_ms=NOW)


def test_verify_names_a_registered_hold_that_was_lifted_behind_the_register() -> None:
    evidence = build_evidence(MemoryStore())
    register = register_for(evidence)
    outcome = register.place("M-7", HoldScope(customer=BOB), who="a", now_ms=NOW)
    lifted = outcome.keys[0]
    evidence.store.set_legal_hold(lifted, False)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(
            evidence.store,
            evidence.trust,
            held_keys=held_keys(evidence.store, trust=evidence.trust),
        )
    assert [(f.step, f.key) for f in caught.value.report.failures] == [("retention", lifted)]


def test_tampered_register_is_refused() -> None:
    evidence = build_evidence(MemoryStore())
    register_for(evidence).place("M-8", HoldScope(customer=BOB), who="a", now_ms=NOW)
    store = evidence.store
    manifest = Manifest.from_bytes(store.get(list_manifests(store, HOLDS_CHAIN)[0]))
    data = store.unsafe_objects[manifest.segment.key]  # type: ignore[attr-defined]
    store.unsafe_objects[manifest.segment.key] = data[:-9] + b"x" + data[-8:]  # type: ignore[attr-defined]
    with pytest.raises(FormatError, match="altered"):
        held_keys(store, trust=evidence.trust)
