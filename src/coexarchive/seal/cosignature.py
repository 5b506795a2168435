"""C2SP ``tlog-cosignature`` (Ed25519, ``cosignature/v1``): witness signatures on checkpoints.

A cosignature is a signed-note signature line ``— <name> base64(key id || timestamp || sig)``:

- key id = ``SHA-256(<name> || 0x0A || 0x04 || 32-byte public key)[:4]`` (type 0x04, not the
  0x01 of ordinary note keys, so a cosignature can never pass for a log signature);
- timestamp = the time of cosigning, POSIX seconds, 8 bytes big-endian, at most 2^63 - 1;
- sig = Ed25519 over ``"cosignature/v1\\n" || "time " || decimal(timestamp) || "\\n" || body``
  where ``body`` is the whole checkpoint text (with its final newline, without signatures).

It states: as of ``timestamp``, the largest consistent tree the cosigner has seen for the
checkpoint's origin has this root. Verifier keys (vkeys) are ``<name>+<key id hex>+base64(0x04
|| public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coexarchive.errors import ConfigError, SignatureError
from coexarchive.seal.checkpoint import _split_note
from coexarchive.seal.keys import Signer, check_key_name

__all__ = [
    "ALG_COSIGNATURE_V1",
    "Cosignature",
    "CosignerKey",
    "cosign",
    "cosignatures_of",
    "cosigned_message",
    "cosigner_key_id",
]

ALG_COSIGNATURE_V1 = 0x04
_HEADER = b"cosignature/v1\n"
_MAX_TIME = 2**63 - 1
_SIG_PREFIX = "— ".encode()


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    data = name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    return hashlib.sha256(data).digest()[:4]


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosigner signs for ``body`` at ``timestamp``."""
    if not 0 <= timestamp <= _MAX_TIME:
        raise SignatureError(f"cosignature timestamp {timestamp} is out of range")
    return _HEADER + b"time " + str(timestamp).encode("ascii") + b"\n" + body


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key as a cosignature/v1 verifier."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise ConfigError(f"cosigner key {self.name}: an Ed25519 key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def parse(cls, vkey: str) -> CosignerKey:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise ConfigError(f"not a witness verifier key (<name>+<id>+<key>): {vkey[:60]!r}")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            key_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise ConfigError(f"witness verifier key {name!r} is malformed") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise ConfigError(
                f"witness verifier key {name!r} is not a cosignature/v1 key (type 0x04, 32 bytes)"
            )
        key = cls(name, raw[1:])
        if key.key_id != key_id:
            raise ConfigError(f"witness verifier key {name!r}: key id does not match the key")
        return key

    @classmethod
    def of(cls, signer: Signer) -> CosignerKey:
        return cls(signer.name, bytes(signer.public_key))

    def verify(self, body: bytes, timestamp: int, signature: bytes) -> None:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature, cosigned_message(body, timestamp)
            )
        except InvalidSignature:
            raise SignatureError(f"cosignature by {self.name} does not verify") from None


@dataclass(frozen=True)
class Cosignature:
    """One verified cosignature: who, and when they say they saw the checkpoint."""

    name: str
    key_id: bytes
    timestamp: int


def cosign(body: bytes, signer: Signer, timestamp: int) -> bytes:
    """The signature line a witness holding ``signer`` adds to ``body`` at ``timestamp``."""
    key = CosignerKey.of(signer)
    signature = signer.sign(cosigned_message(body, timestamp))
    blob = key.key_id + struct.pack(">Q", timestamp) + signature
    return _SIG_PREFIX + key.name.encode() + b" " + base64.b64encode(blob) + b"\n"


def cosignatures_of(note: bytes, keys: list[CosignerKey]) -> tuple[bytes, list[Cosignature]]:
    """The note's text and the cosignatures of ``keys`` on it, each verified.

    Lines of other keys are ignored (the log's own signature, unknown witnesses); a line that
    claims a configured key but does not verify, or is not 76 bytes, rejects the note.
    """
    body, signatures = _split_note(note)
    found: dict[bytes, Cosignature] = {}
    by_id = {(key.name, key.key_id): key for key in keys}
    for name, key_id, rest in signatures:
        key = by_id.get((name, key_id))
        if key is None:
            continue
        if len(rest) != 8 + 64:
            raise SignatureError(f"cosignature by {name} is not a timestamped Ed25519 signature")
        (timestamp,) = struct.unpack(">Q", rest[:8])
        key.verify(body, timestamp, rest[8:])
        found.setdefault(key.key_id, Cosignature(name, key_id, timestamp))
    return body, list(found.values())
