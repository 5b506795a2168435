"""Checkpoints (C2SP tlog-checkpoint) inside signed notes (C2SP signed-note).

A checkpoint body is ``origin\\nsize\\nbase64(root)\\n`` plus optional extension lines; the
signed note appends a blank line and one ``— <key name> base64(key id || signature)`` line per
signature, each signature an Ed25519 signature over the body.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from coexarchive.errors import ConfigError, FormatError, SignatureError
from coexarchive.seal.keys import Signer, TrustStore, check_key_name

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "add_signatures",
    "checkpoint_origin",
    "open_checkpoint",
    "open_note",
    "sign_note",
]

MAX_SIGNATURES = 100
_SIG_PREFIX = "— ".encode()
_SIZE = re.compile(rb"0|[1-9][0-9]{0,19}")
_MAX_SIZE = 2**64 - 1


def checkpoint_origin(archive_name: str, chain_id: str) -> str:
    """The origin line of a chain's checkpoints; ``v1`` is the checkpoint format version."""
    return f"{archive_name}/coexarchive/v1/chain/{chain_id}"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that a log has ``size`` leaves with root ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or any(c == "\n" or ord(c) < 0x20 for c in self.origin):
            raise FormatError(f"invalid checkpoint origin {self.origin!r}")
        if not 0 <= self.size <= _MAX_SIZE:
            raise FormatError(f"checkpoint size {self.size} is out of range")
        if len(self.root_hash) != 32:
            raise FormatError("a checkpoint root hash is 32 bytes")
        for line in self.extensions:
            if not line or any(ord(c) < 0x20 for c in line):
                raise FormatError(f"invalid checkpoint extension line {line!r}")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root, extension lines, each ending in newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint body strictly; raise :class:`FormatError` if it is not one."""
        _check_note_text(body)
        if not body.endswith(b"\n"):
            raise FormatError("checkpoint body does not end in a newline")
        lines = body[:-1].split(b"\n")
        if len(lines) < 3:
            raise FormatError("a checkpoint has an origin, a size and a root hash line")
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise FormatError("checkpoint origin is empty")
        if not _SIZE.fullmatch(size_line) or int(size_line) > _MAX_SIZE:
            raise FormatError(f"checkpoint size {size_line!r} is not a canonical decimal")
        try:
            root_hash = base64.b64decode(root_line, validate=True)
        except binascii.Error:
            raise FormatError(f"checkpoint root {root_line!r} is not standard base64") from None
        if len(root_hash) != 32 or base64.b64encode(root_hash) != root_line:
            raise FormatError(f"checkpoint root {root_line!r} is not the base64 of 32 bytes")
        if any(not line for line in extensions):
            raise FormatError("checkpoint has an empty extension line")
        return cls(
            origin=origin.decode("utf-8"),
            size=int(size_line),
            root_hash=root_hash,
            extensions=tuple(line.decode("utf-8") for line in extensions),
        )


def _check_note_text(text: bytes) -> None:
    """Notes are UTF-8 with no ASCII control character other than newline."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("note is not valid UTF-8") from None
    if any(ord(char) < 0x20 and char != "\n" for char in decoded):
        raise FormatError("note holds a control character")


def _signature_line(body: bytes, signer: Signer) -> bytes:
    check_key_name(signer.name)
    signature = signer.sign(body)
    encoded = base64.b64encode(bytes(signer.key_id) + signature)
    return _SIG_PREFIX + signer.name.encode("utf-8") + b" " + encoded + b"\n"


def sign_note(body: bytes, signers: Sequence[Signer]) -> bytes:
    """A signed note: ``body``, a blank line, one signature line per signer."""
    _check_note_text(body)
    if not body.endswith(b"\n") or b"\n\n" in body:
        raise FormatError("note text must end in a newline and hold no blank line")
    if not signers:
        raise ConfigError("a signed note needs at least one signer")
    return body + b"\n" + b"".join(_signature_line(body, signer) for signer in signers)


def add_signatures(note: bytes, signers: Sequence[Signer]) -> bytes:
    """Append signature lines (cosignatures) to an already signed note."""
    body, _ = _split_note(note)
    return note + b"".join(_signature_line(body, signer) for signer in signers)


def _split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
    """Split a note into its text and (name, key id, signature) triples, checking the syntax."""
    _check_note_text(note)
    split = note.rfind(b"\n\n")
    if split < 0:
        raise SignatureError("note has no signature block")
    body, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise SignatureError("note has no signature lines")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise SignatureError(f"note has {len(lines)} signatures; at most {MAX_SIGNATURES} are read")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise SignatureError(f"malformed signature line {line[:40]!r}")
        name_bytes, space, encoded = line[len(_SIG_PREFIX) :].partition(b" ")
        try:
            name = check_key_name(name_bytes.decode("utf-8"))
            raw = base64.b64decode(encoded, validate=True)
        except (ConfigError, binascii.Error):
            raise SignatureError(f"malformed signature line {line[:40]!r}") from None
        if not space or len(raw) < 5:
            raise SignatureError(f"malformed signature line {line[:40]!r}")
        signatures.append((name, raw[:4], raw[4:]))
    return body, signatures


def open_note(note: bytes, trust: TrustStore) -> tuple[bytes, list[str]]:
    """Verify a signed note; return its text and the names of the trusted keys that signed.

    Signatures by unknown keys are ignored (they may be witnesses or rotated keys); a trusted
    key whose signature does not verify makes the whole note invalid.
    """
    # 1. The note must follow the signed-note syntax (at most MAX_SIGNATURES lines).
    body, signatures = _split_note(note)
    # 2. Every signature from a trusted (name, key id) must verify over the text.
    verified: list[str] = []
    checked: set[tuple[str, bytes]] = set()
    for name, key_id, signature in signatures:
        verifier = trust.find(name, key_id)
        if verifier is None:
            continue
        verifier.verify(body, signature)
        if (name, key_id) not in checked:
            checked.add((name, key_id))
            verified.append(name)
    # 3. At least one trusted key must have signed.
    if not verified:
        raise SignatureError("note carries no signature from a trusted key")
    return body, verified


def open_checkpoint(note: bytes, trust: TrustStore, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint; if ``origin`` is given, it must be the checkpoint's origin."""
    body, _ = open_note(note, trust)
    checkpoint = Checkpoint.parse(body)
    if origin is not None and checkpoint.origin != origin:
        raise SignatureError(
            f"checkpoint is signed for origin {checkpoint.origin!r}, expected {origin!r}"
        )
    return checkpoint
