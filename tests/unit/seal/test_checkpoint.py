"""Checkpoints and signed notes (C2SP tlog-checkpoint, signed-note)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coexarchive.errors import FormatError, SignatureError
from coexarchive.seal.checkpoint import (
    Checkpoint,
    add_signatures,
    checkpoint_origin,
    open_checkpoint,
    open_note,
    sign_note,
)
from coexarchive.seal.keys import Ed25519Signer, TrustStore

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"
GO = json.loads((VECTORS / "go_note.json").read_text(encoding="utf-8"))
SIGNER = Ed25519Signer.from_seed(
    "archive.example.com/TEST-ONLY", hashlib.sha256(b"coexarchive test key").digest()
)
TRUST = TrustStore.from_file(VECTORS / "TEST-ONLY.trust")
ORIGIN = checkpoint_origin("archive.example.com", "106540352242922")
ROOT = hashlib.sha256(b"root").digest()


def test_origin_carries_the_version() -> None:
    assert ORIGIN == "archive.example.com/coexarchive/v1/chain/106540352242922"


def test_body_format() -> None:
    body = Checkpoint(ORIGIN, 20852163, ROOT, ("chain abc",)).body()
    root = base64.b64encode(ROOT).decode()
    assert body == f"{ORIGIN}\n20852163\n{root}\nchain abc\n".encode()
    assert Checkpoint.parse(body) == Checkpoint(ORIGIN, 20852163, ROOT, ("chain abc",))
    assert Checkpoint.parse(Checkpoint(ORIGIN, 0, ROOT).body()).size == 0


def test_go_reference_note_signs_and_opens_byte_for_byte() -> None:
    signer = Ed25519Signer.parse(GO["signer_key"])
    assert sign_note(GO["text"].encode(), [signer]).decode() == GO["note"]
    trust = TrustStore.parse(GO["verifier_key"])
    assert open_note(GO["note"].encode(), trust) == (GO["text"].encode(), ["PeterNeumann"])


def test_signature_checks_out_by_independent_construction() -> None:
    checkpoint = Checkpoint(ORIGIN, 7, ROOT)
    note = sign_note(checkpoint.body(), [SIGNER])
    body, _, signature_line = note.partition(b"\n\n")
    assert body + b"\n" == checkpoint.body()
    prefix, name, encoded = signature_line.rstrip(b"\n").split(b" ")
    assert prefix == "—".encode() and prefix == b"\xe2\x80\x94"
    assert name == SIGNER.name.encode()
    raw = base64.b64decode(encoded)
    key_id = hashlib.sha256(SIGNER.name.encode() + b"\n\x01" + SIGNER.public_key).digest()[:4]
    assert raw[:4] == key_id
    Ed25519PublicKey.from_public_bytes(SIGNER.public_key).verify(raw[4:], checkpoint.body())
    assert open_checkpoint(note, TRUST, origin=ORIGIN) == checkpoint


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"origin\n",
        b"origin\n5\n",
        b"\n5\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n05\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n00\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n-5\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n+5\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n 5\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT),
        b"origin\n5\n" + base64.b64encode(ROOT)[:-1] + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT[:31]) + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT + b"x") + b"\n",
        b"origin\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT) + b"\n\n",
        b"origin\n5\n" + base64.b64encode(ROOT) + b"\next\n\n",
        b"origin\n5\n" + base64.b64encode(ROOT) + b"\r\n",
        b"origin\n99999999999999999999999\n" + base64.b64encode(ROOT) + b"\n",
        b"ori\xffgin\n5\n" + base64.b64encode(ROOT) + b"\n",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(FormatError):
        Checkpoint.parse(body)


def test_cosignatures_are_appended_and_unknown_keys_ignored() -> None:
    witness = Ed25519Signer.generate("witness.example.org")
    note = add_signatures(sign_note(Checkpoint(ORIGIN, 3, ROOT).body(), [SIGNER]), [witness])
    assert note.count("—".encode()) == 2
    assert open_note(note, TRUST)[1] == [SIGNER.name]
    both = TrustStore.parse(f"{SIGNER.verifier_key()}\n{witness.verifier_key()}\n")
    assert open_note(note, both)[1] == [SIGNER.name, witness.name]
    only_witness = TrustStore.parse(witness.verifier_key())
    assert open_note(note, only_witness)[1] == [witness.name]


def test_rotated_keys_keep_verifying_while_trusted() -> None:
    new = Ed25519Signer.generate(SIGNER.name)
    old_note = sign_note(Checkpoint(ORIGIN, 3, ROOT).body(), [SIGNER])
    new_note = sign_note(Checkpoint(ORIGIN, 4, ROOT).body(), [new])
    rotated = TrustStore.parse(f"{SIGNER.verifier_key()}\n{new.verifier_key()}\n")
    assert open_checkpoint(old_note, rotated).size == 3
    assert open_checkpoint(new_note, rotated).size == 4
    with pytest.raises(SignatureError):
        open_checkpoint(old_note, TrustStore.parse(new.verifier_key()))


def test_sixteen_signatures_are_accepted_and_over_a_hundred_refused() -> None:
    body = Checkpoint(ORIGIN, 3, ROOT).body()
    witnesses = [Ed25519Signer.generate(f"w{i}.example.org") for i in range(16)]
    note = sign_note(body, [*witnesses, SIGNER])
    assert open_note(note, TRUST)[1] == [SIGNER.name]
    line = note[len(body) + 1 :].splitlines(keepends=True)[0]
    with pytest.raises(SignatureError, match="at most 100"):
        open_note(body + b"\n" + line * 100 + note[len(body) + 1 :], TRUST)


def test_a_bad_signature_from_a_trusted_key_rejects_the_note() -> None:
    body = Checkpoint(ORIGIN, 3, ROOT).body()
    good = sign_note(body, [SIGNER])
    forged = sign_note(Checkpoint(ORIGIN, 4, ROOT).body(), [SIGNER])
    bad_line = forged[forged.index(b"\n\n") + 2 :]
    with pytest.raises(SignatureError):
        open_note(good + bad_line, TRUST)


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"origin\n5\n",
        b"text\n\n",
        b"text\n\n\xe2\x80\x94 name\n",
        b"text\n\n\xe2\x80\x94 name !!!!\n",
        b"text\n\n-- name AAAAAAAA\n",
        b"text\n\n\xe2\x80\x94 name AAAA\n",
        b"text\n\n\xe2\x80\x94 na+me AAAAAAAAAAAA\n",
        b"text\n\n\xe2\x80\x94 name AAAAAAAAAAAA",
        b"te\x01xt\n\n\xe2\x80\x94 name AAAAAAAAAAAA\n",
        b"te\xffxt\n\n\xe2\x80\x94 name AAAAAAAAAAAA\n",
    ],
)
def test_malformed_notes_are_refused(note: bytes) -> None:
    with pytest.raises((SignatureError, FormatError)):
        open_note(note, TRUST)


def test_sign_note_refuses_bad_text() -> None:
    for body in (b"no newline", b"blank\n\nline\n", b"ctrl\x07\n"):
        with pytest.raises(FormatError):
            sign_note(body, [SIGNER])
