"""RFC 6962 Merkle tree against the published vectors, and proofs that must not verify."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.errors import FormatError, ProofError
from coexarchive.export.verify_bundle.proofs import ProofChecker  # the fold's second caller
from coexarchive.seal.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"
RFC = json.loads((VECTORS / "rfc6962.json").read_text(encoding="utf-8"))
LEAVES = [leaf_hash(bytes.fromhex(data)) for data in RFC["leaves_hex"]]
ROOTS = [bytes.fromhex(root) for root in RFC["roots_hex"]]
TREE = MerkleTree(LEAVES)
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT
    assert MerkleTree([]).root() == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT


def test_hash_prefixes() -> None:
    assert leaf_hash(b"").hex() == RFC["roots_hex"][0]
    left, right = LEAVES[0], LEAVES[1]
    assert node_hash(left, right) == ROOTS[1]


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert root_from_leaves(LEAVES[:size]) == ROOTS[size - 1]
    assert TREE.root(size) == ROOTS[size - 1]
    assert MerkleTree(LEAVES[:size]).root() == ROOTS[size - 1]
    assert Frontier().extend(LEAVES[:size]).root() == ROOTS[size - 1]


@pytest.mark.parametrize(
    "vector", RFC["inclusion_proofs"], ids=lambda v: f"{v['index']}/{v['size']}"
)
def test_published_inclusion_proofs(vector: dict[str, Any]) -> None:
    index, size, proof = vector["index"], vector["size"], _hexes(vector["proof_hex"])
    assert TREE.inclusion_proof(index, size) == proof
    verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(
    "vector", RFC["consistency_proofs"], ids=lambda v: f"{v['old_size']}-{v['new_size']}"
)
def test_published_consistency_proofs(vector: dict[str, Any]) -> None:
    old, new, proof = vector["old_size"], vector["new_size"], _hexes(vector["proof_hex"])
    assert TREE.consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


def test_every_proof_in_small_trees_verifies() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(70)]
    tree = MerkleTree(leaves)
    for size in range(1, 70):
        root = tree.root(size)
        assert root == root_from_leaves(leaves[:size])
        for index in range(size):
            verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), root)
        for old in range(0, size + 1):
            proof = tree.consistency_proof(old, size)
            verify_consistency(old, size, tree.root(old), root, proof)


def _inclusion_probes(index: int, size: int) -> list[tuple[str, tuple[Any, ...]]]:
    proof = _hexes(next(v for v in RFC["inclusion_proofs"] if v["index"] == index)["proof_hex"])
    root, leaf = ROOTS[size - 1], LEAVES[index]
    probes = [
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("size / 2", (leaf, index, size // 2, proof, root)),
        ("wrong leaf", (LEAVES[(index + 1) % 8], index, size, proof, root)),
        ("short leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
        ("removed component", (leaf, index, size, proof[:-1], root)),
        ("inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)),
        ("reversed", (leaf, index, size, proof[::-1], root)),
    ]
    for position in range(len(proof)):
        flipped = list(proof)
        flipped[position] = bytes([flipped[position][0] ^ 8]) + flipped[position][1:]
        probes.append((f"bit flip in proof[{position}]", (leaf, index, size, flipped, root)))
    return probes


@pytest.mark.parametrize(
    ("description", "args"),
    [*_inclusion_probes(0, 8), *_inclusion_probes(5, 8), *_inclusion_probes(1, 5)],
)
def test_corrupted_inclusion_proofs_fail(description: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(*args)


@pytest.mark.parametrize(
    ("index", "size", "proof", "root"),
    [
        (0, 0, [], EMPTY_ROOT),
        (1, 1, [], LEAVES[0]),
        (2, 1, [], LEAVES[0]),
        (-1, 1, [], LEAVES[0]),
        (0, 1, [LEAVES[0]], LEAVES[0]),
        (0, 1, [], SOME_HASH),
        (0, 1, [], b""),
    ],
)
def test_degenerate_inclusion_cases_fail(
    index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], index, size, proof, root)


def test_single_leaf_tree_has_an_empty_proof() -> None:
    verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])


def _consistency_probes(old: int, new: int) -> list[tuple[str, tuple[Any, ...]]]:
    vector = next(
        v for v in RFC["consistency_proofs"] if (v["old_size"], v["new_size"]) == (old, new)
    )
    proof = _hexes(vector["proof_hex"])
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        ("old - 1", (old - 1, new, r1, r2, proof)),
        ("old + 1", (old + 1, new, r1, r2, proof)),
        ("old ^ 2", (old ^ 2, new, r1, r2, proof)),
        ("new * 2", (old, new * 2, r1, r2, proof)),
        ("new / 2", (old, new // 2, r1, r2, proof)),
        ("wrong old root", (old, new, SOME_HASH, r2, proof)),
        ("wrong new root", (old, new, r1, SOME_HASH, proof)),
        ("short root", (old, new, b"WrongRoot", r2, proof)),
        ("swapped roots", (old, new, r2, r1, proof)),
        ("empty proof", (old, new, r1, r2, [])),
        ("trailing garbage", (old, new, r1, r2, [*proof, b""])),
        ("trailing old root", (old, new, r1, r2, [*proof, r1])),
        ("trailing new root", (old, new, r1, r2, [*proof, r2])),
        ("preceding garbage", (old, new, r1, r2, [b"", *proof])),
        ("preceding old root", (old, new, r1, r2, [r1, *proof])),
        ("preceding new root", (old, new, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (old, new, r1, r2, [proof[0], *proof])),
        ("truncated", (old, new, r1, r2, proof[:-1])),
        ("sizes reversed", (new, old, r2, r1, proof)),
    ]
    for position in range(len(proof)):
        flipped = list(proof)
        flipped[position] = bytes([flipped[position][0] ^ 16]) + flipped[position][1:]
        probes.append((f"bit flip in proof[{position}]", (old, new, r1, r2, flipped)))
    return probes


@pytest.mark.parametrize(
    ("description", "args"),
    [
        *_consistency_probes(1, 8),
        *_consistency_probes(6, 8),
        *_consistency_probes(2, 5),
        *_consistency_probes(6, 7),
    ],
)
def test_corrupted_consistency_proofs_fail(description: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(ProofError):
        verify_consistency(*args)


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    for args in [
        (0, 5, SOME_HASH, ROOTS[4], []),  # the empty tree has exactly one root
        (0, 5, EMPTY_ROOT, ROOTS[4], [EMPTY_ROOT]),
        (3, 3, ROOTS[2], ROOTS[3], []),  # a fork: same size, two roots
        (3, 3, ROOTS[2], ROOTS[2], [ROOTS[2]]),
        (1, 0, ROOTS[0], EMPTY_ROOT, []),
        (1, 2, ROOTS[0], ROOTS[1], []),
    ]:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_frontier_appends_without_old_leaves() -> None:
    rng = random.Random(6962)
    leaves = [rng.randbytes(32) for _ in range(300)]
    frontier = Frontier()
    for count, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert len(frontier.hashes) == count.bit_count()
        if count % 37 == 0 or count < 20:
            assert frontier.root() == root_from_leaves(leaves[:count])
            resumed = Frontier.from_json(frontier.size, frontier.to_json())
            assert resumed == frontier
            assert resumed.copy().extend(leaves[count:]).root() == root_from_leaves(leaves)


def test_frontier_copy_is_independent() -> None:
    frontier = Frontier().extend(LEAVES[:3])
    copy = frontier.copy()
    copy.append(LEAVES[3])
    assert frontier.size == 3
    assert copy.root() == ROOTS[3]


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (3, ["AAAA"]),
        (1, ["not base64!"]),
        (1, ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="[:-4] + "AA=="]),
        (-1, []),
        (2, [EMPTY_ROOT.hex()]),
    ],
)
def test_malformed_frontier_json_is_refused(size: int, hashes: list[str]) -> None:
    with pytest.raises(FormatError):
        Frontier.from_json(size, hashes)


def test_frontier_constructor_checks_shape() -> None:
    with pytest.raises(ValueError, match="hashes"):
        Frontier(3, [EMPTY_ROOT])
    with pytest.raises(ValueError, match="32 bytes"):
        Frontier(1, [b"short"])
    with pytest.raises(ValueError, match="32 bytes"):
        Frontier().append(b"short")


def test_tree_rejects_out_of_range_requests() -> None:
    with pytest.raises(ValueError, match="outside"):
        TREE.root(9)
    with pytest.raises(ValueError, match="outside"):
        TREE.inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="outside"):
        TREE.consistency_proof(5, 4)


# --- one fold: the archive's check and the evidence-bundle verifier's agree -----------------


def _archive_accepts(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError:
        return False
    return True


def _bundle_accepts(
    checker: ProofChecker, leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> bool:
    lines = [b"c2sp.org/tlog-proof@v1", b"index %d" % index]
    lines += [base64.b64encode(sibling) for sibling in proof]
    return checker.fold("chain", leaf, index, size, lines, root) is None


@pytest.mark.parametrize(
    "vector", RFC["inclusion_proofs"], ids=lambda v: f"{v['index']}/{v['size']}"
)
def test_both_folds_accept_the_published_proofs_and_refuse_each_altered_hash(
    vector: dict[str, Any],
) -> None:
    index, size, proof = vector["index"], vector["size"], _hexes(vector["proof_hex"])
    leaf, root = LEAVES[index], ROOTS[size - 1]
    assert _archive_accepts(leaf, index, size, proof, root)
    assert _bundle_accepts(ProofChecker(), leaf, index, size, proof, root)
    for position in range(len(proof)):
        altered = list(proof)
        altered[position] = bytes([altered[position][0] ^ 1]) + altered[position][1:]
        assert not _archive_accepts(leaf, index, size, altered, root)
        assert not _bundle_accepts(ProofChecker(), leaf, index, size, altered, root)


_MUTATIONS = ("none", "flip", "drop", "extend", "index", "size", "leaf")


@st.composite
def _proofs_of_a_tree(draw: st.DrawFn) -> tuple[int, list[tuple[int, str, int]]]:
    size = draw(st.integers(min_value=1, max_value=70))
    picks = st.tuples(
        st.integers(min_value=0, max_value=size - 1),
        st.sampled_from(_MUTATIONS),
        st.integers(min_value=0, max_value=10),
    )
    return size, draw(st.lists(picks, min_size=1, max_size=40))


def _mutated(
    tree: MerkleTree, leaves: list[bytes], size: int, index: int, mutation: str, at: int
) -> tuple[bytes, int, int, list[bytes]]:
    leaf, proof = leaves[index], tree.inclusion_proof(index, size)
    if mutation == "flip" and proof:
        proof[at % len(proof)] = (
            bytes([proof[at % len(proof)][0] ^ 0x80]) + proof[at % len(proof)][1:]
        )
    elif mutation == "drop" and proof:
        proof.pop()
    elif mutation == "extend":
        proof.append(SOME_HASH)
    elif mutation == "index":
        index = (index + 1 + at) % size
    elif mutation == "size" and size < tree.size:
        size += 1
    elif mutation == "leaf":
        leaf = SOME_HASH
    return leaf, index, size, proof


@settings(max_examples=150, deadline=None)
@given(_proofs_of_a_tree())
def test_both_folds_decide_alike_on_random_trees(
    case: tuple[int, list[tuple[int, str, int]]],
) -> None:
    size, picks = case
    leaves = [leaf_hash(b"leaf %d" % i) for i in range(size + 1)]
    tree = MerkleTree(leaves)
    root = tree.root(size)
    shared = ProofChecker()  # remembers folded paths between proofs, as for a whole bundle
    for index, mutation, at in picks:
        leaf, used_index, used_size, proof = _mutated(tree, leaves, size, index, mutation, at)
        used_root = tree.root(used_size)
        archive = _archive_accepts(leaf, used_index, used_size, proof, used_root)
        assert (
            _bundle_accepts(ProofChecker(), leaf, used_index, used_size, proof, used_root)
            == archive
        )
        if used_size == size:
            assert _bundle_accepts(shared, leaf, used_index, size, proof, root) == archive
        if mutation == "none":
            assert archive
