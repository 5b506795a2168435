"""Verify-on-query: prove that the rows a query returned are sealed, unaltered records.

The result must carry ``chain_id`` and ``seq`` (every view and row-level report does). Per chain
touched, in numbered steps:

1. ``checkpoint``  the chain's latest checkpoint opens against the trust file, names the chain,
                   and matches its manifest (size, root).
2. ``tree``        the stored leaf hashes of the whole chain (one column) are contiguous from seq 0
                   and their RFC 6962 root equals the signed root: every stored leaf is now
                   authenticated by the signature.
3. ``rows``        each returned row is re-read by ``seq`` from its segment, its leaf hash is
                   recomputed from its sealed columns and must equal the authenticated leaf.
4. ``inclusion``   an RFC 6962 inclusion proof for each row is built and checked against the
                   signed root.
5. ``range``       (with a time window) every segment overlapping the window is re-hashed whole:
                   seq contiguous, leaves recompute, the hash chain links and the Merkle root
                   matches, so no record inside the window was left out of what was searched.

Failures raise :class:`~coexarchive.errors.VerificationError` naming chain, seq and record id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from coexarchive.errors import (
    CoexArchiveError,
    Failure,
    FormatError,
    ObjectMissingError,
    VerificationError,
)
from coexarchive.query.views import ACCESS_LOG_CHAIN, ArchiveCatalog, Window
from coexarchive.records import RECORD_SCHEMA
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import Frontier, MerkleTree, verify_inclusion
from coexarchive.segments import ChainState, Manifest
from coexarchive.store.base import sha256_hex
from coexarchive.verify import check_segment

__all__ = ["RowVerification", "verify_rows"]


@dataclass
class RowVerification:
    """What was proven: rows, chains, checkpoints and (for a window) the segments re-hashed."""

    rows: int = 0
    chains: dict[str, int] = field(default_factory=dict)  # chain → signed tree size used
    segments_rehashed: int = 0
    records_rehashed: int = 0
    window: Window | None = None

    def summary(self) -> str:
        chains = ", ".join(f"{c} (checkpoint size {n})" for c, n in sorted(self.chains.items()))
        text = (
            f"verified {self.rows} row(s): leaf hash recomputed from the sealed columns and "
            f"proven included in the signed checkpoint of chain {chains or '-'}"
        )
        if self.window is not None:
            text += (
                f"; time range complete: {self.segments_rehashed} segment(s), "
                f"{self.records_rehashed} record(s) re-hashed, seq contiguous and chained"
            )
        return text


def verify_rows(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    result: pa.Table,
    *,
    window: Window | None = None,
    chains: Sequence[str] | None = None,
) -> RowVerification:
    """Prove every row of ``result`` (steps in the module docstring); raise on any failure."""
    for column in ("chain_id", "seq"):
        if column not in result.column_names:
            raise FormatError(
                f"--verify needs the columns chain_id and seq in the result; add them to the "
                f"SELECT list (missing: {column})"
            )
    wanted: dict[str, set[int]] = defaultdict(set)
    for chain_id, seq in zip(
        result.column("chain_id").to_pylist(), result.column("seq").to_pylist(), strict=True
    ):
        if chain_id is not None and seq is not None:
            wanted[str(chain_id)].add(int(seq))
    outcome = RowVerification(window=window)
    failures: list[Failure] = []
    for chain_id, seqs in sorted(wanted.items()):
        _ChainProof(catalog, trust, chain_id, failures, outcome).prove(seqs)
    if window is not None:
        # Every chain in scope, not only those with rows: an empty answer must be complete too.
        scope = (
            chains if chains is not None else [c for c in catalog.chains() if c != ACCESS_LOG_CHAIN]
        )
        for chain_id in sorted(set(scope) | set(wanted)):
            _check_range(catalog, chain_id, window, failures, outcome)
    if failures:
        raise VerificationError(failures=failures)
    return outcome


class _ChainProof:
    def __init__(
        self,
        catalog: ArchiveCatalog,
        trust: TrustStore,
        chain_id: str,
        failures: list[Failure],
        outcome: RowVerification,
    ) -> None:
        self.catalog = catalog
        self.trust = trust
        self.chain_id = chain_id
        self.failures = failures
        self.outcome = outcome

    def fail(self, step: str, message: str, seq: int | None = None, key: str | None = None) -> None:
        self.failures.append(Failure(step, message, self.chain_id, key, seq))

    def prove(self, seqs: set[int]) -> None:
        manifests = self.catalog.manifests(self.chain_id)
        if not manifests:
            self.fail("checkpoint", "no committed segment for this chain", min(seqs))
            return
        size, root = self._checkpoint(manifests[-1])
        if root is None:
            self._unproven(seqs, "its chain's checkpoint does not verify")
            return
        leaves = self._tree(manifests, size, root)
        if leaves is None:
            self._unproven(seqs, "its chain's stored leaves do not match the signed root")
            return
        tree, stored = leaves
        self._rows(manifests, seqs, tree, stored, size, root)
        self.outcome.chains[self.chain_id] = size

    # Step 1: the latest checkpoint is signed by a trusted key and matches its manifest.
    def _checkpoint(self, last: Manifest) -> tuple[int, bytes | None]:
        try:
            note = self.catalog.store.get(last.checkpoint_key)
            checkpoint = open_checkpoint(
                note, self.trust, origin=checkpoint_origin(last.archive, self.chain_id)
            )
        except ObjectMissingError:
            self.fail("checkpoint", "latest segment has no checkpoint", key=last.checkpoint_key)
            return last.tree_size, None
        except CoexArchiveError as exc:
            self.fail("checkpoint", f"checkpoint does not verify: {exc}", key=last.checkpoint_key)
            return last.tree_size, None
        if checkpoint.size != last.tree_size or checkpoint.root_hash != last.root_hash:
            self.fail("checkpoint", "signed size or root differs from the manifest", key=last.key)
            return last.tree_size, None
        return checkpoint.size, checkpoint.root_hash

    # Step 2: the chain's stored leaves are contiguous and their root is the signed root.
    def _tree(
        self, manifests: Sequence[Manifest], size: int, root: bytes
    ) -> tuple[MerkleTree, list[bytes]] | None:
        try:
            table = self.catalog.dataset(manifests).to_table(columns=["seq", "leaf_hash"])
        except (OSError, pa.ArrowInvalid) as exc:
            self.fail(
                "tree",
                f"a segment's bytes differ from what its manifest records (altered?): {exc}",
            )
            return None
        table = table.sort_by("seq")
        seqs = table.column("seq").to_numpy()
        if not np.array_equal(seqs, np.arange(size, dtype=seqs.dtype)):
            self.fail(
                "tree",
                f"chain holds {len(seqs)} row(s) where its checkpoint vouches for "
                f"seq 0..{size - 1} "
                "(rows removed, added or renumbered)",
            )
            return None
        stored = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
        tree = MerkleTree(stored)
        if tree.root(size) != root:
            segment = self._first_bad_segment(manifests, stored)
            where = f" in seq {segment.first_seq}..{segment.last_seq}" if segment else ""
            self.fail(
                "tree",
                f"stored leaf hashes{where} do not produce the signed root (a row was rewritten "
                "with recomputed hashes, or reordered)",
                segment.first_seq if segment else None,
                segment.segment.key if segment else None,
            )
            return None
        return tree, stored

    @staticmethod
    def _first_bad_segment(
        manifests: Sequence[Manifest], stored: Sequence[bytes]
    ) -> Manifest | None:
        # Each manifest records the root after its segment; the first that disagrees is the culprit.
        frontier = Frontier()
        for manifest in manifests:
            frontier.extend(stored[manifest.first_seq : manifest.tree_size])
            if frontier.root() != manifest.root_hash:
                return manifest
        return None

    # Steps 3-4: each returned row recomputes to its authenticated leaf, with an inclusion proof.
    def _rows(
        self,
        manifests: Sequence[Manifest],
        seqs: set[int],
        tree: MerkleTree,
        stored: Sequence[bytes],
        size: int,
        root: bytes,
    ) -> None:
        for manifest in manifests:
            mine = {s for s in seqs if manifest.first_seq <= s <= manifest.last_seq}
            if not mine:
                continue
            rows = self.catalog.read_rows(manifest, mine, RECORD_SCHEMA.names)
            found = dict(zip(rows.column("seq").to_pylist(), range(rows.num_rows), strict=True))
            recomputed = recompute_leaf_hashes(rows)
            record_ids = rows.column("record_id").to_pylist()
            for seq in sorted(mine):
                index = found.get(seq)
                if index is None:
                    self.fail(
                        "rows", "returned row is not in its segment", seq, manifest.segment.key
                    )
                    continue
                label = f"record {record_ids[index]}"
                if recomputed[index] != stored[seq]:
                    self.fail(
                        "rows",
                        f"{label}: row content does not match its sealed leaf hash (field edited)",
                        seq,
                        manifest.segment.key,
                    )
                    continue
                try:
                    proof = tree.inclusion_proof(seq, size)
                    verify_inclusion(recomputed[index], seq, size, proof, root)
                except CoexArchiveError as exc:
                    self.fail("inclusion", f"{label}: {exc}", seq)
                    continue
                self.outcome.rows += 1
        unknown = {s for s in seqs if s >= size or s < 0}
        for seq in sorted(unknown):
            self.fail("rows", f"seq {seq} is beyond the signed tree of size {size}", seq)

    def _unproven(self, seqs: set[int], why: str) -> None:
        for seq in sorted(seqs)[:20]:
            self.fail("rows", f"returned row cannot be proven: {why}", seq)


# Step 5: every segment overlapping the window is complete, contiguous and chained.
def _check_range(
    catalog: ArchiveCatalog,
    chain_id: str,
    window: Window,
    failures: list[Failure],
    outcome: RowVerification,
) -> None:
    manifests = catalog.manifests(chain_id)
    previous = ChainState.empty(chain_id)
    expected = 0
    for manifest in manifests:
        start, previous = previous, ChainState.after(manifest)
        if manifest.first_seq != expected:
            failures.append(
                Failure(
                    "range",
                    "segments do not cover seq contiguously",
                    chain_id,
                    manifest.key,
                    expected,
                )
            )
        expected = manifest.last_seq + 1
        if not window.overlaps(manifest):
            continue
        try:
            data = catalog.store.get(manifest.segment.key)
        except ObjectMissingError:
            failures.append(Failure("range", "segment is missing", chain_id, manifest.segment.key))
            continue
        if sha256_hex(data) != manifest.segment.sha256:
            failures.append(
                Failure(
                    "range",
                    "segment bytes differ from the manifest's SHA-256",
                    chain_id,
                    manifest.segment.key,
                    manifest.first_seq,
                )
            )
        result = check_segment(data, manifest, start)
        failures.extend(
            Failure("range", f"[{f.step}] {f.message}", f.chain_id, f.key, f.seq)
            for f in result.failures
        )
        outcome.segments_rehashed += 1
        outcome.records_rehashed += result.rows
