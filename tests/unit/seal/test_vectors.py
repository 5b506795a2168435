"""The committed vectors match the code, and every attack vector fails with its named error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from coexarchive import errors
from coexarchive.seal.canonical import canonical_bytes
from coexarchive.seal.chain import genesis, verify_chain
from coexarchive.seal.checkpoint import open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import (
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"
NEGATIVE = sorted((VECTORS / "negative").glob("*.json"))
ATTACKS = {
    "reordered",
    "tail_truncated",
    "leaf_edited",
    "proof_truncated",
    "proof_extended",
    "wrong_index",
    "forked_checkpoint",
    "sig_wrong_key",
    "sig_bitflip",
    "origin_mismatch",
    "size_leading_zero",
    "note_no_signature",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.generate(tmp_path)
    assert written
    for path in written:
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (VECTORS / relative).read_bytes(), relative


def test_every_vector_file_has_provenance() -> None:
    for path in VECTORS.rglob("*.json"):
        assert _load(path)["provenance"], path


def test_every_named_attack_has_a_vector() -> None:
    assert {_load(path)["attack"] for path in NEGATIVE} == ATTACKS


def test_positive_record_vectors() -> None:
    data = _load(VECTORS / "records.json")
    trust = TrustStore.parse(data["checkpoint"]["verifier_key"])
    prev = genesis(data["chain_id"])
    assert prev.hex() == data["genesis_hex"]
    leaves = []
    for entry in data["records"]:
        canonical = canonical_bytes(entry["sealed_fields"])
        assert canonical.hex() == entry["canonical_hex"]
        assert canonical.decode("utf-8") == entry["canonical_utf8"]
        leaf = leaf_hash(canonical)
        assert leaf.hex() == entry["leaf_hash_hex"]
        leaves.append(leaf)
    verify_chain(
        leaves, _hexes([e["chain_hash_hex"] for e in data["records"]]), prev_chain_hash=prev
    )
    for size, root in data["roots_hex"].items():
        assert root_from_leaves(leaves[: int(size)]).hex() == root
    for proof in data["inclusion_proofs"]:
        root = bytes.fromhex(data["roots_hex"][str(proof["size"])])
        index = proof["index"]
        verify_inclusion(leaves[index], index, proof["size"], _hexes(proof["proof_hex"]), root)
    for proof in data["consistency_proofs"]:
        old, new = proof["old_size"], proof["new_size"]
        roots = data["roots_hex"]
        verify_consistency(
            old,
            new,
            bytes.fromhex(roots[str(old)]),
            bytes.fromhex(roots[str(new)]),
            _hexes(proof["proof_hex"]),
        )
    checkpoint = open_checkpoint(
        data["checkpoint"]["note"].encode(), trust, origin=data["checkpoint"]["origin"]
    )
    assert checkpoint.size == len(leaves)
    assert checkpoint.root_hash == root_from_leaves(leaves)


def _check_log(vector: dict[str, Any]) -> None:
    # 1. The checkpoint must be validly signed for this chain.
    trust = TrustStore.parse(vector["verifier_key"])
    checkpoint = open_checkpoint(vector["checkpoint"].encode(), trust, origin=vector["origin"])
    # 2. Every stored leaf hash must be the hash of the stored canonical bytes.
    leaves = []
    for seq, row in enumerate(vector["records"]):
        leaf = leaf_hash(bytes.fromhex(row["canonical_hex"]))
        if leaf.hex() != row["leaf_hash_hex"]:
            raise errors.ProofError(f"leaf hash of seq {seq} does not match its record")
        leaves.append(leaf)
    # 3. The chain must link from genesis.
    chain = _hexes([row["chain_hash_hex"] for row in vector["records"]])
    verify_chain(leaves, chain, prev_chain_hash=genesis(vector["chain_id"]))
    # 4. The leaves must be exactly the tree the checkpoint signs.
    if len(leaves) != checkpoint.size:
        raise errors.ProofError(f"{len(leaves)} records but the checkpoint signs {checkpoint.size}")
    if root_from_leaves(leaves) != checkpoint.root_hash:
        raise errors.ProofError("records do not hash to the signed root")


def _check_inclusion(vector: dict[str, Any]) -> None:
    verify_inclusion(
        bytes.fromhex(vector["leaf_hash_hex"]),
        vector["index"],
        vector["size"],
        _hexes(vector["proof_hex"]),
        bytes.fromhex(vector["root_hex"]),
    )


def _check_checkpoints(vector: dict[str, Any]) -> None:
    trust = TrustStore.parse(vector["verifier_key"])
    opened = [
        open_checkpoint(note.encode(), trust, origin=vector["origin"]) for note in vector["notes"]
    ]
    # Two checkpoints of one log must be consistent; same size means same root.
    for first in opened:
        for second in opened:
            if first.size == second.size:
                verify_consistency(first.size, second.size, first.root_hash, second.root_hash, [])


CHECKS = {"log": _check_log, "inclusion": _check_inclusion, "checkpoint": _check_checkpoints}


@pytest.mark.parametrize("path", NEGATIVE, ids=lambda p: p.stem)
def test_attack_fails_with_the_named_error(path: Path) -> None:
    vector = _load(path)
    expected = getattr(errors, vector["expected_error"])
    assert issubclass(expected, errors.CoexArchiveError)
    with pytest.raises(expected) as caught:
        CHECKS[vector["check"]](vector)
    assert type(caught.value) is expected


def test_log_check_accepts_the_untampered_log() -> None:
    vector = _load(VECTORS / "negative" / "tail_truncated.json")
    records = _load(VECTORS / "records.json")["records"]
    vector["records"] = [
        {key: row[key] for key in ("canonical_hex", "leaf_hash_hex", "chain_hash_hex")}
        for row in records
    ]
    _check_log(vector)
