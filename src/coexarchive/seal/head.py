"""The archive head: a signed statement of every chain's size and root (``schemas/SEALING.md``).

A chain's checkpoints prove what the chain holds, but nothing in them says which chains exist:
deleting every object of one chain leaves nothing to compare with. Each commit therefore signs an
*archive head*, a C2SP signed note whose text is

    <archive>/coexarchive/v1/head
    <seq>
    <base64 SHA-256 of the previous head's note text; 32 zero bytes for seq 0>
    <chain id> <size> <base64 root>        one line per chain, sorted by chain id
    anchor/<kind> <head seq> <name>[ <base64 digest>]   outside anchors of earlier heads, sorted

Heads are stored create-only under ``heads/<seq, 20 digits>``; each links to the one before it, so
the heads form an append-only log of their own and the set of chains is tamper-evident too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coexarchive.errors import FormatError, SignatureError
from coexarchive.seal.checkpoint import open_note, sign_note
from coexarchive.seal.keys import Signer, TrustStore

__all__ = [
    "ANCHOR_KINDS",
    "GENESIS_PREV",
    "HEAD_PREFIX",
    "AnchorLine",
    "ArchiveHead",
    "ChainHead",
    "head_key",
    "head_origin",
    "is_head_note",
    "open_head",
    "sign_head",
]

HEAD_PREFIX = "heads/"
HEAD_MARKER = "/coexarchive/v1/head"
# The ``prev`` of the first head: there is no previous note text to hash.
GENESIS_PREV = bytes(32)
_NUMBER = re.compile(r"0|[1-9][0-9]{0,19}")
_CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_KEY = re.compile(r"heads/[0-9]{20}")
# Names of timestamp authorities and witnesses in anchor lines and object keys.
_ANCHOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ANCHOR_PREFIX = "anchor/"
# kind -> whether the line carries a digest. ``timestamp``: the SHA-256 of the stored RFC 3161
# response for that head from that authority; ``timestamp-missing``: the authority gave none yet.
ANCHOR_KINDS = {"timestamp": True, "timestamp-missing": False}
_MAX = 2**64 - 1


def head_origin(archive_name: str) -> str:
    """The origin line of an archive's heads; ``v1`` is the head format's version marker."""
    return f"{archive_name}{HEAD_MARKER}"


def head_key(seq: int) -> str:
    return f"{HEAD_PREFIX}{seq:020d}"


def head_seq(key: str) -> int | None:
    """The seq a ``heads/`` key names, or None if the key is not a head key."""
    return int(key[len(HEAD_PREFIX) :]) if _KEY.fullmatch(key) else None


def is_head_note(note: bytes) -> bool:
    """Whether a note's origin line names an archive head (not yet verified)."""
    first = note.split(b"\n", 1)[0]
    return first.endswith(HEAD_MARKER.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hash32(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise FormatError(f"archive head: {what} {text[:60]!r} is not standard base64") from None
    if len(raw) != 32 or _b64(raw) != text:
        raise FormatError(f"archive head: {what} {text[:60]!r} is not the base64 of 32 bytes")
    return raw


def _number(text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) > _MAX:
        raise FormatError(f"archive head: {what} {text[:30]!r} is not a canonical decimal")
    return int(text)


@dataclass(frozen=True)
class ChainHead:
    """One chain as an archive head states it: its tree size and the root at that size."""

    chain_id: str
    size: int
    root_hash: bytes

    def line(self) -> str:
        return f"{self.chain_id} {self.size} {_b64(self.root_hash)}"


def check_anchor_name(name: str) -> str:
    if not _ANCHOR_NAME.fullmatch(name):
        raise FormatError(
            f"anchor name {name[:70]!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class AnchorLine:
    """What a head says about an outside anchor of an earlier head.

    ``anchor/timestamp <seq> <authority> <base64 SHA-256 of the stored token>`` seals a token
    obtained after head ``seq`` was written; ``anchor/timestamp-missing <seq> <authority>`` records
    that the authority had not answered for head ``seq`` when this head was signed.
    """

    kind: str
    seq: int
    name: str
    digest: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in ANCHOR_KINDS:
            raise FormatError(f"archive head: unknown anchor kind {self.kind[:40]!r}")
        check_anchor_name(self.name)
        if not 0 <= self.seq <= _MAX:
            raise FormatError("archive head: anchor seq out of range")
        wants_digest = ANCHOR_KINDS[self.kind]
        if wants_digest != (self.digest is not None) or (
            self.digest is not None and len(self.digest) != 32
        ):
            raise FormatError(f"archive head: anchor/{self.kind} line has a wrong digest field")

    def line(self) -> str:
        fields = [_ANCHOR_PREFIX + self.kind, str(self.seq), self.name]
        if self.digest is not None:
            fields.append(_b64(self.digest))
        return " ".join(fields)

    @classmethod
    def parse(cls, line: str) -> AnchorLine:
        parts = line.split(" ")
        kind = parts[0][len(_ANCHOR_PREFIX) :]
        if kind not in ANCHOR_KINDS or len(parts) != (4 if ANCHOR_KINDS[kind] else 3):
            raise FormatError(f"archive head anchor line {line[:60]!r} is not in a known form")
        digest = _hash32(parts[3], f"digest of {parts[0]}") if ANCHOR_KINDS[kind] else None
        return cls(kind, _number(parts[1], "anchor seq"), parts[2], digest)


@dataclass(frozen=True)
class ArchiveHead:
    """The parsed text of an archive head."""

    origin: str
    seq: int
    prev: bytes
    chains: tuple[ChainHead, ...]
    anchors: tuple[AnchorLine, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin.endswith(HEAD_MARKER) or len(self.origin) == len(HEAD_MARKER):
            raise FormatError(f"archive head origin {self.origin!r} does not end in {HEAD_MARKER}")
        if any(ord(c) < 0x20 for c in self.origin):
            raise FormatError("archive head origin holds a control character")
        if not 0 <= self.seq <= _MAX or len(self.prev) != 32:
            raise FormatError("archive head seq or previous hash out of range")
        ids = [chain.chain_id for chain in self.chains]
        if ids != sorted(set(ids), key=str.encode):
            raise FormatError("archive head chains are not sorted by id and unique")
        for chain in self.chains:
            if not _CHAIN_ID.fullmatch(chain.chain_id):
                raise FormatError(f"archive head names an invalid chain id {chain.chain_id!r}")
            if not 0 < chain.size <= _MAX or len(chain.root_hash) != 32:
                raise FormatError(f"archive head entry for {chain.chain_id} is out of range")
        lines = [anchor.line().encode() for anchor in self.anchors]
        if lines != sorted(set(lines)):
            raise FormatError("archive head anchor lines are not sorted and unique")
        for anchor in self.anchors:
            if anchor.seq >= self.seq:
                raise FormatError(
                    f"archive head {self.seq} states an anchor of head {anchor.seq}, which is "
                    "not an earlier head"
                )

    @property
    def archive(self) -> str:
        return self.origin[: -len(HEAD_MARKER)]

    def body(self) -> bytes:
        lines = [
            self.origin,
            str(self.seq),
            _b64(self.prev),
            *(c.line() for c in self.chains),
            *(a.line() for a in self.anchors),
        ]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    def body_hash(self) -> bytes:
        """SHA-256 of the note text: what the next head's ``prev`` line holds."""
        return hashlib.sha256(self.body()).digest()

    def chain(self, chain_id: str) -> ChainHead | None:
        for chain in self.chains:
            if chain.chain_id == chain_id:
                return chain
        return None

    def anchored(self, kind: str) -> list[AnchorLine]:
        return [anchor for anchor in self.anchors if anchor.kind == kind]

    @classmethod
    def build(
        cls,
        archive_name: str,
        seq: int,
        prev: bytes,
        chains: Iterable[ChainHead],
        anchors: Iterable[AnchorLine] = (),
    ) -> ArchiveHead:
        ordered = tuple(sorted(chains, key=lambda c: c.chain_id.encode()))
        lines = tuple(sorted(set(anchors), key=lambda a: a.line().encode()))
        return cls(head_origin(archive_name), seq, prev, ordered, lines)

    @classmethod
    def parse(cls, body: bytes) -> ArchiveHead:
        """Parse a head's note text strictly; :class:`FormatError` if it is not one."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("archive head is not valid UTF-8") from None
        if not text.endswith("\n"):
            raise FormatError("archive head text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("an archive head has an origin, a seq and a previous-hash line")
        origin, seq_line, prev_line, *chain_lines = lines
        chains = []
        anchors = []
        for line in chain_lines:
            if line.startswith(_ANCHOR_PREFIX):
                anchors.append(AnchorLine.parse(line))
                continue
            if anchors:
                raise FormatError("archive head chain lines must come before its anchor lines")
            parts = line.split(" ")
            if len(parts) != 3:
                raise FormatError(f"archive head chain line {line[:60]!r} is not 'id size root'")
            chain_id, size, root = parts
            chains.append(
                ChainHead(chain_id, _number(size, "size"), _hash32(root, f"root of {chain_id}"))
            )
        head = cls(
            origin,
            _number(seq_line, "seq"),
            _hash32(prev_line, "previous hash"),
            tuple(chains),
            tuple(anchors),
        )
        if head.body() != body:
            raise FormatError("archive head text is not in canonical form")
        return head


def sign_head(head: ArchiveHead, signers: Sequence[Signer]) -> bytes:
    return sign_note(head.body(), signers)


def open_head(
    note: bytes, trust: TrustStore, *, archive_name: str | None = None
) -> tuple[ArchiveHead, list[str]]:
    """Verify a signed archive head; return it and the names of the trusted keys that signed.

    With ``archive_name``, the origin must be that archive's: a head of another archive signed by
    the same key proves nothing about this one.
    """
    body, signers = open_note(note, trust)
    head = ArchiveHead.parse(body)
    if archive_name is not None and head.origin != head_origin(archive_name):
        raise SignatureError(
            f"archive head is signed for origin {head.origin!r}, expected "
            f"{head_origin(archive_name)!r}"
        )
    return head, signers
