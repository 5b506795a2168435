"""Disposition: deleting the content of segments whose retention has ended, with proofs intact.

A segment falls due when the retention its manifest states (the longest any of its records'
classes needs) has ended and no active legal hold covers it. Disposing of it:

1. re-checks it against its manifest and the chain before it (rows, chain links, Merkle root),
   refusing a segment that does not verify: what is deleted must be what was sealed;
2. keeps its leaf hashes in a ``leaves/`` object, under the chain's longest retention, so every
   remaining record still proves into every checkpoint and ``verify`` still re-links the chain;
3. seals a ``disposition`` record in the ``dispositions`` chain (signed and checkpointed like
   every chain) naming what goes: keys, SHA-256s, seq ranges, counts per kind, the retention
   that ended, the policy, who ran it and why — *before* anything is deleted;
4. deletes every version of the Parquet segment and its record-id index. Manifests, intents and
   checkpoints stay: they hold hashes and counts, no message content.

A crash after 3 leaves content that a sealed disposition names; the next run deletes it without
sealing again. ``verify`` accepts a missing segment exactly when a disposition whose chain
verifies names it with the manifest's own hashes, and checks the kept leaves instead.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from coexarchive.audit_chain import AuditChainClient, AuditChainWriter
from coexarchive.errors import FormatError, ObjectMissingError, SealError, SignatureError
from coexarchive.export.holds import INTERNAL_CHAINS, coverage
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.resume import committed_manifests
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import (
    ChainState,
    Manifest,
    ObjectRef,
    list_manifests,
    read_segment,
)
from coexarchive.store import layout
from coexarchive.store.base import LockMode, ObjectStore, Retention, sha256_hex

__all__ = [
    "DISPOSITIONS_CHAIN",
    "DisposedSegment",
    "Disposer",
    "DispositionPlan",
    "leaves_bytes",
    "plan_disposition",
    "read_dispositions",
    "read_leaves",
]

DISPOSITIONS_CHAIN = "dispositions"
# The archive's own chains (its registers and logs) are never disposed of by this command.
OVERSIGHT_CHAINS = INTERNAL_CHAINS | {DISPOSITIONS_CHAIN, "policies", "reviews"}
DETAIL_VERSION = 1
LEAVES_FORMAT = b"coexarchive.leaves/v1\n"


def leaves_bytes(leaves: Sequence[bytes]) -> bytes:
    """A disposed segment's leaf hashes in ``seq`` order: a format line, then 32 bytes each."""
    return LEAVES_FORMAT + b"".join(leaves)


def read_leaves(data: bytes, *, count: int, key: str) -> list[bytes]:
    """The leaf hashes of a ``leaves/`` object that must hold exactly ``count``."""
    body = data[len(LEAVES_FORMAT) :]
    if not data.startswith(LEAVES_FORMAT) or len(body) != 32 * count:
        raise FormatError(f"{key}: not the {count} leaf hashes of a disposed segment")
    return [body[i : i + 32] for i in range(0, len(body), 32)]


@dataclass(frozen=True)
class DisposedSegment:
    """One segment a sealed disposition names: what was deleted and where its leaves are."""

    chain_id: str
    first_seq: int
    last_seq: int
    kinds: Mapping[str, int]
    retain_until: str
    segment: ObjectRef
    record_index: ObjectRef
    leaves: ObjectRef
    manifest_sha256: str

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.records,
            "kinds": dict(sorted(self.kinds.items())),
            "retain_until": self.retain_until,
            "segment": self.segment.to_json(),
            "record_index": self.record_index.to_json(),
            "leaves": self.leaves.to_json(),
            "manifest_sha256": self.manifest_sha256,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DisposedSegment:
        return cls(
            chain_id=str(value["chain"]),
            first_seq=int(value["first_seq"]),
            last_seq=int(value["last_seq"]),
            kinds={str(k): int(v) for k, v in value["kinds"].items()},
            retain_until=str(value["retain_until"]),
            segment=ObjectRef.from_json(value["segment"]),
            record_index=ObjectRef.from_json(value["record_index"]),
            leaves=ObjectRef.from_json(value["leaves"]),
            manifest_sha256=str(value["manifest_sha256"]),
        )

    def names(self, manifest: Manifest, manifest_sha256: str) -> bool:
        """Whether this entry is about exactly ``manifest`` (same bytes, same objects)."""
        return (
            self.chain_id == manifest.chain_id
            and self.first_seq == manifest.first_seq
            and self.last_seq == manifest.last_seq
            and self.segment == manifest.segment
            and self.record_index == manifest.record_index
            and self.manifest_sha256 == manifest_sha256
        )


Disposed = dict[tuple[str, int], DisposedSegment]


def read_dispositions(store: ObjectStore, trust: TrustStore | None) -> Disposed:
    """Every segment a sealed disposition names, by (chain, first seq).

    With ``trust``, each register segment must verify as verify checks any segment (rows, chain
    links, Merkle root) and its checkpoint must be signed by a trusted key: a disposition is
    what lets verify accept missing content, so only a signed one counts. Without ``trust``
    (query catalogs deciding what not to read) the entries are hints.
    """
    from coexarchive.verify.segment import check_segment  # verify imports this module

    found: Disposed = {}
    start = ChainState.empty(DISPOSITIONS_CHAIN)
    if trust is not None:
        # Only what a verified checkpoint commits: a tail past it is no disposition.
        manifests = committed_manifests(store, DISPOSITIONS_CHAIN, trust=trust)
    else:
        keys = list_manifests(store, DISPOSITIONS_CHAIN)
        manifests = [Manifest.from_bytes(store.get(key), key=key) for key in keys]
    for manifest in manifests:
        data = store.get(manifest.segment.key)
        if sha256_hex(data) != manifest.segment.sha256:
            raise FormatError(f"{manifest.segment.key}: disposition register segment was altered")
        if trust is not None:
            outcome = check_segment(data, manifest, start)
            if outcome.failures:
                raise FormatError(
                    f"{manifest.segment.key}: disposition register does not verify "
                    f"({outcome.failures[0].message})"
                )
            note = store.get(manifest.checkpoint_key)
            checkpoint = open_checkpoint(
                note, trust, origin=checkpoint_origin(manifest.archive, DISPOSITIONS_CHAIN)
            )
            if checkpoint.root_hash != manifest.root_hash:
                raise SignatureError(f"{manifest.checkpoint_key}: signs another disposition tree")
            start = ChainState.after(manifest)
        table = read_segment(data, key=manifest.segment.key)
        leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
        if recompute_leaf_hashes(table) != leaves:
            raise FormatError(f"{manifest.segment.key}: a disposition does not match its seal")
        for row in table.select(["seq", "detail"]).to_pylist():
            try:
                detail = orjson.loads(row["detail"])
                for item in detail["segments"]:
                    entry = DisposedSegment.from_json(item)
                    found[(entry.chain_id, entry.first_seq)] = entry
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise FormatError(
                    f"{manifest.segment.key}: disposition seq {row['seq']} is malformed ({exc})"
                ) from None
    return found


# --- what falls due ------------------------------------------------------------------------------


@dataclass
class DispositionPlan:
    """What a disposition up to ``cutoff`` would do, chain by chain."""

    cutoff: datetime
    due: list[Manifest] = field(default_factory=list)  # retention ended, no hold: will go
    held: list[tuple[Manifest, list[str]]] = field(default_factory=list)  # blocked, by matters
    pending: list[DisposedSegment] = field(default_factory=list)  # sealed, content still there

    def records(self) -> int:
        return sum(m.record_count for m in self.due)


def chain_manifests(store: ObjectStore) -> dict[str, list[Manifest]]:
    """Every business chain's committed manifests in ``seq`` order."""
    chains: set[str] = set()
    for key in store.list(layout.MANIFEST_PREFIX):
        chain = layout.chain_of(key)
        if chain is not None and chain not in OVERSIGHT_CHAINS:
            chains.add(chain)
    return {
        chain: sorted(
            (Manifest.from_bytes(store.get(k), key=k) for k in list_manifests(store, chain)),
            key=lambda m: m.first_seq,
        )
        for chain in sorted(chains)
    }


def held_by(store: ObjectStore, *, trust: TrustStore) -> dict[str, list[str]]:
    """Object key → the active matters whose holds cover it (the register ``trust`` commits)."""
    matters: dict[str, list[str]] = {}
    for matter in coverage(store, trust=trust):
        for key in matter.keys:
            matters.setdefault(key, []).append(matter.hold.matter)
    return matters


def plan_disposition(
    store: ObjectStore, *, until_ms: int, now_ms: int, trust: TrustStore
) -> DispositionPlan:
    """Segments whose retention ended by ``until`` (and by now: S3 refuses anything earlier);
    ``trust`` reads the legal holds that keep some of them."""
    cutoff = datetime.fromtimestamp(min(until_ms, now_ms) / 1000, tz=UTC)
    plan = DispositionPlan(cutoff)
    # Signed dispositions only: an entry is what a run finishes deleting (``pending``).
    disposed = read_dispositions(store, trust)
    holds = held_by(store, trust=trust)
    for manifests in chain_manifests(store).values():
        for manifest in manifests:
            entry = disposed.get((manifest.chain_id, manifest.first_seq))
            keys = (manifest.segment.key, manifest.record_index.key, manifest.key)
            matters = sorted({m for key in keys for m in holds.get(key, ())})
            if entry is not None:
                # Sealed as disposed by a run that stopped before deleting: finish it, unless a
                # hold placed since keeps it (S3 would refuse; the content stays, which is safe).
                if store.exists(entry.segment.key) or store.exists(entry.record_index.key):
                    if matters:
                        plan.held.append((manifest, matters))
                    else:
                        plan.pending.append(entry)
                continue
            if manifest.retention.retain_until > cutoff:
                continue
            if matters:
                plan.held.append((manifest, matters))
            else:
                plan.due.append(manifest)
    return plan


# --- carrying it out -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DispositionOutcome:
    segments: int
    records: int
    sealed: list[Manifest]  # the disposition register segments sealed (one per chain)
    deleted: list[str]  # object keys deleted


class Disposer(AuditChainClient):
    """Seals each disposition, keeps the leaves, then deletes the content."""

    def execute(
        self,
        plan: DispositionPlan,
        *,
        who: str,
        now_ms: int,
        policy: str,
        reason: str | None = None,
    ) -> DispositionOutcome:
        by_chain: dict[str, list[Manifest]] = {}
        for manifest in plan.due:
            by_chain.setdefault(manifest.chain_id, []).append(manifest)
        chains = chain_manifests(self.store)
        sealed: list[Manifest] = []
        to_delete: list[DisposedSegment] = list(plan.pending)
        for chain_id, manifests in sorted(by_chain.items()):
            entries = [self._preserve(m, chains[chain_id]) for m in manifests]
            detail = {
                "v": DETAIL_VERSION,
                "action": "dispose",
                "chain": chain_id,
                "cutoff": plan.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "policy": policy,
                "who": who,
                "reason": reason,
                "records": sum(e.records for e in entries),
                "segments": [e.to_json() for e in entries],
            }
            # Sealed before anything is deleted: no content goes that a signed record does not name.
            sealed.append(self._seal(detail, now_ms=now_ms))
            to_delete += entries
        self._extend_kept_leaves(chains)
        deleted: list[str] = []
        for entry in to_delete:
            for key in (entry.segment.key, entry.record_index.key):
                try:
                    self.store.dispose(key)
                except ObjectMissingError:
                    continue  # deleted by an earlier, interrupted run
                deleted.append(key)
        records = sum(e.records for e in to_delete)
        return DispositionOutcome(len(to_delete), records, sealed, deleted)

    def _extend_kept_leaves(self, chains: Mapping[str, Sequence[Manifest]]) -> None:
        """Keep every chain's kept leaves locked as long as its longest-kept segment.

        Records sealed since an earlier disposition may be kept longer than the leaves it locked;
        they need those leaves to prove, so each run extends the lock (never shortens it).
        """
        for chain_id, manifests in chains.items():
            if not manifests:
                continue
            longest = _longest(manifests)
            for key in self.store.list(f"{layout.LEAVES_PREFIX}chain={chain_id}/"):
                current = self.store.info(key).retention
                if current is None or (
                    current.mode == longest.mode and current.retain_until < longest.retain_until
                ):
                    self.store.extend_retention(key, longest)

    def _preserve(self, manifest: Manifest, chain: Sequence[Manifest]) -> DisposedSegment:
        """Check the segment against its seal, and keep its leaf hashes (create-only, locked)."""
        from coexarchive.verify.segment import check_segment  # verify imports this module

        data = self.store.get(manifest.segment.key)
        if sha256_hex(data) != manifest.segment.sha256:
            raise SealError(
                f"{manifest.segment.key}: bytes differ from the manifest; refusing to dispose of "
                "what was not sealed (run `coexarchive verify`)"
            )
        position = next(i for i, m in enumerate(chain) if m.first_seq == manifest.first_seq)
        start = (
            ChainState.after(chain[position - 1])
            if position
            else ChainState.empty(manifest.chain_id)
        )
        outcome = check_segment(data, manifest, start)
        if outcome.failures:
            raise SealError(
                f"{manifest.segment.key}: does not verify ({outcome.failures[0].message}); "
                "refusing to dispose of it (run `coexarchive verify`)"
            )
        table = read_segment(data, key=manifest.segment.key).sort_by("seq")
        leaves = leaves_bytes([bytes(v) for v in table.column("leaf_hash").to_pylist()])
        key = layout.leaves_key(manifest.chain_id, manifest.first_seq, manifest.last_seq)
        self.store.put(key, leaves, retention=_longest(chain))
        return DisposedSegment(
            chain_id=manifest.chain_id,
            first_seq=manifest.first_seq,
            last_seq=manifest.last_seq,
            kinds=dict(manifest.kinds),
            retain_until=manifest.retention.retain_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            segment=manifest.segment,
            record_index=manifest.record_index,
            leaves=ObjectRef(key, sha256_hex(leaves), len(leaves)),
            manifest_sha256=sha256_hex(manifest.to_bytes()),
        )

    def _seal(self, detail: Mapping[str, Any], *, now_ms: int) -> Manifest:
        return AuditChainWriter(
            self.store,
            DISPOSITIONS_CHAIN,
            signer=self.signer,
            archive_name=self.archive_name,
            what="disposition register",
            policy=self.policy,
            trust=self.trust,
        ).append(disposition_record(detail, now_ms=now_ms))


def disposition_record(detail: Mapping[str, Any], *, now_ms: int) -> Record:
    """The ``disposition`` record sealing ``detail`` (``schemas/RECORD_KINDS.md``)."""
    text = orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()
    return Record(
        chain_id=DISPOSITIONS_CHAIN,
        record_id=stable_id(
            "disposition", detail["chain"], now_ms, hashlib.sha256(text.encode()).hexdigest()
        ),
        kind=Kind.DISPOSITION.value,
        origin=Origin.SYSTEM.value,
        direction=Direction.NONE.value,
        event_time=now_ms,
        received_time=now_ms,
        status="dispose",
        detail=text,
    )


def _longest(chain: Iterable[Manifest]) -> Retention:
    """The longest retention any segment of the chain has: the kept leaves must outlive them all."""
    retentions = [m.retention for m in chain]
    mode: LockMode = (
        "COMPLIANCE" if any(r.mode == "COMPLIANCE" for r in retentions) else "GOVERNANCE"
    )
    return Retention(mode=mode, retain_until=max(r.retain_until for r in retentions))


@dataclass(frozen=True)
class DueRow:
    """Records falling due in one month, of one record class in one chain."""

    month: str  # YYYY-MM in which their segments' retention ends
    kind: str
    chain_id: str
    records: int
    held: int  # of those, in segments an active hold covers (not disposed while it lasts)
    matters: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "kind": self.kind,
            "chain": self.chain_id,
            "records": self.records,
            "held": self.held,
            "matters": list(self.matters),
        }


def retention_report(
    store: ObjectStore,
    *,
    trust: TrustStore,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[DueRow]:
    """What falls due for disposition, per month, record class and chain, and what holds block.

    A segment is disposed of as a whole when its retention (the longest its records' classes
    need) ends, so its records fall due in that month. Segments already disposed of are left out.
    """
    disposed = read_dispositions(store, None)
    holds = held_by(store, trust=trust)
    records: Counter[tuple[str, str, str]] = Counter()
    held: Counter[tuple[str, str, str]] = Counter()
    matters: dict[tuple[str, str, str], set[str]] = {}
    for manifests in chain_manifests(store).values():
        for manifest in manifests:
            if (manifest.chain_id, manifest.first_seq) in disposed:
                continue
            ends = int(manifest.retention.retain_until.timestamp() * 1000)
            if (since_ms is not None and ends < since_ms) or (
                until_ms is not None and ends >= until_ms
            ):
                continue
            month = manifest.retention.retain_until.strftime("%Y-%m")
            blocking = {
                m
                for key in (manifest.segment.key, manifest.record_index.key, manifest.key)
                for m in holds.get(key, ())
            }
            kinds = dict(manifest.kinds) or {"(unrecorded)": manifest.record_count}
            for kind, count in kinds.items():
                row = (month, kind, manifest.chain_id)
                records[row] += count
                if blocking:
                    held[row] += count
                    matters.setdefault(row, set()).update(blocking)
    return [
        DueRow(
            month,
            kind,
            chain,
            count,
            held[(month, kind, chain)],
            tuple(sorted(matters.get((month, kind, chain), ()))),
        )
        for (month, kind, chain), count in sorted(records.items())
    ]
