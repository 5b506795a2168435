"""RFC 6962 / RFC 9162 Merkle tree: hashes, roots, proofs and their verification.

Bit-identical to ``golang.org/x/mod/sumdb/tlog`` and ``transparency-dev/merkle``: leaves are
``SHA-256(0x00 || data)``, interior nodes ``SHA-256(0x01 || left || right)``, a tree of ``n`` leaves
splits at the largest power of two below ``n`` and no node is ever duplicated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator, Sequence

from coexarchive.errors import FormatError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "MerkleTree",
    "inclusion_fold",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return _sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of ``leaf_hashes``; :data:`EMPTY_ROOT` for none."""
    return Frontier().extend(leaf_hashes).root()


class Frontier:
    """A compact range from leaf 0: the roots of the perfect subtrees covering ``size`` leaves.

    ``hashes`` lists those roots left to right, largest first (one per set bit of ``size``).
    Appending needs only the frontier, never earlier leaves, so a chain can be resumed from
    the frontier stored in its last manifest.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"frontier size {size} is negative")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a frontier of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be 32 bytes each")
        self.size = size
        self.hashes = [bytes(h) for h in hashes]

    def __repr__(self) -> str:
        return f"Frontier(size={self.size}, root={self.root().hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self.size == other.size and self.hashes == other.hashes

    __hash__ = None  # type: ignore[assignment]

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("leaf hashes must be 32 bytes")
        self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> Frontier:
        """Add leaf hashes in order; returns ``self``."""
        hashes = self.hashes
        size = self.size
        sha256 = _sha256
        node = _NODE
        for hashed in leaf_hashes:
            carry = size
            while carry & 1:
                hashed = sha256(node + hashes.pop() + hashed).digest()
                carry >>= 1
            hashes.append(hashed)
            size += 1
        self.size = size
        return self

    def root(self) -> bytes:
        """The RFC 6962 root of the ``size`` leaves covered."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def to_json(self) -> list[str]:
        """The hashes as standard base64 strings (the size travels alongside)."""
        return [base64.b64encode(h).decode("ascii") for h in self.hashes]

    @classmethod
    def from_json(cls, size: int, hashes: Sequence[str]) -> Frontier:
        """Rebuild a frontier from :meth:`to_json` output; :class:`FormatError` if malformed."""
        if type(size) is not int or size < 0:
            raise FormatError(f"frontier size {size!r} is not a non-negative integer")
        decoded = [_b64_hash(text, "frontier hash") for text in hashes]
        try:
            return cls(size, decoded)
        except ValueError as exc:
            raise FormatError(str(exc)) from None


def _b64_hash(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError):
        raise FormatError(f"{what} {text!r} is not standard base64") from None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} {text!r} is not the base64 of 32 bytes")
    return raw


class MerkleTree:
    """An in-memory tree over fixed leaf hashes with every complete level cached.

    Level ``k`` holds the roots of the aligned perfect subtrees of ``2**k`` leaves, stored as one
    ``bytes`` per level (32 bytes per node), so roots and proofs for any prefix of the leaves
    cost O(log n) hash reads and at most O(log n) hash computations.
    """

    __slots__ = ("_levels", "size")

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        if any(len(h) != HASH_SIZE for h in leaf_hashes):
            raise ValueError("leaf hashes must be 32 bytes each")
        self.size = len(leaf_hashes)
        level = b"".join(leaf_hashes)
        levels = [level]
        sha256 = _sha256
        node = _NODE
        while len(level) >= 2 * HASH_SIZE:
            pairs = len(level) // (2 * HASH_SIZE)
            view = memoryview(level)
            level = b"".join(
                [sha256(node + view[i : i + 64]).digest() for i in range(0, pairs * 64, 64)]
            )
            levels.append(level)
        self._levels = levels

    def _perfect(self, start: int, height: int) -> bytes:
        offset = (start >> height) * HASH_SIZE
        return self._levels[height][offset : offset + HASH_SIZE]

    def _hash(self, start: int, end: int) -> bytes:
        """MTH of leaves ``start..end`` where ``start`` is aligned as in RFC 6962's recursion."""
        width = end - start
        if width & (width - 1) == 0:
            return self._perfect(start, width.bit_length() - 1)
        split = _split(width)
        left = self._perfect(start, split.bit_length() - 1)
        return node_hash(left, self._hash(start + split, end))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all leaves if ``None``)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            split = _split(end - start)
            if index < start + split:
                proof.append(self._hash(start + split, end))
                end = start + split
            else:
                proof.append(self._perfect(start, split.bit_length() - 1))
                start += split
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 6962 proof that the first ``old_size`` leaves prefix the first ``new_size``."""
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is outside 0..{new_size}")
        if old_size == 0 or old_size == new_size:
            return []
        proof: list[bytes] = []
        start, end, whole = 0, new_size, True
        # SUBPROOF(m, D[start:end], whole) from RFC 6962 §2.1.2, unrolled.
        while True:
            width, m = end - start, old_size - start
            if m == width:
                if not whole:
                    proof.append(self._hash(start, end))
                break
            split = _split(width)
            if m <= split:
                proof.append(self._hash(start + split, end))
                end = start + split
            else:
                proof.append(self._perfect(start, split.bit_length() - 1))
                start += split
                whole = False
        proof.reverse()
        return proof

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside 0..{self.size}")


def inclusion_fold(
    leaf_hash: bytes, index: int, size: int, path: Iterable[bytes]
) -> Iterator[tuple[int, int, bytes]]:
    """The states ``(fn, sn, hash)`` of folding an inclusion proof (RFC 9162 §2.1.3.2).

    The one fold of the project: :func:`verify_inclusion` and the evidence-bundle verifier both
    run it. It yields the state before each hash of ``path`` is folded in and once after the last
    (``len(path) + 1`` states); the proof holds exactly when the last state has ``sn == 0`` and
    its hash is the root. ``path`` is read lazily, one hash per state, so a caller may stop early
    (as the bundle verifier does where a proof joins one already folded to the root). Raises
    :class:`ProofError` when ``path`` is longer than the tree is deep. The caller checks that
    ``0 <= index < size`` first.
    """
    fn, sn, result = index, size - 1, leaf_hash
    siblings = iter(path)
    while True:
        yield fn, sn, result
        sibling = next(siblings, None)
        if sibling is None:
            return
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} is too long")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise :class:`ProofError` if it fails."""
    # 1. The index must lie inside the tree and every hash must be a SHA-256 digest.
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes(leaf_hash, root, *proof)
    # 2. Fold the path from the leaf upwards, taking each sibling from the side the index says.
    state = (index, size - 1, leaf_hash)
    for state in inclusion_fold(leaf_hash, index, size, proof):  # noqa: B007 (the last one)
        pass
    _fn, sn, result = state
    # 3. The path must end at the root, with no level left over.
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} is too short")
    if result != root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not reach the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise :class:`ProofError` if it fails."""
    # 1. Sizes must not go backwards and every hash must be a SHA-256 digest.
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree size went from {old_size} to {new_size}")
    _check_hashes(old_root, new_root, *proof)
    # 2. Trivial cases: an empty old tree, or the same size (roots must then be equal).
    if old_size == 0:
        if old_root != EMPTY_ROOT:
            raise ProofError("the root of an empty tree must be SHA-256 of nothing")
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {old_size} to {new_size}")
    # 3. A perfect old tree is its own first node.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 4. Rebuild both roots from the path at once.
    old_result = new_result = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof {old_size}->{new_size} is too long")
        if fn & 1 or fn == sn:
            old_result = node_hash(node, old_result)
            new_result = node_hash(node, new_result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_result = node_hash(new_result, node)
        fn >>= 1
        sn >>= 1
    # 5. Both roots must match, with no level left over.
    if sn != 0:
        raise ProofError(f"consistency proof {old_size}->{new_size} is too short")
    if old_result != old_root:
        raise ProofError(f"consistency proof {old_size}->{new_size} does not match the old root")
    if new_result != new_root:
        raise ProofError(f"consistency proof {old_size}->{new_size} does not match the new root")


def _check_hashes(*hashes: bytes) -> None:
    for hashed in hashes:
        if len(hashed) != HASH_SIZE:
            raise ProofError(f"a hash of {len(hashed)} bytes where SHA-256 gives 32")
