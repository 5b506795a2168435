"""Signing keys and the trust file, in the formats of Go's ``golang.org/x/mod/sumdb/note``.

- private key file: ``PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 || 32-byte seed)>``
- verifier key:     ``<name>+<key id, 8 hex>+<base64(0x01 || 32-byte public key)>``
- key id:           ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (C2SP signed-note)

A trust file lists verifier keys, one a line. Keys rotate by adding the new key to the trust file
and signing with it; checkpoints signed by an old key verify as long as that key stays listed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from coexarchive.errors import ConfigError, SignatureError

__all__ = [
    "ALG_ED25519",
    "Ed25519Signer",
    "Signer",
    "TrustStore",
    "Verifier",
    "check_key_name",
    "key_id",
]

ALG_ED25519 = 0x01
_ALG = bytes([ALG_ED25519])
_PRIVATE_PREFIX = "PRIVATE+KEY+"


@runtime_checkable
class Signer(Protocol):
    """Anything that signs note text with a named Ed25519 key.

    ``Ed25519Signer`` holds the key in memory; a KMS-backed signer implements the same four
    members and keeps the private key in the KMS.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def check_key_name(name: str) -> str:
    """Key names are non-empty and hold no Unicode space or ``+`` (C2SP signed-note)."""
    if not name or "+" in name or any(char.isspace() for char in name):
        raise ConfigError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ConfigError(f"invalid key name {name!r}: control characters are not allowed")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"invalid key name {name!r}: not valid UTF-8") from None
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: ``SHA-256(name || 0x0A || 0x01 || pubkey)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ALG + public_key).digest()[:4]


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64decode(text: str) -> bytes:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise binascii.Error("non-canonical base64")
    return raw


def _parse_key_fields(name: str, hex_id: str, encoded: str, what: str) -> tuple[bytes, bytes]:
    """Check the name, decode ``0x01 || key``; return (key id, 32 key bytes)."""
    check_key_name(name)
    try:
        if len(hex_id) != 8:
            raise ValueError(hex_id)
        expected_id = bytes.fromhex(hex_id)
        raw = _b64decode(encoded)
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(f"malformed {what} for {name!r}") from None
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise ConfigError(f"{what} for {name!r} is not an Ed25519 key (type 0x01, 32 bytes)")
    return expected_id, raw[1:]


class Ed25519Signer:
    """An Ed25519 private key with its note key name."""

    __slots__ = ("_private_key", "key_id", "name", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = check_key_name(name)
        self._private_key = private_key
        self.public_key = _raw_public(private_key.public_key())
        self.key_id = key_id(name, self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.name!r}, key_id={self.key_id.hex()})"

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        """A new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Ed25519Signer:
        """The key whose RFC 8032 private seed is ``seed`` (32 bytes)."""
        if len(seed) != 32:
            raise ConfigError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def parse(cls, text: str) -> Ed25519Signer:
        """Read a note private key (``PRIVATE+KEY+name+keyid+base64``)."""
        text = text.strip()
        # The base64 key may itself contain '+': split off the name and the id only.
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if not text.startswith(_PRIVATE_PREFIX) or len(parts) != 3:
            raise ConfigError("not a note private key (PRIVATE+KEY+<name>+<id>+<key>)")
        name, hex_id, encoded = parts
        expected_id, seed = _parse_key_fields(name, hex_id, encoded, "private key")
        signer = cls.from_seed(name, seed)
        if signer.key_id != expected_id:
            raise ConfigError(f"private key for {name!r}: key id does not match the key")
        return signer

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Ed25519Signer:
        """Read a note private key file."""
        return cls.parse(_read_text(path, "private key file"))

    def unsafe_private_key_text(self) -> str:
        """The private key in note format: secret material, never log or archive it."""
        seed = self._private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        encoded = base64.b64encode(_ALG + seed).decode("ascii")
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{encoded}"

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the private key readable only by its owner (mode 0600), replacing atomically."""
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.unsafe_private_key_text() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def verifier_key(self) -> str:
        """The public verifier key line for trust files."""
        encoded = base64.b64encode(_ALG + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(message)


class Verifier:
    """A trusted Ed25519 public key with its note key name."""

    __slots__ = ("_public", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        self.name = check_key_name(name)
        if len(public_key) != 32:
            raise ConfigError(f"verifier key for {name!r}: an Ed25519 public key is 32 bytes")
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        self._public = Ed25519PublicKey.from_public_bytes(self.public_key)

    def __repr__(self) -> str:
        return f"Verifier({self.name!r}, key_id={self.key_id.hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.public_key) == (other.name, other.public_key)

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Read a verifier key (``name+keyid+base64(0x01 || pubkey)``)."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise ConfigError(f"not a verifier key (<name>+<id>+<key>): {text.strip()!r}")
        name, hex_id, encoded = parts
        expected_id, public_key = _parse_key_fields(name, hex_id, encoded, "verifier key")
        verifier = cls(name, public_key)
        if verifier.key_id != expected_id:
            raise ConfigError(f"verifier key for {name!r}: key id does not match the key")
        return verifier

    def to_text(self) -> str:
        encoded = base64.b64encode(_ALG + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is this key's over ``message``."""
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            raise SignatureError(
                f"signature by {self.name!r} (key {self.key_id.hex()}) does not verify"
            ) from None


class TrustStore:
    """The verifier keys a reader trusts; several may share a name during a rotation."""

    __slots__ = ("_by_id", "verifiers")

    def __init__(self, verifiers: Sequence[Verifier] = ()) -> None:
        self.verifiers: tuple[Verifier, ...] = tuple(verifiers)
        self._by_id: dict[tuple[str, bytes], Verifier] = {}
        for verifier in self.verifiers:
            slot = (verifier.name, verifier.key_id)
            if slot in self._by_id:
                raise ConfigError(
                    f"two trusted keys named {verifier.name!r} share key id {verifier.key_id.hex()}"
                )
            self._by_id[slot] = verifier

    def __repr__(self) -> str:
        return f"TrustStore({[v.to_text() for v in self.verifiers]!r})"

    @classmethod
    def parse(cls, text: str) -> TrustStore:
        """Read a trust file: one verifier key a line; blank lines and ``#`` comments ignored."""
        verifiers: list[Verifier] = []
        seen: dict[tuple[str, bytes], int] = {}
        for number, raw_line in enumerate(text.splitlines(), start=1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                verifier = Verifier.parse(line)
            except ConfigError as exc:
                raise ConfigError(f"trust file line {number}: {exc}") from None
            slot = (verifier.name, verifier.key_id)
            if slot in seen:
                raise ConfigError(
                    f"trust file line {number}: key {verifier.name!r} "
                    f"{verifier.key_id.hex()} is already listed on line {seen[slot]}"
                )
            seen[slot] = number
            verifiers.append(verifier)
        return cls(verifiers)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrustStore:
        text = _read_text(path, "trust file")
        try:
            return cls.parse(text)
        except ConfigError as exc:
            raise ConfigError(f"{os.fspath(path)}: {exc}") from None

    def find(self, name: str, key_id: bytes) -> Verifier | None:
        """The trusted key with this name and key id, if any."""
        return self._by_id.get((name, key_id))


def _read_text(path: str | os.PathLike[str], what: str) -> str:
    """A key or trust file's text; ConfigError naming ``what`` and the path if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {os.fspath(path)!r}: {exc}") from None
