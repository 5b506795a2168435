"""Keys in Go note format, verifier keys and the trust file."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest

from coexarchive.errors import ConfigError, SignatureError
from coexarchive.seal.keys import Ed25519Signer, Signer, TrustStore, Verifier, key_id

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"
GO = json.loads((VECTORS / "go_note.json").read_text(encoding="utf-8"))
TEST_KEY = json.loads((VECTORS / "test_key.json").read_text(encoding="utf-8"))


def test_go_reference_key_parses_to_its_published_verifier_key() -> None:
    signer = Ed25519Signer.parse(GO["signer_key"])
    assert signer.name == "PeterNeumann"
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.verifier_key() == GO["verifier_key"]
    assert signer.unsafe_private_key_text() == GO["signer_key"]
    assert isinstance(signer, Signer)


def test_key_id_by_hand() -> None:
    verifier = Verifier.parse(GO["verifier_key"])
    public = base64.b64decode(GO["verifier_key"].split("+", 2)[2])[1:]
    by_hand = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()[:4]
    assert key_id("PeterNeumann", public) == by_hand == verifier.key_id


def test_test_key_is_derived_from_its_published_seed() -> None:
    seed = hashlib.sha256(b"coexarchive test key").digest()
    signer = Ed25519Signer.from_seed(TEST_KEY["name"], seed)
    assert TEST_KEY["seed_hex"] == seed.hex()
    assert signer.verifier_key() == TEST_KEY["verifier_key"]
    file_text = (VECTORS / "TEST-ONLY.private-key").read_text(encoding="utf-8")
    assert Ed25519Signer.parse(file_text).verifier_key() == TEST_KEY["verifier_key"]


def test_key_file_round_trip_with_owner_only_mode(tmp_path: Path) -> None:
    signer = Ed25519Signer.generate("example.com/log")
    path = tmp_path / "signing.key"
    signer.to_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Ed25519Signer.from_file(path)
    assert loaded.verifier_key() == signer.verifier_key()
    replacement = Ed25519Signer.generate("example.com/log")
    replacement.to_file(path)
    assert Ed25519Signer.from_file(path).public_key == replacement.public_key
    assert list(tmp_path.iterdir()) == [path]


def test_sign_and_verify() -> None:
    signer = Ed25519Signer.generate("example.com/log")
    verifier = Verifier.parse(signer.verifier_key())
    signature = signer.sign(b"text\n")
    verifier.verify(b"text\n", signature)
    with pytest.raises(SignatureError):
        verifier.verify(b"text!\n", signature)
    with pytest.raises(SignatureError):
        verifier.verify(b"text\n", signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(SignatureError):
        verifier.verify(b"text\n", signature[:63])


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there", "nbsp\u00a0x", "nl\n"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        Ed25519Signer.generate(name)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # short id
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
        "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+zzzzzzzz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        Verifier.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
    ],
)
def test_malformed_private_keys_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        Ed25519Signer.parse(text)


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Ed25519Signer.from_file(tmp_path / "absent")
    with pytest.raises(ConfigError):
        TrustStore.from_file(tmp_path / "absent")


def test_trust_file_with_comments_and_rotation() -> None:
    old = Ed25519Signer.generate("example.com/log")
    new = Ed25519Signer.generate("example.com/log")
    witness = Ed25519Signer.generate("witness.example.org")
    text = (
        f"# archive signing keys\n\n{old.verifier_key()}\n  {new.verifier_key()}  \n"
        f"# witness\n{witness.verifier_key()}\n"
    )
    trust = TrustStore.parse(text)
    assert len(trust.verifiers) == 3
    assert trust.find(old.name, old.key_id) == old.verifier()
    assert trust.find(new.name, new.key_id) == new.verifier()
    assert trust.find("example.com/other", old.key_id) is None
    assert trust.find(old.name, b"\0\0\0\0") is None


def test_trust_file_errors_name_the_line() -> None:
    signer = Ed25519Signer.generate("example.com/log")
    with pytest.raises(ConfigError, match="line 3"):
        TrustStore.parse(f"# keys\n{signer.verifier_key()}\n{signer.verifier_key()}\n")
    with pytest.raises(ConfigError, match="line 2"):
        TrustStore.parse(f"{signer.verifier_key()}\nnot a key\n")
