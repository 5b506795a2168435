"""End to end on the real S3 server: simulated webhooks → ingest → media fetch → ingest.

Every attachment the simulation sends is stored once under its hash and sealed as a ``media``
record bound to its message, ids past Meta's 7 days are sealed as named gaps (the message itself
untouched), and ``verify`` still passes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive.commands import upload_raw
from coexarchive.media.fetch import FetchOptions, MediaFetcher, pending_refs
from coexarchive.media.graph import GraphClient, GraphConfig
from coexarchive.normalize._base import follow_up_record_id
from coexarchive.raw import DeliveryAuth
from coexarchive.retention import RetentionPolicy
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store.s3 import S3Store
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.testing.graph import serve_landing, simulation_end_ms
from coexarchive.verify import ArchiveVerificationError, chains_in, verify_archive
from pipelines.ingest import run_pipeline
from pipelines.verify import chains_job
from support.archive import signer, trust_for
from support.ingest_world import s3_ingest_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
CONFIG = SimulationConfig(seed=5, customers=4, days=2)
RECEIPT_SECRET = b"e2e-media-secret"
AUTH = DeliveryAuth((CONFIG.app_secret,), (CONFIG.app_secret,), media_secrets=(RECEIPT_SECRET,))


@pytest.fixture
def world(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    return s3_ingest_world(s3_store, seaweed, tmp_path, monkeypatch)


def ingest(world: dict[str, Any], keys: list[str]) -> Any:
    return run_pipeline(
        sorted(keys),
        world["spec"],
        world["seal"],
        PipelineOptions(["--runner=FnApiRunner"]),
        auth=AUTH,
    )


def rows(store: S3Store) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for chain in chains_in(store):
        for key in list_manifests(store, chain):
            manifest = Manifest.from_bytes(store.get(key))
            found += read_segment(store.get(manifest.segment.key)).to_pylist()
    return found


def fetch(store: S3Store, server: Any, clock: Any) -> Any:
    config = GraphConfig(base_url=server.base_url, token=server.token, version=server.version)
    fetcher = MediaFetcher(
        store, store, GraphClient(config), policy=POLICY, receipt_secret=RECEIPT_SECRET,
        options=FetchOptions(backoff_s=0.001), clock=clock,
    )  # fmt: skip
    return fetcher.run(pending_refs(store, store))


def test_attachments_are_fetched_stored_once_and_sealed_as_media_records(
    world: dict[str, Any],
) -> None:
    store: S3Store = world["store"]
    sim = simulate(CONFIG)
    upload_raw(store, sim.objects, policy=POLICY)
    ingest(world, [k for k, _ in sim.objects])
    before = rows(store)
    messages = {r["record_id"]: r for r in before if r["media_id"] and r["kind"] != "media"}
    assert len(messages) >= 5

    now = simulation_end_ms(int(CONFIG.start.timestamp() * 1000), CONFIG.days)
    server = serve_landing(sim.objects, clock=lambda: now)
    try:
        # Graph no longer knows one id: it must become a named gap, nothing else lost (the
        # fetch's own expiry rule, from the archive's capture time, is in test_fetch.py).
        expired = next(m for m in messages.values() if m["kind"] == "message")["media_id"]
        server._state.items[expired].created_ms = now - 8 * 86_400_000
        summary = fetch(store, server, lambda: now)
        assert summary.failed == {"not_found": 1}
        receipts = summary.receipt_objects
        sealed = ingest(world, receipts)
        assert sealed.quarantined == 0
        # A second pass finds nothing left to fetch, and a re-ingest seals nothing twice.
        assert pending_refs(store, store) == []
        assert ingest(world, receipts).sealed == 0
    finally:
        server.stop()

    after = rows(store)
    media = [r for r in after if r["kind"] == "media"]
    assert len(media) == len({(m["chain_id"], m["media_id"]) for m in messages.values()})
    assert {m["ref_record_id"] for m in media} == set(messages)
    gap = next(m for m in media if m["media_id"] == expired)
    assert gap["status"] == "failed" and gap["flags"] == ["media_gap"]
    assert orjson.loads(gap["detail"])["raw"]["cause"] == "not_found"
    # The message that lost its attachment is still there, unchanged.
    assert [r for r in after if r["record_id"] == gap["ref_record_id"]] == [
        r for r in before if r["record_id"] == gap["ref_record_id"]
    ]
    for record in media:
        if record["status"] != "stored":
            continue
        raw = orjson.loads(record["detail"])["raw"]
        data = store.get(raw["object_key"])
        assert hashlib.sha256(data).hexdigest() == raw["sha256"] and len(data) == raw["size"]
        assert store.info(raw["object_key"]).retention is not None
    # The history follow-up is sealed beside its placeholder (never rewritten) and fetched.
    (follow_up,) = [
        r
        for r in after
        if r["wamid"] and r["record_id"] == follow_up_record_id(r["chain_id"], r["wamid"])
    ]
    (placeholder,) = [r for r in after if r["record_id"] == follow_up["ref_record_id"]]
    assert placeholder["msg_type"] == "media_placeholder" and placeholder["media_id"] is None
    assert (follow_up["msg_type"], follow_up["text"]) == ("image", "Comprovante")
    (completed,) = [m for m in media if m["ref_record_id"] == follow_up["record_id"]]
    assert completed["status"] == "stored" and completed["wamid"] == placeholder["wamid"]
    report = verify_archive(store, trust_for(signer()))
    assert sum(chain.media_checked for chain in report.chains) == len(
        {orjson.loads(m["detail"])["raw"]["object_key"] for m in media if m["status"] == "stored"}
    )

    # A storage-level attacker puts new bytes on top of a locked attachment: verify names it.
    victim = orjson.loads(completed["detail"])["raw"]["object_key"]
    store.client.put_object(Bucket=store.bucket, Key=victim, Body=b"forged receipt photo")
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    assert {(f.step, f.key) for f in caught.value.report.failures} == {("media", victim)}
    # The verify job re-hashes attachments too, beside each chain's other steps.
    job = chains_job(world["spec"], trust_for(signer()), PipelineOptions(["--runner=FnApiRunner"]))
    with pytest.raises(ArchiveVerificationError) as by_job:
        verify_archive(store, trust_for(signer()), job=job)
    assert {(f.step, f.key) for f in by_job.value.report.failures} == {("media", victim)}
    assert os.environ.get("COEXARCHIVE_GRAPH_TOKEN") is None  # nothing leaked into the env


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_an_outbound_send_by_link_is_fetched_sealed_with_its_hash_and_verified(
    encrypted: bool, world: dict[str, Any], link_host: Any, tmp_path: Path
) -> None:
    """A captured send by ``link`` is found from its capture in ``raw/`` (in an encrypted
    archive the sealed send's detail is unreadable without keys), downloaded without the Graph
    token, stored once and sealed as a ``media`` record; a link that 404s is a named gap."""
    import dataclasses

    from coexarchive.datakeys import enable_personal_sealing
    from coexarchive.raw import Delivery, encode_landing, landing_key, signature_header
    from coexarchive.receive.capture import capture_body
    from coexarchive.seal.personal import ENVELOPE_PREFIX

    store: S3Store = world["store"]
    if encrypted:
        enable_personal_sealing(store, since=0, retention=None)
        world["seal"] = dataclasses.replace(world["seal"], data_keys_dir=str(tmp_path / "keys"))
    photo = b"\xff\xd8\xff\xe0 the menu we sent " * 200
    link_host.routes["/menu.jpg"] = (200, {"Content-Type": "image/jpeg"}, photo)
    chain, sent_at = "900000000000042", int(CONFIG.start.timestamp() * 1000)
    sends = [("wamid.LINK1", "/menu.jpg"), ("wamid.LINK2", "/menu.jpg"), ("wamid.GONE", "/gone")]
    deliveries = []
    for seq, (wamid, path) in enumerate(sends):
        request = {"messaging_product": "whatsapp", "to": "447700900123", "type": "image",
                   "image": {"link": link_host.url(path), "caption": "menu"}}  # fmt: skip
        response = {"contacts": [{"wa_id": "447700900123"}], "messages": [{"id": wamid}]}
        body = capture_body(chain, request, response, sent_at=sent_at + seq)
        headers = {"x-hub-signature-256": signature_header(CONFIG.app_secret, body)}
        deliveries.append(Delivery("rcv-1", seq, sent_at + seq, "outbound", headers, body))
    key = landing_key("rcv-1", 0, sent_at)
    upload_raw(store, [(key, encode_landing(deliveries))], policy=POLICY)
    ingest(world, [key])
    outbound = [r for r in rows(store) if r["kind"] == "outbound"]
    assert len(outbound) == 3 and all(r["media_id"] is None for r in outbound)
    assert all(r["detail"].startswith(ENVELOPE_PREFIX) == encrypted for r in outbound)

    # Before the fetch, each send by link is reported as an attachment not yet fetched.
    from coexarchive.query.access_log import AccessLog
    from coexarchive.query.reports import Params
    from coexarchive.query.session import AuditSession
    from support.archive import ARCHIVE, short_policy

    def audit() -> AuditSession:  # a fresh session reads the archive as it is now
        log = AccessLog(store, signer=signer(), archive_name=ARCHIVE, policy=short_policy())
        return AuditSession(store, access_log=log, who="auditor@example.com",
                            trust=trust_for(signer()), clock=lambda: sent_at + 10_000)  # fmt: skip

    gaps = audit().report("media-gaps", Params()).table.to_pylist()
    assert [(r["gap"], r["attachments"]) for r in gaps] == [("not_fetched", 3)]

    server = serve_landing([], clock=lambda: sent_at)
    try:
        summary = fetch(store, server, lambda: sent_at + 1000)
        assert summary.stored == 1 and summary.already_stored == 1
        assert summary.failed == {"not_found": 1}
        assert ingest(world, summary.receipt_objects).quarantined == 0
        assert pending_refs(store, store) == []  # nothing fetched or sealed twice
    finally:
        server.stop()
    for _path, headers in link_host.seen:
        assert "authorization" not in headers and server.token not in str(headers)

    media = {r["media_id"]: r for r in rows(store) if r["kind"] == "media"}
    assert set(media) == {f"link:{wamid}" for wamid, _ in sends}
    by_wamid = {r["wamid"]: r for r in outbound}
    digest = hashlib.sha256(photo).hexdigest()
    for wamid in ("wamid.LINK1", "wamid.LINK2"):
        record = media[f"link:{wamid}"]
        raw = orjson.loads(record["detail"])["raw"]
        assert (
            record["status"] == "stored" and record["ref_record_id"] == by_wamid[wamid]["record_id"]
        )
        assert (raw["sha256"], raw["size"]) == (digest, len(photo))
        assert link_host.base_url not in record["detail"]  # the URL is not sealed in the clear
    assert store.get(f"media/v1/sha256={digest}") == photo
    assert list(store.list("media/")) == [f"media/v1/sha256={digest}"]
    gone = media["link:wamid.GONE"]
    assert gone["status"] == "failed" and gone["flags"] == ["media_gap"]
    assert orjson.loads(gone["detail"])["raw"]["cause"] == "not_found"
    report = verify_archive(store, trust_for(signer()))
    assert sum(chain.media_checked for chain in report.chains) == 1
    # The media view binds each link fetch to its send (a send by link has no media id), and
    # the one link that 404'd is the only gap left.
    gaps = audit().report("media-gaps", Params()).table.to_pylist()
    assert [(r["gap"], r["cause"], r["attachments"]) for r in gaps] == [
        ("media_gap", "not_found", 1)
    ]
    view = audit().query("SELECT media_id, message_seq, message_kind FROM media").table.to_pylist()
    assert sorted((r["media_id"], r["message_kind"]) for r in view) == sorted(
        (f"link:{wamid}", "outbound") for wamid, _ in sends
    )
    assert all(r["message_seq"] is not None for r in view)
