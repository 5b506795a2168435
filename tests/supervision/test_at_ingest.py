"""Hits at ingest: messages are scanned as they are sealed, with the active sealed policies read
from a ``policies`` chain that verified against the trust file; the hits sit in the message's own
chain (ingest key), are the same hits a rescan finds (same ids, decided once), and a policy chain
that cannot be verified gives no scan and a sealed, reported gap (never silence)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.enrich import collect_side_events
from coexarchive.errors import ConfigError, FormatError
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind, Record
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import Manifest, ObjectRef, list_manifests, parquet_bytes, read_segment
from coexarchive.store import MemoryStore
from coexarchive.store.base import sha256_hex
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.at_ingest import ActivePolicies, load_active_policies, scan_batch
from coexarchive.supervision.library import import_policy
from coexarchive.supervision.policy import load_policy
from coexarchive.supervision.register import POLICIES_CHAIN, REVIEWS_CHAIN, Sealer, read_chain
from coexarchive.supervision.scan import ingest_rows, rescan
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.verify import ArchiveVerificationError, verify_archive
from pipelines.ingest import normalize_object
from pipelines.seal_step import seal_chain
from pipelines.specs import SealSpec
from support.archive import ARCHIVE, SIM_AUTH, short_policy, signer, trust_for

SAMPLE = Path(__file__).parents[2] / "schemas" / "samples" / "policy-sample.yaml"
NOW = 1_768_000_000_000
INGEST = signer()
AUDIT = signer("coexarchive.audit", seed=b"audit")
STRANGER = signer("coexarchive.audit", seed=b"stranger")
TRUST = trust_for(INGEST, AUDIT)
CHAIN = "900000000000001"
CONFIG = SimulationConfig(seed=7, customers=12, days=3)


def _batches() -> dict[str, list[Record]]:
    by_chain: dict[str, list[Record]] = defaultdict(list)
    for key, data in simulate(CONFIG).objects:
        chains, _bad = normalize_object(key, data, auth=SIM_AUTH)
        for chain_id, records in chains.items():
            by_chain[chain_id].extend(records)
    return by_chain


BATCHES = _batches()


def ingest(
    store: MemoryStore, trust: TrustStore = TRUST, head_trust: TrustStore = TRUST
) -> list[dict[str, object]]:
    """What the ingest job's sealing step does: load the active policies once, seal each chain."""
    active = load_active_policies(store, trust, archive_name=ARCHIVE)
    side = collect_side_events([r for records in BATCHES.values() for r in records])
    summaries = [
        seal_chain(
            store,
            chain_id,
            BATCHES[chain_id],
            signer=INGEST,
            spec=SealSpec("unused", ARCHIVE),
            policy=short_policy(),
            side_events=side,
            supervision=active,
        )
        for chain_id in sorted(BATCHES)
    ]
    manifests = [s["manifest"] for s in summaries if s.get("manifest") is not None]
    write_head_after(store, manifests, signer=INGEST, archive_name=ARCHIVE, trust=head_trust)
    return summaries


def sealer(store: MemoryStore, key: Ed25519Signer = AUDIT) -> Sealer:
    # The writer trusts its own key; whether ingest trusts it is the ingest trust file's say.
    return Sealer(store, signer=key, archive_name=ARCHIVE, trust=trust_for(INGEST, *{AUDIT, key}))


def with_policy(key: Ed25519Signer = AUDIT) -> MemoryStore:
    store = MemoryStore()
    import_policy(sealer(store, key), load_policy(SAMPLE), who="cco", now_ms=NOW)
    return store


def chain_records(store: MemoryStore, chain_id: str = CHAIN) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for key in list_manifests(store, chain_id):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        rows += read_segment(store.get(manifest.segment.key)).to_pylist()
    return rows


@pytest.fixture(scope="module")
def scanned_store() -> MemoryStore:
    store = with_policy()
    summaries = ingest(store)
    assert all(s["supervision_gap"] is None for s in summaries)
    return store


@pytest.fixture
def store(scanned_store: MemoryStore) -> MemoryStore:
    copy = MemoryStore()
    copy.unsafe_objects = dict(scanned_store.unsafe_objects)
    copy._retention = dict(scanned_store._retention)
    return copy


def test_ingest_seals_hits_in_the_message_chain_with_the_ingest_key(store: MemoryStore) -> None:
    rows = chain_records(store)
    hits = [r for r in rows if r["kind"] == Kind.HIT]
    details = [orjson.loads(str(h["detail"])) for h in hits]
    assert {d["rule"] for d in details} >= {
        "exchanges-pt",
        "cancellations-ar",
        "refunds-hi",
        "marketing-consent",
        "random-5pc",
    }
    assert {d["found_by"] for d in details} == {"ingest"}
    # Echoes, Cloud API sends and history are scanned too; document names are read.
    assert {"message", "echo", "outbound", "history_message"} <= {
        d["message_kind"] for d in details
    }
    assert any(s["field"] == "filename" for d in details for s in d["spans"])
    # Each hit names a message sealed in the same chain.
    messages = {r["record_id"] for r in rows}
    assert all(h["ref_record_id"] in messages for h in hits)
    scans = [r for r in rows if r["kind"] == Kind.REVIEW and r["status"] == "scan"]
    assert scans and orjson.loads(str(scans[0]["detail"]))["policies"]["conduct-sample@1"]
    # The chain verifies with the ingest key: the reviews chain was never written by ingest.
    verify_archive(store, TRUST, chains=[CHAIN], archive_name=ARCHIVE)
    assert list_manifests(store, REVIEWS_CHAIN) == []


def test_a_rescan_finds_the_same_hits_and_seals_none_again(store: MemoryStore) -> None:
    at_ingest = {f.row.record_id for f in ingest_rows(ArchiveCatalog(store)) if f.row.kind == "hit"}
    policy = import_policy(sealer(store), load_policy(SAMPLE), who="cco", now_ms=NOW).policy
    outcome = rescan(ArchiveCatalog(store), sealer(store), policy, who="cco", now_ms=NOW)
    found = {hit.record_id for hit in outcome.found}
    assert found == at_ingest
    assert outcome.sealed == []


def test_the_queue_holds_ingest_hits_and_a_hit_is_decided_once(store: MemoryStore) -> None:
    found = ingest_rows(ArchiveCatalog(store))
    queue = review_queue.fold(read_chain(store, REVIEWS_CHAIN), found)
    hits = review_queue.select(queue, now_ms=NOW)
    assert hits and {h.sealed_in for h in hits} <= set(BATCHES)
    first = hits[0]
    review_queue.act(
        sealer(store),
        first.id,
        "decide",
        who="ana",
        now_ms=NOW,
        disposition="escalate",
        note="n",
        at_ingest=found,
    )
    with pytest.raises(ConfigError, match="already decided"):
        review_queue.act(
            sealer(store),
            first.id,
            "decide",
            who="bo",
            now_ms=NOW + 1,
            disposition="closed",
            note="n",
            at_ingest=found,
        )
    # A rescan afterwards puts no second, open copy of the decided hit in the queue.
    policy = import_policy(sealer(store), load_policy(SAMPLE), who="cco", now_ms=NOW).policy
    rescan(ArchiveCatalog(store), sealer(store), policy, who="cco", now_ms=NOW + 2)
    queue = review_queue.fold(read_chain(store, REVIEWS_CHAIN), ingest_rows(ArchiveCatalog(store)))
    assert queue.find(first.id).disposition == "escalate"
    assert len(review_queue.select(queue, state="all", now_ms=NOW)) == len(hits)
    coverage = review_queue.report("sample-coverage", queue, now_ms=NOW)
    assert all(row["scanned_at_ingest"] > 0 for row in coverage)


def test_without_a_policies_chain_ingest_adds_nothing() -> None:
    store = MemoryStore()
    summaries = ingest(store)
    assert all(s["supervision_gap"] is None for s in summaries)
    kinds = {r["kind"] for chain in BATCHES for r in chain_records(store, chain)}
    assert not kinds & {Kind.HIT.value, Kind.REVIEW.value}


def _gap_rows(store: MemoryStore) -> list[dict[str, object]]:
    rows = [r for chain in BATCHES for r in chain_records(store, chain)]
    assert not [r for r in rows if r["kind"] == Kind.HIT]
    return [r for r in rows if r["kind"] == Kind.REVIEW]


def test_a_policy_signed_by_an_untrusted_key_is_not_used_and_the_gap_is_sealed() -> None:
    store = with_policy(STRANGER)
    # (The archive head the stranger signed is another alarm; this test is about the scan.)
    summaries = ingest(store, head_trust=trust_for(INGEST, AUDIT, STRANGER))
    gaps = [str(s["supervision_gap"]) for s in summaries if s["supervision_gap"]]
    assert gaps and all("policies chain does not verify" in gap for gap in gaps)
    sealed = _gap_rows(store)
    assert sealed and {r["status"] for r in sealed} == {"scan_gap"}
    detail = orjson.loads(str(sealed[0]["detail"]))
    assert detail["unscanned"] > 0 and "checkpoint" in detail["reason"]
    queue = review_queue.fold([], ingest_rows(ArchiveCatalog(store)))
    report = review_queue.report("gaps", queue, now_ms=NOW)
    assert len(report) == len(sealed) and sum(int(r["unscanned"]) for r in report) == sum(
        orjson.loads(str(r["detail"]))["unscanned"] for r in sealed
    )


def test_a_policy_whose_segment_was_rewritten_is_not_used() -> None:
    """Someone with write access swaps the sealed policy for a harmless one (same manifest)."""
    store = with_policy()
    key = list_manifests(store, POLICIES_CHAIN)[0]
    manifest = Manifest.from_bytes(store.get(key), key=key)
    table = read_segment(store.get(manifest.segment.key))
    forged = table.set_column(
        table.schema.get_field_index("detail"), "detail", pa.array(['{"v":1}'], pa.string())
    )
    data = parquet_bytes(forged)
    store.unsafe_objects[manifest.segment.key] = data
    fixed = replace(manifest, segment=ObjectRef(manifest.segment.key, sha256_hex(data), len(data)))
    store.unsafe_objects[key] = fixed.to_bytes()
    active = load_active_policies(store, TRUST, archive_name=ARCHIVE)
    assert active.policies == () and active.gap is not None
    assert "does not verify" in active.gap
    assert _gap_rows_after(store)


def _gap_rows_after(store: MemoryStore) -> bool:
    ingest(store)
    return all(r["status"] == "scan_gap" for r in _gap_rows(store))


def test_a_policy_appended_past_the_signed_checkpoint_is_not_used() -> None:
    """An unsigned policy segment appended after the last checkpoint: the verified size ends
    before it, and the chain fails as an unsigned tail."""
    store = with_policy()
    key = list_manifests(store, POLICIES_CHAIN)[0]
    del store.unsafe_objects[Manifest.from_bytes(store.get(key), key=key).checkpoint_key]
    active = load_active_policies(store, TRUST, archive_name=ARCHIVE)
    assert active.policies == () and active.gap is not None


def test_scan_batch_with_a_gap_names_it_and_scans_nothing() -> None:
    records = BATCHES[CHAIN]
    outcome = scan_batch(CHAIN, records, ActivePolicies(gap="because"))
    assert outcome.hits == 0 and outcome.gap == "because"
    assert [r.status for r in outcome.records] == ["scan_gap"]
    assert outcome.unscanned == sum(
        r.kind in ("message", "echo", "outbound", "history_message", "message_edit")
        for r in records
    )
    # Only statuses and such: nothing to scan, nothing to record.
    statuses = [r for r in records if r.kind == Kind.STATUS]
    assert scan_batch(CHAIN, statuses, ActivePolicies(gap="because")).records == []


def test_a_tampered_ingest_hit_is_refused_by_the_queue_and_by_verify(store: MemoryStore) -> None:
    for key in list_manifests(store, CHAIN):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        if manifest.kinds.get(Kind.HIT.value):
            break
    table = read_segment(store.get(manifest.segment.key))
    details = table.column("detail").to_pylist()
    kinds = table.column("kind").to_pylist()
    forged_details = [
        d.replace('"rule_type":"lexicon"', '"rule_type":"sample"') if k == "hit" else d
        for d, k in zip(details, kinds, strict=True)
    ]
    assert forged_details != details
    forged = table.set_column(
        table.schema.get_field_index("detail"), "detail", pa.array(forged_details, pa.string())
    )
    data = parquet_bytes(forged)
    store.unsafe_objects[manifest.segment.key] = data
    fixed = replace(manifest, segment=ObjectRef(manifest.segment.key, sha256_hex(data), len(data)))
    store.unsafe_objects[manifest.key] = fixed.to_bytes()
    with pytest.raises(FormatError, match="does not match its seal"):
        ingest_rows(ArchiveCatalog(store))
    with pytest.raises(ArchiveVerificationError):
        verify_archive(store, TRUST, chains=[CHAIN], archive_name=ARCHIVE)


def test_the_console_works_the_same_queue_as_the_cli(store: MemoryStore, tmp_path: Path) -> None:
    """The console folds ingest hits too: a hit sealed at ingest is listed and decided there."""
    from coexarchive.console.archive import ConsoleArchive, Viewer

    console = ConsoleArchive(
        store,
        trust=TRUST,
        signer=AUDIT,
        archive_name=ARCHIVE,
        policy=short_policy(),
        index_dir=None,
        archive_identity=f"{ARCHIVE} test",
        export_dir=tmp_path / "exports",
        clock=lambda: NOW,
    )
    viewer = Viewer("rita", "local")
    listed = console.review_list(viewer, state="open", assignee=None)
    cli_queue = review_queue.fold(*review_queue.sources(store))
    assert [h.id for h in listed] == [h.id for h in review_queue.select(cli_queue, now_ms=NOW)]
    assert listed and {h.sealed_in for h in listed} <= set(BATCHES)
    console.review_act(viewer, listed[0].id, "decide", disposition="closed", note="ok")
    assert console.queue().find(listed[0].id).disposition == "closed"
    # Decided once, wherever it is worked: the CLI's queue sees the console's decision.
    with pytest.raises(ConfigError, match="already decided"):
        review_queue.act(
            sealer(store),
            listed[0].id,
            "decide",
            who="bo",
            now_ms=NOW + 1,
            disposition="escalate",
            note="n",
            at_ingest=review_queue.sources(store)[1],
        )
