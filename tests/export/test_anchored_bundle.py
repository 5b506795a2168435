"""A bundle of an anchored archive carries its head, timestamps and cosignatures, checked offline.

After export, the TSA and the witnesses are stopped: verify-bundle needs nothing but the bundle,
the archive's trust file, the TSA roots and the witness keys.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from export._evidence import CHAIN_A, CHAIN_B, Evidence, alice_bundle, build_evidence, reseal

from coexarchive.anchor.tsa import Tsa, load_tsa_file
from coexarchive.anchor.witness import Witness, WitnessPolicy, heads_origin
from coexarchive.anchor.witness_server import WitnessServer, WitnessState
from coexarchive.archive_head import write_head_after
from coexarchive.export.verify_bundle import BundleVerificationError, verify_bundle
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store import MemoryStore
from coexarchive.testing.tsa import LocalTsa
from support.archive import ARCHIVE

Anchored = tuple[dict[str, bytes], list[Tsa], WitnessPolicy, Evidence]
W1 = Ed25519Signer.from_seed("auditor.example/w1", bytes([1]) * 32)
W2 = Ed25519Signer.from_seed("unit.example/w2", bytes([2]) * 32)


@pytest.fixture(scope="module")
def anchored(
    tmp_path_factory: pytest.TempPathFactory,
) -> Anchored:
    directory = tmp_path_factory.mktemp("anchors")
    evidence = build_evidence(MemoryStore())
    store = evidence.store
    servers = []
    for key in (W1, W2):
        logs = {heads_origin(ARCHIVE): TrustStore([evidence.key.verifier()])}
        server = WitnessServer(key, logs, WitnessState(directory / key.name.replace("/", "_")))
        server.start()
        servers.append(server)
    policy = WitnessPolicy(tuple(Witness(s.key, s.url) for s in servers), 2)
    with LocalTsa(directory / "tsa") as tsa:
        tsa.start()
        tsas = load_tsa_file(tsa.write_tsa_file(directory / "tsa.txt"))
        latest = []
        for chain in (CHAIN_A, CHAIN_B):
            key = list_manifests(store, chain)[-1]
            latest.append(Manifest.from_bytes(store.get(key), key=key))
        write_head_after(
            store,
            latest,
            signer=evidence.key,
            archive_name=ARCHIVE,
            tsas=tsas,
            witnesses=policy.witnesses,
        )
        files = alice_bundle(evidence).files
    for server in servers:
        server.stop()
    return files, tsas, policy, evidence


def test_the_bundle_carries_head_tokens_tsa_chain_and_cosignatures(anchored: Anchored) -> None:
    files, _, _, _ = anchored
    description = orjson.loads(files["BUNDLE.json"])
    assert description["anchors"]["head_seq"] == 0
    assert description["anchors"]["timestamps"] == ["local-tsa"]
    assert len(description["anchors"]["cosignatures"]) == 2
    assert b"BEGIN CERTIFICATE" in files["anchors/tsa/local-tsa.pem"]
    for path in ("anchors/head.note", "anchors/timestamps/local-tsa.tsr"):
        assert path in files["MANIFEST"].decode()


def test_verify_bundle_checks_them_offline(anchored: Anchored) -> None:
    files, tsas, policy, evidence = anchored
    report = verify_bundle(files, trust=evidence.trust, tsas=tsas, witnesses=policy)
    assert report.result == "OK"
    assert report.anchors is not None
    assert report.anchors["head"] == 0
    assert set(report.anchors["timestamps"]) == {"local-tsa"}
    assert report.anchors["witnesses"] == ["auditor.example/w1", "unit.example/w2"]


def test_without_roots_or_policy_anchors_are_reported_unchecked(anchored: Anchored) -> None:
    files, _, _, evidence = anchored
    report = verify_bundle(files, trust=evidence.trust)
    assert any("not checked: no roots for local-tsa" in w for w in report.warnings)
    assert any("cosignatures not checked" in w for w in report.warnings)


def test_a_swapped_token_is_named(anchored: Anchored, tmp_path: Path) -> None:
    files, tsas, policy, evidence = anchored
    forged = dict(files)
    with LocalTsa(tmp_path / "tsa") as tsa:  # a genuine token, but over another note
        forged["anchors/timestamps/local-tsa.tsr"] = tsa.reply(_query(b"another note\n"))
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(reseal(forged), trust=evidence.trust, tsas=tsas, witnesses=policy)
    messages = [f.message for f in caught.value.report.failures]
    assert any(
        "does not verify against its configured roots" in m or "over another note" in m
        for m in messages
    ), messages


def test_a_quorum_the_bundle_does_not_meet_fails(anchored: Anchored) -> None:
    files, tsas, policy, evidence = anchored
    forged = dict(files)
    description = orjson.loads(forged["BUNDLE.json"])
    dropped = description["anchors"]["cosignatures"].pop()
    del forged[f"anchors/cosignatures/{dropped}.note"]
    forged["BUNDLE.json"] = orjson.dumps(description)
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(reseal(forged), trust=evidence.trust, tsas=tsas, witnesses=policy)
    assert any(
        "cosigned by 1 of the policy's witnesses; the policy asks for 2" in f.message
        for f in caught.value.report.failures
    )


def test_a_head_with_another_root_is_a_fork(anchored: Anchored) -> None:
    files, tsas, policy, evidence = anchored
    forged = dict(files)
    description = orjson.loads(forged["BUNDLE.json"])
    description["chains"][0]["root_hash"] = "A" * 43 + "="
    forged["BUNDLE.json"] = orjson.dumps(description)
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(reseal(forged), trust=evidence.trust, tsas=tsas, witnesses=policy)
    assert any("(fork)" in f.message for f in caught.value.report.failures)


def _query(message: bytes) -> bytes:
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    builder = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
    return builder.build().as_bytes()
