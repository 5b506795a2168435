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
5. ``values``      every returned column that names a sealed field (or a field the views derive
                   from one, see ``DERIVED``) must equal the proven row's value; columns a view
                   joins from another record (``statuses``' ``msg_*``, ``after-opt-out``'s
                   ``opt_out_*``, current ``flags``/``flag`` from the assessment ``flags_seq``
                   names) are compared with that record, proven the same way. Any other
                   column is reported as not verified. ``latest``: ``flags_seq`` must name the
                   row's latest assessment (NULL: none), found in the segments whose manifests
                   count assessments and proven like a row.
6. ``range``       (with a time window) every segment overlapping the window is re-hashed whole:
                   seq contiguous, leaves recompute, the hash chain links and the Merkle root
                   matches. The window is called complete only for a chain checked against a
                   trusted head (``--expect-head``): the stored chain must hold everything the
                   head vouched for, or records removed from its end would go unnoticed.

Failures raise :class:`~coexarchive.errors.VerificationError` naming chain, seq and record id.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa

from coexarchive.errors import (
    CoexArchiveError,
    Failure,
    FormatError,
    ObjectMissingError,
    VerificationError,
)
from coexarchive.query.provenance import DERIVED, JOINS, Join, Row
from coexarchive.query.verify_values import KEY_COLUMNS, check_latest, compare
from coexarchive.query.views import ACCESS_LOG_CHAIN, ArchiveCatalog, Window
from coexarchive.records import RECORD_SCHEMA
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import Frontier, MerkleTree, verify_inclusion
from coexarchive.segments import ChainState, Manifest
from coexarchive.store.base import sha256_hex
from coexarchive.verify import check_segment

__all__ = [
    "DERIVED",
    "JOINS",
    "HeadLike",
    "Join",
    "RowVerification",
    "verify_rows",
    "wrong_trust_file",
]


class HeadLike(Protocol):
    """A chain's size and root from something trusted: a kept checkpoint or an archive head."""

    @property
    def size(self) -> int: ...

    @property
    def root_hash(self) -> bytes: ...


@dataclass
class RowVerification:
    """What was proven: rows, values, chains, checkpoints and (for a window) completeness."""

    rows: int = 0
    chains: dict[str, int] = field(default_factory=dict)  # chain → signed tree size used
    segments_rehashed: int = 0
    records_rehashed: int = 0
    window: Window | None = None
    compared: list[str] = field(default_factory=list)  # columns compared with sealed values
    joined: int = 0  # joined records proven and compared
    not_verified: list[str] = field(default_factory=list)  # columns shown but not proven
    unkeyed: int = 0  # rows without chain_id/seq (allowed only where the caller says why)
    unkeyed_note: str | None = None
    complete: dict[str, int] = field(default_factory=dict)  # chain → trusted head size
    not_complete: dict[str, str] = field(default_factory=dict)  # chain → why not

    def summary(self) -> str:
        chains = ", ".join(f"{c} (checkpoint size {n})" for c, n in sorted(self.chains.items()))
        lines = [
            f"verified {self.rows} row(s): leaf hash recomputed from the sealed columns and "
            f"proven included in the signed checkpoint of chain {chains or '-'}"
        ]
        if self.compared:
            joined = f", and {self.joined} joined record(s)" if self.joined else ""
            lines.append(
                f"values shown equal the proven records{joined}: {', '.join(self.compared)}"
            )
        if self.not_verified:
            lines.append(
                f"not verified (computed or renamed, not sealed fields): "
                f"{', '.join(self.not_verified)}"
            )
        if self.unkeyed:
            lines.append(f"not verified: {self.unkeyed} row(s) ({self.unkeyed_note})")
        if self.window is not None:
            rehashed = (
                f"{self.segments_rehashed} segment(s), {self.records_rehashed} record(s) "
                "re-hashed, seq contiguous and chained"
            )
            if self.complete and not self.not_complete:
                heads = ", ".join(f"{c} at size {n}" for c, n in sorted(self.complete.items()))
                lines.append(f"time range complete against the trusted head ({heads}): {rehashed}")
            else:
                why = "; ".join(f"{c}: {w}" for c, w in sorted(self.not_complete.items()))
                lines.append(
                    f"time range NOT proven complete ({why}); {rehashed}. Records removed from "
                    "the end of a chain are caught only against a trusted head: pass "
                    "--expect-head FILE (saved earlier with `coexarchive head`)"
                )
        return "\n-- ".join(lines)


def verify_rows(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    result: pa.Table,
    *,
    window: Window | None = None,
    chains: Sequence[str] | None = None,
    heads: Mapping[str, HeadLike] | None = None,
    unkeyed_note: str | None = None,
    computed: Sequence[str] = (),
) -> RowVerification:
    """Prove every row of ``result`` (steps in the module docstring); raise on any failure.

    ``heads`` are trusted checkpoints per chain (``--expect-head``); ``unkeyed_note`` says why
    rows without ``chain_id``/``seq`` may appear (otherwise each is a failure); ``computed``
    names shown columns computed from ``result`` rather than taken from it (aggregates).
    """
    names = result.column_names
    for column in KEY_COLUMNS:
        if column not in names:
            raise FormatError(
                f"--verify needs the columns chain_id and seq in the result; add them to the "
                f"SELECT list (missing: {column})"
            )
    columns = [column.to_pylist() for column in result.columns]
    chain_at, seq_at = names.index("chain_id"), names.index("seq")
    joins = [join for join in JOINS if join.seq_column in names]
    outcome = RowVerification(window=window, unkeyed_note=unkeyed_note)
    failures: list[Failure] = []
    wanted: dict[str, set[int]] = defaultdict(set)
    for index in range(result.num_rows):
        chain_id, seq = columns[chain_at][index], columns[seq_at][index]
        if chain_id is None or seq is None:
            outcome.unkeyed += 1
            if unkeyed_note is None:
                failures.append(
                    Failure("rows", f"result row {index + 1} has no chain_id or seq: unproven")
                )
            continue
        wanted[str(chain_id)].add(int(seq))
        for join in joins:
            joined = columns[names.index(join.seq_column)][index]
            if joined is not None:
                wanted[str(chain_id)].add(int(joined))
    proofs: dict[str, _ChainProof] = {}
    for chain_id, seqs in sorted(wanted.items()):
        proofs[chain_id] = proof = _ChainProof(catalog, trust, chain_id, failures, outcome)
        proof.prove(seqs)
    if any(join.own_when_absent for join in joins):
        check_latest(catalog, names, columns, (chain_at, seq_at), proofs)
    compare(names, columns, (chain_at, seq_at), joins, proofs, outcome)
    # Result rows proven (joined records are counted apart, in the values line).
    outcome.rows = sum(
        1
        for chain_id, seq in zip(columns[chain_at], columns[seq_at], strict=True)
        if chain_id is not None
        and seq is not None
        and str(chain_id) in proofs
        and int(seq) in proofs[str(chain_id)].sealed
    )
    outcome.not_verified += [c for c in computed if c not in outcome.not_verified]
    if window is not None:
        # Every chain in scope, not only those with rows: an empty answer must be complete too.
        scope = set(chains) if chains is not None else set(catalog.chains()) | set(heads or {})
        # A chain the head names but the archive lacks is in scope: it vanished.
        scope.discard(ACCESS_LOG_CHAIN)
        for chain_id in sorted(scope | set(wanted)):
            _check_range(catalog, chain_id, window, failures, outcome)
            _check_complete(
                catalog, trust, chain_id, (heads or {}).get(chain_id), failures, outcome
            )
    if failures:
        raise VerificationError(failures=_trust_first(failures))
    return outcome


def _trust_first(failures: list[Failure]) -> list[Failure]:
    """A wrong trust file explains every other failure: say so first, once."""
    wrong = [f for f in failures if f.step == "trust"]
    return wrong[:1] + [f for f in failures if f.step != "trust"]


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
        self.sealed: dict[int, Row] = {}  # seq → the proven record's sealed fields
        self._proven_tree: (
            tuple[Sequence[Manifest], MerkleTree, Sequence[bytes], int, bytes] | None
        ) = None

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
        self._proven_tree = (manifests, tree, stored, size, root)
        self._rows(manifests, seqs, tree, stored, size, root)
        self.outcome.chains[self.chain_id] = size

    def prove_more(self, seqs: set[int]) -> None:
        """Prove further rows against the tree :meth:`prove` authenticated (no-op without)."""
        more = seqs - set(self.sealed)
        if self._proven_tree is not None and more:
            manifests, tree, stored, size, root = self._proven_tree
            self._rows(manifests, more, tree, stored, size, root)

    # Step 1: the latest checkpoint is signed by a trusted key and matches its manifest.
    def _checkpoint(self, last: Manifest) -> tuple[int, bytes | None]:
        note = b""
        try:
            note = self.catalog.store.get(last.checkpoint_key)
            checkpoint = open_checkpoint(
                note, self.trust, origin=checkpoint_origin(last.archive, self.chain_id)
            )
        except ObjectMissingError:
            self.fail("checkpoint", "latest segment has no checkpoint", key=last.checkpoint_key)
            return last.tree_size, None
        except CoexArchiveError as exc:
            wrong = wrong_trust_file(note, self.trust)
            if wrong is not None:
                self.fail("trust", wrong, key=last.checkpoint_key)
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
            table = self.catalog.leaf_table(manifests)
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
                self.sealed[seq] = {
                    name: rows.column(name)[index].as_py() for name in rows.column_names
                }
        unknown = {s for s in seqs if s >= size or s < 0}
        for seq in sorted(unknown):
            self.fail("rows", f"seq {seq} is beyond the signed tree of size {size}", seq)

    def _unproven(self, seqs: set[int], why: str) -> None:
        for seq in sorted(seqs)[:20]:
            self.fail("rows", f"returned row cannot be proven: {why}", seq)


# Step 6: every segment overlapping the window is complete, contiguous and chained.
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


def wrong_trust_file(note: bytes, trust: TrustStore) -> str | None:
    """One line when a checkpoint is signed only by keys the trust file does not list."""
    signers = []
    for line in note.decode("utf-8", "replace").splitlines():
        if line.startswith("\u2014 "):
            name, _, encoded = line[2:].partition(" ")
            try:
                key_id = base64.b64decode(encoded, validate=True)[:4]
            except (binascii.Error, ValueError):
                continue
            if trust.find(name, key_id) is not None:
                return None
            signers.append(f"{name} {key_id.hex()}")
    if not signers:
        return None
    trusted = ", ".join(f"{v.name} {v.key_id.hex()}" for v in trust.verifiers) or "none"
    return (
        f"signed by key {', '.join(signers)}, but the trust file trusts {trusted}: "
        "is it this archive's trust file?"
    )


# Step 6b: the stored chain still holds everything a trusted head vouched for.
def _check_complete(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    chain_id: str,
    head: HeadLike | None,
    failures: list[Failure],
    outcome: RowVerification,
) -> None:
    if head is None:
        outcome.not_complete[chain_id] = "no trusted head"
        return
    manifests = catalog.manifests(chain_id)
    before = len(failures)
    proof = _ChainProof(catalog, trust, chain_id, failures, RowVerification())
    if not manifests or manifests[-1].tree_size < head.size:
        size = manifests[-1].tree_size if manifests else 0
        failures.append(
            Failure(
                "head",
                f"chain holds {size} record(s) where the trusted head vouches for {head.size} "
                "(records removed from its end?)",
                chain_id,
            )
        )
    else:
        size, root = proof._checkpoint(manifests[-1])
        leaves = proof._tree(manifests, size, root) if root is not None else None
        if leaves is not None and leaves[0].root(head.size) != head.root_hash:
            failures.append(
                Failure(
                    "head",
                    f"the first {head.size} record(s) differ from those the trusted head "
                    "vouches for (the chain was rewritten)",
                    chain_id,
                )
            )
    if len(failures) == before:
        outcome.complete[chain_id] = head.size
    else:
        outcome.not_complete[chain_id] = "differs from the trusted head"
