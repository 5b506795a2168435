"""Sealing: canonical bytes, RFC 6962 Merkle log, hash chain, signed checkpoints, keys.

Normative description: ``schemas/SEALING.md``.
"""

from coexarchive.seal.canonical import canonical_bytes, reference_canonical_bytes
from coexarchive.seal.chain import (
    chain_step,
    genesis,
    recompute_leaf_hashes,
    seal_records,
    sealed_object,
    verify_chain,
)
from coexarchive.seal.checkpoint import (
    Checkpoint,
    add_signatures,
    checkpoint_origin,
    open_checkpoint,
    open_note,
    sign_note,
)
from coexarchive.seal.keys import Ed25519Signer, Signer, TrustStore, Verifier, key_id
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

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "Ed25519Signer",
    "Frontier",
    "MerkleTree",
    "Signer",
    "TrustStore",
    "Verifier",
    "add_signatures",
    "canonical_bytes",
    "chain_step",
    "checkpoint_origin",
    "genesis",
    "key_id",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "recompute_leaf_hashes",
    "reference_canonical_bytes",
    "root_from_leaves",
    "seal_records",
    "sealed_object",
    "sign_note",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]
