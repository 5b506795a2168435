"""tlog-cosignature lines and tlog-witness requests, byte for byte against the C2SP text."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from coexarchive.anchor.witness import encode_request, parse_request
from coexarchive.errors import ConfigError, FormatError, SignatureError
from coexarchive.seal.checkpoint import open_note, sign_note
from coexarchive.seal.cosignature import (
    CosignerKey,
    cosign,
    cosignatures_of,
    cosigned_message,
    cosigner_key_id,
)
from coexarchive.seal.keys import Ed25519Signer, TrustStore, key_id

VECTOR = json.loads(
    (Path(__file__).parents[2] / "vectors" / "tlog_cosignature.json").read_text("utf-8")
)
BODY = VECTOR["checkpoint_body"].encode()
WITNESS = Ed25519Signer.from_seed("witness.example.com/w1", bytes(range(32)))


def test_the_spec_witness_line_is_key_id_timestamp_and_signature() -> None:
    line = VECTOR["witness_line"]
    prefix = "— " + VECTOR["witness_name"] + " "
    assert line.startswith(prefix)
    blob = base64.b64decode(line[len(prefix) :].strip(), validate=True)
    assert len(blob) == 4 + 8 + 64
    assert blob[:4].hex() == VECTOR["witness_key_id_hex"]
    assert struct.unpack(">Q", blob[4:12])[0] == VECTOR["timestamp"]
    assert blob[12:].hex() == VECTOR["signature_hex"]


def test_the_signed_message_is_the_spec_example_byte_for_byte() -> None:
    message = cosigned_message(BODY, VECTOR["timestamp"])
    assert message == VECTOR["signed_message"].encode()


def test_a_cosignature_line_has_the_spec_framing_and_verifies() -> None:
    line = cosign(BODY, WITNESS, VECTOR["timestamp"])
    name, _, encoded = line.decode().removeprefix("— ").rstrip("\n").partition(" ")
    blob = base64.b64decode(encoded, validate=True)
    key = CosignerKey.of(WITNESS)
    assert name == "witness.example.com/w1"
    assert blob[:4] == key.key_id == cosigner_key_id(WITNESS.name, bytes(WITNESS.public_key))
    assert struct.unpack(">Q", blob[4:12])[0] == 1679315147
    note = BODY + b"\n" + VECTOR["log_signature_line"].encode() + line
    _, found = cosignatures_of(note, [key])
    assert [(c.name, c.timestamp) for c in found] == [(WITNESS.name, 1679315147)]


def test_the_key_id_is_type_0x04_so_a_cosignature_never_passes_for_a_log_signature() -> None:
    key = CosignerKey.of(WITNESS)
    assert key.key_id != key_id(WITNESS.name, bytes(WITNESS.public_key))
    note = BODY + b"\n" + cosign(BODY, WITNESS, 1)
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        open_note(note, TrustStore([WITNESS.verifier()]))


def test_a_changed_timestamp_fails() -> None:
    line = cosign(BODY, WITNESS, 1679315147)
    name, _, encoded = line.decode().removeprefix("— ").rstrip("\n").partition(" ")
    blob = bytearray(base64.b64decode(encoded))
    blob[4:12] = struct.pack(">Q", 1679315148)
    forged = f"— {name} {base64.b64encode(bytes(blob)).decode()}\n".encode()
    with pytest.raises(SignatureError, match="does not verify"):
        cosignatures_of(BODY + b"\n" + forged, [CosignerKey.of(WITNESS)])


def test_a_cosignature_over_another_checkpoint_fails() -> None:
    other = BODY.replace(b"20852163", b"20852164")
    line = cosign(other, WITNESS, 1679315147)
    with pytest.raises(SignatureError, match="does not verify"):
        cosignatures_of(BODY + b"\n" + line, [CosignerKey.of(WITNESS)])


def test_a_line_of_a_configured_key_with_no_timestamp_is_refused() -> None:
    key = CosignerKey.of(WITNESS)
    bare = key.key_id + WITNESS.sign(cosigned_message(BODY, 0))
    line = f"— {WITNESS.name} {base64.b64encode(bare).decode()}\n".encode()
    with pytest.raises(SignatureError, match="not a timestamped Ed25519"):
        cosignatures_of(BODY + b"\n" + line, [key])


def test_timestamps_past_2_63_are_refused() -> None:
    with pytest.raises(SignatureError, match="out of range"):
        cosigned_message(BODY, 2**63)


def test_a_vkey_round_trips_and_a_note_key_is_not_a_witness_key() -> None:
    key = CosignerKey.of(WITNESS)
    assert CosignerKey.parse(key.vkey()) == key
    with pytest.raises(ConfigError, match="not a cosignature/v1 key"):
        CosignerKey.parse(WITNESS.verifier_key())
    tampered = key.vkey().replace(key.key_id.hex(), "00000000")
    with pytest.raises(ConfigError, match="key id does not match"):
        CosignerKey.parse(tampered)


def test_the_spec_add_checkpoint_request_parses_and_re_encodes_byte_for_byte() -> None:
    body = VECTOR["witness_request_example"].encode()
    old, proof, note = parse_request(body)
    assert old == VECTOR["witness_request_old_size"]
    assert len(proof) == VECTOR["witness_request_proof_lines"]
    assert note.startswith(BODY + b"\n")
    assert encode_request(old, proof, note) == body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"old 01\n\n" + BODY, "old <size>"),
        (b"old -1\n\n" + BODY, "old <size>"),
        (b"new 1\n\n" + BODY, "old <size>"),
        (b"old 1\n" + BODY, "no blank line"),
        (b"old 1\nAAAA\n\n" + BODY, "base64 of 32 bytes"),
        (b"old 1\n" + b"\n".join([base64.b64encode(bytes(32))] * 64) + b"\n\n" + BODY, "63"),
    ],
)
def test_malformed_requests_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        parse_request(body)


def test_a_request_with_a_signed_note_round_trips() -> None:
    log = Ed25519Signer.from_seed("example.com/behind-the-sofa", bytes(32))
    note = sign_note(BODY, [log])
    proof = [bytes([i]) * 32 for i in range(3)]
    assert parse_request(encode_request(7, proof, note)) == (7, proof, note)
