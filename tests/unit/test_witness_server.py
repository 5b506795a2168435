"""``coexarchive witness serve`` answers add-checkpoint with the tlog-witness status codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coexarchive.anchor.witness import SIZE_CONTENT_TYPE, encode_request
from coexarchive.anchor.witness_server import WitnessServer, WitnessState, load_logs
from coexarchive.seal.checkpoint import Checkpoint, sign_note
from coexarchive.seal.cosignature import CosignerKey, cosignatures_of
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.seal.merkle import MerkleTree, leaf_hash

ORIGIN = "archive.example/coexarchive/v1/heads"
LOG = Ed25519Signer.from_seed("archive.example/key", bytes(32))
ROGUE = Ed25519Signer.from_seed("archive.example/key", bytes([1]) * 32)
WITNESS = Ed25519Signer.from_seed("auditor.example/w1", bytes([2]) * 32)
TREE = MerkleTree([leaf_hash(bytes([i])) for i in range(8)])
FORK = MerkleTree([leaf_hash(bytes([i + 100])) for i in range(8)])


def note(size: int, tree: MerkleTree = TREE, signer: Ed25519Signer = LOG) -> bytes:
    return sign_note(Checkpoint(ORIGIN, size, tree.root(size)).body(), [signer])


def request(old: int, size: int, tree: MerkleTree = TREE, **kw: Ed25519Signer) -> bytes:
    proof = tree.consistency_proof(old, size) if old else []
    return encode_request(old, proof, note(size, tree, **kw))


@pytest.fixture
def witness(tmp_path: Path) -> WitnessServer:
    return WitnessServer(WITNESS, {ORIGIN: TrustStore([LOG.verifier()])}, WitnessState(tmp_path))


@pytest.fixture
def served(witness: WitnessServer) -> Iterator[str]:
    url = witness.start()
    yield url
    witness.stop()


def test_a_first_checkpoint_is_cosigned_with_the_witness_key(witness: WitnessServer) -> None:
    answer = witness.handle(request(0, 3))
    assert answer.status == 200
    _, found = cosignatures_of(note(3) + answer.body, [CosignerKey.of(WITNESS)])
    assert [c.name for c in found] == ["auditor.example/w1"]


def test_a_consistent_extension_is_cosigned(witness: WitnessServer) -> None:
    assert witness.handle(request(0, 3)).status == 200
    assert witness.handle(request(3, 7)).status == 200
    assert witness.handle(request(7, 7)).status == 200  # the same checkpoint again


def test_an_unknown_origin_is_404(witness: WitnessServer) -> None:
    body = encode_request(0, [], sign_note(Checkpoint("other/log", 1, TREE.root(1)).body(), [LOG]))
    assert witness.handle(body).status == 404


def test_a_checkpoint_without_a_trusted_signature_is_403(witness: WitnessServer) -> None:
    assert witness.handle(request(0, 3, signer=ROGUE)).status == 403


def test_an_old_size_above_the_checkpoint_is_400(witness: WitnessServer) -> None:
    assert witness.handle(encode_request(5, [], note(3))).status == 400


def test_a_stale_old_size_is_409_with_the_latest_size(witness: WitnessServer) -> None:
    witness.handle(request(0, 5))
    answer = witness.handle(request(3, 7))
    assert (answer.status, answer.content_type, answer.body) == (409, SIZE_CONTENT_TYPE, b"5\n")


def test_an_older_checkpoint_is_refused_409(witness: WitnessServer) -> None:
    witness.handle(request(0, 7))
    answer = witness.handle(request(0, 5))  # a rollback: the log shows a shorter tree
    assert (answer.status, answer.body) == (409, b"7\n")


def test_a_same_size_fork_is_409(witness: WitnessServer) -> None:
    witness.handle(request(0, 5))
    answer = witness.handle(encode_request(5, [], note(5, FORK)))
    assert (answer.status, answer.content_type) == (409, SIZE_CONTENT_TYPE)


def test_an_inconsistent_extension_is_422(witness: WitnessServer) -> None:
    witness.handle(request(0, 3))
    assert witness.handle(request(3, 7, FORK)).status == 422


def test_a_proof_from_size_zero_must_be_empty(witness: WitnessServer) -> None:
    body = encode_request(0, [bytes(32)], note(3))
    assert witness.handle(body).status == 422


def test_the_state_survives_a_restart(tmp_path: Path, witness: WitnessServer) -> None:
    witness.handle(request(0, 6))
    again = WitnessServer(WITNESS, witness.logs, WitnessState(tmp_path))
    assert again.handle(request(0, 3)).body == b"6\n"


def test_over_http_the_codes_and_content_types_are_the_protocols(served: str) -> None:
    ok = httpx.post(served + "/add-checkpoint", content=request(0, 4))
    assert ok.status_code == 200
    assert ok.text.startswith("— auditor.example/w1 ")
    assert ok.text.endswith("\n")
    conflict = httpx.post(served + "/add-checkpoint", content=request(2, 6))
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "text/x.tlog.size"
    assert conflict.text == "4\n"
    assert httpx.post(served + "/add-checkpoint", content=b"garbage").status_code == 400
    assert httpx.post(served + "/other", content=request(4, 5)).status_code == 404


def test_the_logs_file_names_origins_and_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "logs.txt"
    path.write_text(f"# archive heads\n{ORIGIN} {LOG.verifier_key()}\n")
    logs = load_logs(path)
    assert list(logs) == [ORIGIN]
    assert logs[ORIGIN].find(LOG.name, LOG.key_id) is not None
