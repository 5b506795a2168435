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
                   ``opt_out_*``) are compared with that record, proven the same way. Any other
                   column is reported as not verified.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
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

__all__ = [
    "DERIVED",
    "JOINS",
    "HeadLike",
    "Join",
    "RowVerification",
    "verify_rows",
    "wrong_trust_file",
]

Row = Mapping[str, Any]


class HeadLike(Protocol):
    """A chain's size and root from something trusted: a kept checkpoint or an archive head."""

    @property
    def size(self) -> int: ...

    @property
    def root_hash(self) -> bytes: ...


KEY_COLUMNS = ("chain_id", "seq")
_SEALED = frozenset(RECORD_SCHEMA.names)


# A derived column's value for a record it does not apply to (not the view's kind of record).
_NOT_DERIVED = object()


def _of_kind(kind: str, derive: Callable[[Row], Any]) -> Callable[[Row], Any]:
    return lambda row: derive(row) if row["kind"] == kind else _NOT_DERIVED


def _new_state(row: Row) -> Any:
    if row["consent_state"] is not None:
        return row["consent_state"]
    return {"stop": "opted_out", "resume": "opted_in", "signup": "opted_in"}.get(
        (row["status"] or "").lower()
    )


def _detail(name: str) -> Callable[[Row], Any]:
    def get(row: Row) -> Any:
        try:
            return orjson.loads(row["detail"]).get(name)
        except (orjson.JSONDecodeError, AttributeError):
            return None

    return get


# Columns the views compute from one record's sealed fields, recomputed here from the proven row.
DERIVED: dict[str, Callable[[Row], Any]] = {
    "new_state": _of_kind("consent_event", _new_state),  # consent_events
    "state": _of_kind("consent_event", _new_state),  # consent_state
    "purpose": _of_kind("consent_event", lambda row: row["msg_type"]),  # consent_state
    "since": _of_kind("consent_event", lambda row: row["event_time"]),  # consent_state
    **{
        name: _of_kind("access", _detail(name))  # access_log
        for name in ("who", "report", "sql", "params", "rows", "result_sha256")
    },
}
# ``flags`` unnests a record's flags: each row's ``flag`` must be one of the sealed flags.
_MEMBER_OF = {"flag": "flags"}


@dataclass(frozen=True)
class Join:
    """Columns a view takes from another record of the same chain, found by its ``seq`` column."""

    seq_column: str
    fields: Mapping[str, str]  # shown column → sealed field of the joined record
    # Must hold between the row and the joined record, or the join took the wrong record.
    belongs: Callable[[Row, Row], bool]


_MESSAGE_KINDS = frozenset({"message", "echo", "outbound", "history_message"})

JOINS: tuple[Join, ...] = (
    Join(
        "msg_seq",
        {
            "msg_record_id": "record_id",
            "msg_kind": "kind",
            "msg_time": "event_time",
            "msg_msg_type": "msg_type",
            "msg_text": "text",
            "msg_template_name": "template_name",
            "msg_customer_id": "customer_id",
        },
        lambda row, joined: joined["wamid"] == row["wamid"] and joined["kind"] in _MESSAGE_KINDS,
    ),
    Join(
        "opt_out_seq",
        {"opted_out_at": "event_time"},
        lambda row, joined: (
            joined["kind"] == "consent_event" and joined["customer_id"] == row["customer_id"]
        ),
    ),
)


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
    _compare(names, columns, (chain_at, seq_at), joins, proofs, outcome)
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


def _same(shown: Any, sealed: Any) -> bool:
    if isinstance(shown, bytes | bytearray) and isinstance(sealed, bytes | bytearray):
        return bytes(shown) == bytes(sealed)
    if type(shown) is bool or type(sealed) is bool:
        return type(shown) is type(sealed) and shown == sealed
    if isinstance(shown, str) and not isinstance(sealed, str) and sealed is not None:
        # JSON a view extracted (access_log.params) is shown as text.
        try:
            return bool(orjson.loads(shown) == sealed)
        except orjson.JSONDecodeError:
            return False
    return bool(shown == sealed)


def _compare(
    names: Sequence[str],
    columns: Sequence[list[Any]],
    keys: tuple[int, int],
    joins: Sequence[Join],
    proofs: Mapping[str, _ChainProof],
    outcome: RowVerification,
) -> None:
    """Step 5: each shown value equals the proven record's (or the joined record's) value."""
    joined_columns = {column: join for join in joins for column in join.fields}
    compared: set[str] = set()
    not_verified: set[str] = set()
    not_derived: set[str] = set()
    joined_seen: set[tuple[str, int]] = set()
    for at, name in enumerate(names):
        if at in keys:
            continue
        if name in joined_columns or name in _SEALED or name in DERIVED or name in _MEMBER_OF:
            continue
        if any(name in join.fields for join in JOINS) or name in {j.seq_column for j in JOINS}:
            continue
        not_verified.add(name)
    for name in names:
        for join in JOINS:
            if name in join.fields and join not in joins:
                not_verified.add(name)  # joined from a record the result does not name
    rows = len(columns[0]) if columns else 0
    for index in range(rows):
        chain_id, seq = columns[keys[0]][index], columns[keys[1]][index]
        if chain_id is None or seq is None:
            continue
        proof = proofs.get(str(chain_id))
        if proof is None or int(seq) not in proof.sealed:
            continue  # not proven: already a failure
        sealed = proof.sealed[int(seq)]
        for at, name in enumerate(names):
            if at in keys or name in not_verified or name in joined_columns:
                continue
            shown = columns[at][index]
            if name in _SEALED:
                expected, ok = sealed[name], _same(shown, sealed[name])
            elif name in DERIVED:
                expected = DERIVED[name](sealed)
                if expected is _NOT_DERIVED:
                    not_derived.add(name)  # e.g. an alias `rows` over a message: unproven
                    continue
                ok = _same(shown, expected)
            elif name in _MEMBER_OF:
                expected = sealed[_MEMBER_OF[name]]
                ok = shown in expected
            else:
                continue
            compared.add(name)
            if not ok:
                proof.fail(
                    "values",
                    f"record {sealed['record_id']}: column {name} shows a value the sealed record "
                    "does not hold (computed, substituted or altered after reading)",
                    int(seq),
                )
        for join in joins:
            _compare_join(names, columns, index, join, sealed, proof, compared, joined_seen)
    not_verified |= not_derived
    shown = dict.fromkeys(names)
    outcome.compared = [
        n for n in shown if n in compared and n not in not_verified and n not in KEY_COLUMNS
    ]
    outcome.not_verified = [n for n in shown if n in not_verified]
    outcome.joined = len(joined_seen)


def _compare_join(
    names: Sequence[str],
    columns: Sequence[list[Any]],
    index: int,
    join: Join,
    row: Row,
    proof: _ChainProof,
    compared: set[str],
    joined_seen: set[tuple[str, int]],
) -> None:
    seq = int(row["seq"])
    joined_seq = columns[names.index(join.seq_column)][index]
    shown = {name: columns[at][index] for at, name in enumerate(names) if name in join.fields}
    if joined_seq is None:
        present = sorted(name for name, value in shown.items() if value is not None)
        if present:
            proof.fail(
                "values",
                f"record {row['record_id']}: {', '.join(present)} shown without a joined record "
                f"({join.seq_column} is empty)",
                seq,
            )
        compared.update(shown)
        return
    joined = proof.sealed.get(int(joined_seq))
    if joined is None:
        return  # not proven: already a failure
    joined_seen.add((proof.chain_id, int(joined_seq)))
    compared.add(join.seq_column)
    if not join.belongs(row, joined):
        proof.fail(
            "values",
            f"record {row['record_id']}: {join.seq_column} {joined_seq} names a record that "
            "does not belong to this row",
            seq,
        )
    for name, value in shown.items():
        compared.add(name)
        if not _same(value, joined[join.fields[name]]):
            proof.fail(
                "values",
                f"record {row['record_id']}: column {name} differs from the joined record "
                f"{joined['record_id']} (seq {joined_seq})",
                seq,
            )


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
                self.sealed[seq] = {
                    name: rows.column(name)[index].as_py() for name in rows.column_names
                }
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
