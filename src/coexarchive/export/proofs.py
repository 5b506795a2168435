"""Inclusion proofs for exported records, as C2SP ``tlog-proof`` texts.

A proof is (``c2sp.org/tlog-proof@v1``)::

    c2sp.org/tlog-proof@v1
    index <leaf index>
    <base64 hash>            one per line, from the leaf's sibling up to the root's child
    ...
    <blank line>
    <the signed checkpoint note, verbatim>

A bundle stores each proof *up to and including the blank line* (its "head") and the chain's
checkpoint note once, in its own file: head followed by note is the complete ``tlog-proof``.

Before issuing any proof for a chain, :func:`chain_tree` rebuilds the chain's RFC 6962 tree from
every segment's stored leaf hashes and requires its root to equal the root the checkpoint signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from coexarchive.errors import FormatError, ProofError
from coexarchive.query.views import ArchiveCatalog
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import MerkleTree
from coexarchive.segments import CHAIN_HASH_EXTENSION, Manifest, b64

__all__ = [
    "TLOG_PROOF_HEADER",
    "ChainTree",
    "TlogProof",
    "chain_tree",
    "decode_proof_hash",
    "encode_tlog_proof",
    "parse_tlog_proof",
    "split_tlog_proof",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_HEADER = TLOG_PROOF_HEADER.encode() + b"\n"


@dataclass(frozen=True)
class TlogProof:
    """A parsed ``tlog-proof``: leaf index, audit path and the checkpoint note it proves to."""

    index: int
    hashes: tuple[bytes, ...]
    note: bytes
    extra: bytes | None = None


def encode_tlog_proof(index: int, hashes: Sequence[str], note: bytes) -> bytes:
    """A ``tlog-proof`` from base64 hash strings (callers cache their encodings)."""
    lines = "".join(h + "\n" for h in hashes)
    return b"%sindex %d\n%s\n%s" % (_HEADER, index, lines.encode("ascii"), note)


def split_tlog_proof(text: bytes) -> tuple[bytes, bytes]:
    """A ``tlog-proof``'s head (through its blank line) and its checkpoint note."""
    head, blank, note = text.partition(b"\n\n")
    if not blank:
        raise FormatError("tlog-proof has no blank line before its checkpoint")
    return head + blank, note


def parse_tlog_proof(text: bytes) -> TlogProof:
    """Parse a ``tlog-proof`` strictly; :class:`FormatError` names what is wrong."""
    head, blank, note = text.partition(b"\n\n")
    if not blank:
        raise FormatError("tlog-proof has no blank line before its checkpoint")
    lines = head.split(b"\n")
    if lines[0] != TLOG_PROOF_HEADER.encode():
        raise FormatError(f"tlog-proof does not start with {TLOG_PROOF_HEADER!r}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith(b"extra "):
        extra = _b64(rest.pop(0)[6:], "extra data", size=None)
    if not rest or not rest[0].startswith(b"index "):
        raise FormatError("tlog-proof has no index line")
    digits = rest[0][6:]
    if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
        raise FormatError(f"tlog-proof index {digits!r} is not a canonical decimal")
    hashes = tuple(_b64(line, "proof hash", size=32) for line in rest[1:])
    return TlogProof(int(digits), hashes, note, extra)


def decode_proof_hash(line: bytes) -> bytes:
    """One audit-path line: the canonical standard base64 of a 32-byte hash."""
    return _b64(line, "proof hash", size=32)


def _b64(text: bytes, what: str, *, size: int | None) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise FormatError(f"tlog-proof {what} {text[:60]!r} is not standard base64") from None
    if (size is not None and len(raw) != size) or base64.b64encode(raw) != text:
        raise FormatError(f"tlog-proof {what} {text[:60]!r} is not the base64 of a hash")
    return raw


class _Levels:
    """Every complete level of an RFC 6962 tree, plus the partial right-edge nodes.

    A leaf's audit path, bottom-up: at level ``k`` its node is ``j = index >> k`` and its
    sibling ``j ^ 1``; that sibling is a complete node if it lies below ``size >> k``, the
    partial node covering ``[(size >> k) << k, size)`` if it is exactly ``size >> k`` and that
    range is not empty, and absent otherwise (the node is carried up unchanged).
    """

    def __init__(self, leaves: bytes, size: int) -> None:
        self.size = size
        levels = [leaves]
        level = leaves
        sha256 = hashlib.sha256
        while len(level) >= 64:
            view = memoryview(level)
            pairs = len(level) // 64
            level = b"".join(
                [sha256(b"\x01" + view[i : i + 64]).digest() for i in range(0, pairs * 64, 64)]
            )
            levels.append(level)
        self.levels = levels
        # partial[k]: MTH of the incomplete node at level k; None when 2**k divides size.
        partial: list[bytes | None] = [None]
        for k in range(1, len(levels) + 1):
            below = partial[k - 1]
            if size >> (k - 1) & 1:
                index = (size >> (k - 1)) - 1
                node = levels[k - 1][index * 32 : index * 32 + 32]
                below = node if below is None else hashlib.sha256(b"\x01" + node + below).digest()
            partial.append(below)
        self.partial = partial

    def root(self) -> bytes:
        top = self.partial[len(self.levels)]
        return top if top is not None else self.levels[-1][:32]

    def path(self, index: int) -> list[tuple[int, int]]:
        """(level, node) pairs of the audit path; node -1 is the level's partial node."""
        out = []
        size = self.size
        for k in range(len(self.levels)):
            sibling = (index >> k) ^ 1
            complete = size >> k
            if sibling < complete:
                out.append((k, sibling))
            elif sibling == complete and self.partial[k] is not None:
                out.append((k, -1))
        return out

    def node(self, level: int, index: int) -> bytes:
        if index < 0:
            partial = self.partial[level]
            assert partial is not None
            return partial
        return self.levels[level][index * 32 : index * 32 + 32]

    def sibling(self, level: int, node: int) -> bytes | None:
        """The audit-path hash at ``level`` for the node ``node`` of that level, if any."""
        sibling = node ^ 1
        complete = self.size >> level
        if sibling < complete:
            return self.levels[level][sibling * 32 : sibling * 32 + 32]
        if sibling == complete:
            return self.partial[level]
        return None


@dataclass
class ChainTree:
    """One chain's tree at a signed checkpoint, ready to issue proofs."""

    chain_id: str
    manifest: Manifest  # the segment whose checkpoint the proofs lead to
    note: bytes
    checkpoint: Checkpoint
    levels: _Levels
    _encoded: dict[tuple[int, int], str]

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def proof_hashes(self, index: int) -> list[str]:
        """The base64 audit path of ``index`` (upper nodes repeat: their encodings are cached)."""
        encoded = self._encoded
        out = []
        for slot in self.levels.path(index):
            text = encoded.get(slot)
            if text is None:
                text = encoded[slot] = b64(self.levels.node(*slot))
            out.append(text)
        return out

    def tlog_proof(self, index: int) -> bytes:
        return encode_tlog_proof(index, self.proof_hashes(index), self.note)

    def proof_heads(self, indexes: Iterable[int]) -> list[bytes]:
        """Each index's ``tlog-proof`` head: the proof without its checkpoint note.

        Neighbouring leaves share the upper part of their audit paths. Each level remembers the
        last node it encoded together with the text of the path from there up, so for indexes in
        increasing order every node is encoded once and each proof is a single concatenation.
        The result does not depend on the order; only the amount of sharing does.
        """
        levels = self.levels
        depth = len(levels.levels)
        frontier: list[tuple[int, bytes]] = [(-1, b"")] * (depth + 1)
        frontier[depth] = (0, b"")
        heads = []
        for index in indexes:
            if not 0 <= index < levels.size:
                raise ProofError(f"chain {self.chain_id}: no leaf {index} in a tree of {self.size}")
            climbed = []
            level, node = 0, index
            while frontier[level][0] != node:
                climbed.append((level, node))
                level, node = level + 1, node >> 1
            tail = frontier[level][1]
            for level, node in reversed(climbed):
                sibling = levels.sibling(level, node)
                if sibling is not None:
                    tail = b"%s\n%s" % (base64.b64encode(sibling), tail)
                frontier[level] = (node, tail)
            heads.append(b"%sindex %d\n%s\n" % (_HEADER, index, tail))
        return heads


def chain_tree(
    catalog: ArchiveCatalog,
    chain_id: str,
    trust: TrustStore,
    *,
    size: int | None = None,
) -> ChainTree:
    """The chain's tree at its latest checkpoint (or the one at ``size``), checked end to end.

    Reads the ``seq`` and ``leaf_hash`` columns of every segment up to that checkpoint, requires
    them to run 0..size-1, opens the signed checkpoint against ``trust`` with the chain's origin,
    and requires the rebuilt root (and chain head) to be the ones signed.
    """
    manifests = catalog.manifests(chain_id)
    if not manifests:
        raise FormatError(f"chain {chain_id!r} has no sealed segments in this archive")
    if size is not None:
        chosen = [m for m in manifests if m.tree_size == size]
        if not chosen:
            raise FormatError(f"chain {chain_id!r} has no checkpoint at tree size {size}")
        head = chosen[0]
    else:
        head = manifests[-1]
    covered = [m for m in manifests if m.last_seq < head.tree_size]
    # Disposed segments' content is gone, their leaf hashes kept: the tree is whole.
    table = catalog.leaf_table(covered)
    table = table.sort_by("seq")
    seqs = table.column("seq").to_numpy()
    if len(seqs) != head.tree_size or not (seqs == np.arange(len(seqs))).all():
        raise ProofError(
            f"chain {chain_id}: segments hold {table.num_rows} leaves, not seq 0..{head.last_seq}"
        )
    leaves = table.column("leaf_hash").to_pylist()
    levels = _Levels(b"".join(leaves), len(leaves))
    # Two independent constructions of the root must agree before any proof is issued.
    if levels.root() != MerkleTree(leaves).root():
        raise ProofError(f"chain {chain_id}: proof levels disagree with the reference tree")
    note = catalog.store.get(head.checkpoint_key)
    checkpoint = open_checkpoint(note, trust, origin=checkpoint_origin(head.archive, chain_id))
    if checkpoint.size != head.tree_size or checkpoint.root_hash != levels.root():
        raise ProofError(
            f"chain {chain_id}: the leaves stored in the archive do not rebuild the root signed "
            f"at size {checkpoint.size}; refusing to issue proofs (run `coexarchive verify`)"
        )
    head_line = f"{CHAIN_HASH_EXTENSION} {b64(head.chain_hash)}"
    if head_line not in checkpoint.extensions:
        raise ProofError(f"chain {chain_id}: checkpoint {head.tree_size} binds another chain head")
    return ChainTree(chain_id, head, note, checkpoint, levels, {})
