"""Legal holds: S3 legal holds on every object holding a matter's records, and their register.

The register is the sealed chain ``holds``: one ``hold`` record per placement or release, signed
and checkpointed like every chain (so ``coexarchive verify`` covers it). A record's ``detail`` is
the canonical JSON of ``{v, action, matter, scope, since, until, who, keys, kept, reason}``.

A hold covers every object of each segment holding at least one matching record: the Parquet
segment, its record-id index, its manifest and its checkpoint. Objects are held *before* the
placement is sealed, so the register never claims a hold that is not set; a crash in between
leaves objects held with no entry, and re-running ``place`` seals it. Releasing a matter removes
the legal hold only from objects no other active matter holds.

Clock and identity are parameters: the CLI passes the wall clock and ``--as``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from coexarchive.audit_chain import AuditChainClient, AuditChainWriter
from coexarchive.customers import normalize_customer
from coexarchive.errors import (
    ConfigError,
    FormatError,
    InvalidArgumentError,
    ObjectMissingError,
    SealError,
    UnsignedTailError,
)
from coexarchive.media.objects import segment_media_keys
from coexarchive.query.views import ACCESS_LOG_CHAIN, ArchiveCatalog, Segment
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.resume import committed_manifests
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import Manifest, read_segment
from coexarchive.store.base import ObjectStore, sha256_hex

__all__ = [
    "HOLDS_CHAIN",
    "Hold",
    "HoldEvent",
    "HoldOutcome",
    "HoldRegister",
    "HoldScope",
    "MatterCoverage",
    "NewDataHolds",
    "active_holds",
    "coverage",
    "held_keys",
    "hold_new_objects",
    "read_register",
]

HOLDS_CHAIN = "holds"
DETAIL_VERSION = 1
# Chains that hold the archive's own bookkeeping, never a customer's messages.
INTERNAL_CHAINS = frozenset({HOLDS_CHAIN, ACCESS_LOG_CHAIN, "erasures", "dispositions"})
_HOLD_WORKERS = 8
_TS = pa.timestamp("ms", tz="UTC")


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class HoldScope:
    """Which records a hold covers: one customer (in every chain) or one whole chain."""

    customer: str | None = None
    chain: str | None = None
    since: int | None = None  # ms, inclusive
    until: int | None = None  # ms, exclusive

    def __post_init__(self) -> None:
        if (self.customer is None) == (self.chain is None):
            raise ConfigError("a hold names exactly one of --customer or --chain")
        if self.customer is not None:
            # One spelling everywhere: ``+65 9170 3423`` holds the records of ``6591703423``.
            object.__setattr__(self, "customer", normalize_customer(self.customer))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError("--since must be before --until")

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "chain": self.chain,
            "since": _iso(self.since),
            "until": _iso(self.until),
        }

    def overlaps(self, manifest: Manifest | Segment) -> bool:
        if self.since is not None and manifest.max_event_time < self.since:
            return False
        return not (self.until is not None and manifest.min_event_time >= self.until)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HoldScope:
        """A scope as the register stores it (ISO times, as ``to_json`` writes them)."""
        fields: dict[str, Any] = {
            "customer": value.get("customer"),
            "chain": value.get("chain"),
            "since": _ms(value.get("since")),
            "until": _ms(value.get("until")),
        }
        try:
            return cls(**fields)
        except InvalidArgumentError:
            # Placed before identifiers were normalised, with a spelling no record uses: the
            # register is signed as it is, so keep the scope exactly as sealed.
            scope = object.__new__(cls)
            for name, field_value in fields.items():
                object.__setattr__(scope, name, field_value)
            return scope

    def covers(self, chain_id: str, records: Iterable[Record]) -> bool:
        """Whether any of ``records`` (all of chain ``chain_id``) falls in this scope."""
        if self.chain is not None:
            if chain_id != self.chain:
                return False
        elif chain_id in INTERNAL_CHAINS:
            return False
        for record in records:
            if self.since is not None and record.event_time < self.since:
                continue
            if self.until is not None and record.event_time >= self.until:
                continue
            if self.customer is None or self.customer in (
                record.customer_id,
                record.customer_wa_id,
                record.customer_user_id,
            ):
                return True
        return False


@dataclass(frozen=True)
class HoldEvent:
    """One entry of the register, as sealed."""

    seq: int
    record_id: str
    event_time: int
    action: str  # "place" or "release"
    matter: str
    who: str
    scope: Mapping[str, Any] | None
    keys: tuple[str, ...]
    kept: tuple[str, ...] = ()
    reason: str | None = None


@dataclass
class Hold:
    """A matter's current state, folded from the register."""

    matter: str
    placed_at: int
    placed_by: str
    scopes: list[Mapping[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    released_at: int | None = None
    released_by: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "matter": self.matter,
            "active": self.active,
            "placed_at": _iso(self.placed_at),
            "placed_by": self.placed_by,
            "scopes": list(self.scopes),
            "objects": len(self.keys),
            "released_at": _iso(self.released_at),
            "released_by": self.released_by,
        }


@dataclass(frozen=True)
class HoldOutcome:
    """What a placement or release did."""

    matter: str
    action: str
    keys: tuple[str, ...]  # objects whose legal hold this call turned on (or off)
    kept: tuple[str, ...] = ()  # on release: objects left held for another matter
    segments: int = 0
    sealed: Manifest | None = None  # the register segment; None when nothing changed


# --- reading the register ------------------------------------------------------------------------


def read_register(store: ObjectStore, trust: TrustStore) -> list[HoldEvent]:
    """Every committed entry of the hold register in ``seq`` order, each checked against its
    leaf hash.

    Committed: up to the register's last checkpoint that verifies against ``trust``
    (:func:`~coexarchive.resume.committed_manifests`). What lies past it (a placement or a
    release being sealed now, or one someone with write access to the bucket put there) is not
    an entry: a forged release must never stop new data being held. A checkpoint that does not
    verify is refused (:class:`SealError` naming it): whoever reads the holds cannot tell which
    are in force.
    """
    try:
        manifests = committed_manifests(store, HOLDS_CHAIN, trust=trust)
    except UnsignedTailError as exc:
        raise SealError(
            f"the legal hold register cannot be read as signed: {exc.key}: {exc.reason}. Which "
            "holds are in force is unknown, so nothing that depends on them goes ahead; give "
            "the trust file listing the audit key that seals the register, and run "
            "`coexarchive verify`"
        ) from None
    events: list[HoldEvent] = []
    for manifest in manifests:
        data = store.get(manifest.segment.key)
        if sha256_hex(data) != manifest.segment.sha256:
            raise FormatError(f"{manifest.segment.key}: hold register segment was altered")
        table = read_segment(data, key=manifest.segment.key)
        leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
        if recompute_leaf_hashes(table) != leaves:
            raise FormatError(f"{manifest.segment.key}: a hold record does not match its seal")
        for row in table.select(["seq", "record_id", "event_time", "detail"]).to_pylist():
            events.append(_event(row, manifest.segment.key))
    return sorted(events, key=lambda event: event.seq)


def _event(row: Mapping[str, Any], key: str) -> HoldEvent:
    try:
        detail = orjson.loads(row["detail"])
        return HoldEvent(
            seq=int(row["seq"]),
            record_id=str(row["record_id"]),
            event_time=int(row["event_time"].timestamp() * 1000),
            action=str(detail["action"]),
            matter=str(detail["matter"]),
            who=str(detail["who"]),
            scope=detail.get("scope"),
            keys=tuple(detail.get("keys", ())),
            kept=tuple(detail.get("kept", ())),
            reason=detail.get("reason"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise FormatError(f"{key}: hold record seq {row['seq']} is malformed ({exc})") from None


def active_holds(events: Iterable[HoldEvent]) -> dict[str, Hold]:
    """Each matter's latest state: placements accumulate until a release."""
    holds: dict[str, Hold] = {}
    for event in events:
        current = holds.get(event.matter)
        if event.action == "place":
            if current is None or not current.active:
                current = holds[event.matter] = Hold(event.matter, event.event_time, event.who)
            if event.scope is not None and event.scope not in current.scopes:
                current.scopes.append(event.scope)
            current.keys.update(event.keys)
        elif event.action == "release" and current is not None:
            current.released_at = event.event_time
            current.released_by = event.who
    return holds


def held_keys(store: ObjectStore, *, trust: TrustStore) -> set[str]:
    """Objects an unreleased legal hold covers (for ``verify_archive(held_keys=)``).

    Those its placements held, and those of every segment its scopes match now: segments
    sealed after the placement must carry the hold too.
    """
    keys: set[str] = set()
    for matter in coverage(store, trust=trust):
        keys |= matter.keys
    return keys


# --- what holds cover now, and what they will cover ---------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """What one scope (or a matter's scopes together) covers in the archive now."""

    manifests: list[Manifest] = field(default_factory=list)
    records: int = 0

    def keys(self, store: ObjectStore) -> set[str]:
        return {key for manifest in self.manifests for key in segment_keys(store, manifest)}


def segment_keys(store: ObjectStore, manifest: Manifest) -> list[str]:
    """The objects a hold on a segment covers: Parquet, record index, manifest, checkpoint."""
    keys = [manifest.segment.key, manifest.record_index.key, manifest.key]
    if manifest.kinds.get("media"):
        # The attachments the segment's media records name are held with it.
        keys += segment_media_keys(store, manifest.segment.key)
    # A manifest whose checkpoint is not written yet is committed by the next writer.
    if store.exists(manifest.checkpoint_key):
        keys.append(manifest.checkpoint_key)
    return keys


def match_scope(catalog: ArchiveCatalog, scope: HoldScope) -> Coverage:
    """The committed segments holding records in ``scope``, and how many records match."""
    catalog.refresh()
    if scope.chain is not None:
        candidates: list[Segment] = [
            s for s in catalog.segments(chains=[scope.chain]) if scope.overlaps(s)
        ]
        wanted: ds.Expression | None = None
    else:
        assert scope.customer is not None
        candidates = [
            s for s in catalog.segments() if s.chain_id not in INTERNAL_CHAINS and scope.overlaps(s)
        ]
        wanted = (
            (ds.field("customer_id") == scope.customer)
            | (ds.field("customer_wa_id") == scope.customer)
            | (ds.field("customer_user_id") == scope.customer)
        )
    if not candidates:
        return Coverage()
    if scope.since is not None:
        after = ds.field("event_time") >= pa.scalar(scope.since, _TS)
        wanted = after if wanted is None else wanted & after
    if scope.until is not None:
        before = ds.field("event_time") < pa.scalar(scope.until, _TS)
        wanted = before if wanted is None else wanted & before
    hits: Counter[tuple[str, int]] = Counter()
    if wanted is None:
        # A whole chain: every record of every segment, no need to read one.
        for segment in candidates:
            hits[(segment.chain_id, segment.first_seq)] = segment.last_seq - segment.first_seq + 1
    else:
        try:
            found = catalog.dataset(candidates).to_table(columns=["chain_id", "seq"], filter=wanted)
        except (ObjectMissingError, OSError):
            # A segment deleted behind the archive's back: verify names it; match the rest.
            candidates = [s for s in candidates if catalog.store.exists(s.key)]
            found = catalog.dataset(candidates).to_table(columns=["chain_id", "seq"], filter=wanted)
        by_chain: dict[str, list[Segment]] = {}
        for segment in candidates:
            by_chain.setdefault(segment.chain_id, []).append(segment)
        for chain_id, seq in zip(
            found.column("chain_id").to_pylist(), found.column("seq").to_pylist(), strict=True
        ):
            for segment in by_chain[chain_id]:
                if segment.first_seq <= seq <= segment.last_seq:
                    hits[(chain_id, segment.first_seq)] += 1
                    break
    # Holds need the manifests (they name every object of a segment): read only the hits'.
    manifests = [
        manifest
        for chain_id in sorted({chain for chain, _ in hits})
        for manifest in catalog.manifests(chain_id)
        if (chain_id, manifest.first_seq) in hits
    ]
    return Coverage(manifests, sum(hits.values()))


def active_scopes(events: Iterable[HoldEvent]) -> list[tuple[str, HoldScope]]:
    """Every (matter, scope) of the active holds, in matter order."""
    holds = active_holds(events)
    return [
        (matter, HoldScope.from_json(scope))
        for matter in sorted(holds)
        if holds[matter].active
        for scope in holds[matter].scopes
    ]


@dataclass(frozen=True)
class MatterCoverage:
    """A matter's holds as they stand: the objects held and the records in them."""

    hold: Hold
    keys: set[str]
    records: int
    segments: int

    @property
    def prospective(self) -> bool:
        """Active, but no sealed record matches yet: it will hold what arrives."""
        return self.hold.active and not self.segments


def coverage(
    store: ObjectStore, *, trust: TrustStore, include_released: bool = False
) -> list[MatterCoverage]:
    """Each matter's coverage now: what its scopes match today, plus what its placements held.

    A hold follows data, so what it covers is computed from its scopes, not only read from the
    register (which lists the objects held when each placement was sealed).
    """
    holds = active_holds(read_register(store, trust))
    catalog = ArchiveCatalog(store)
    out = []
    for matter in sorted(holds):
        hold = holds[matter]
        if not hold.active:
            if include_released:
                out.append(MatterCoverage(hold, set(), 0, 0))
            continue
        keys = set(hold.keys)
        records = segments = 0
        for scope in hold.scopes:
            found = match_scope(catalog, HoldScope.from_json(scope))
            keys |= found.keys(store)
            records += found.records
            segments += len(found.manifests)
        out.append(MatterCoverage(hold, keys, records, segments))
    return out


class NewDataHolds:
    """The active holds, asked by every writer of new objects whether they must be held.

    Ingest passes it to :class:`~coexarchive.segments.ChainWriter`, which holds a segment's
    objects before it writes the checkpoint that commits them; the media fetcher calls
    :func:`hold_new_objects`. Built once per run from the sealed register.
    """

    def __init__(self, scopes: Sequence[tuple[str, HoldScope]]) -> None:
        self.scopes = list(scopes)

    @classmethod
    def load(cls, store: ObjectStore, trust: TrustStore) -> NewDataHolds:
        """The holds in force, from the register's entries ``trust`` commits (see
        :func:`read_register`)."""
        return cls(active_scopes(read_register(store, trust)))

    def matters(self, chain_id: str, records: Sequence[Record]) -> list[str]:
        """The matters whose holds cover any of ``records`` (all of chain ``chain_id``)."""
        return sorted({m for m, scope in self.scopes if scope.covers(chain_id, records)})

    def __call__(self, chain_id: str, records: Sequence[Record]) -> bool:
        return bool(self.scopes) and bool(self.matters(chain_id, records))

    def __bool__(self) -> bool:
        return bool(self.scopes)


def hold_new_objects(
    store: ObjectStore,
    keys: Sequence[str],
    *,
    chain_id: str,
    records: Sequence[Record],
    holds: NewDataHolds | None = None,
    trust: TrustStore | None = None,
) -> list[str]:
    """Hold ``keys`` (new objects holding ``records``) if an active hold covers the records
    (``holds``, else read from the register with ``trust``).

    For writers other than ingest, such as the media fetcher: call it after writing the objects
    and before sealing whatever commits them. Returns the matters that hold them.
    """
    if holds is None:
        if trust is None:
            raise ConfigError("holding new objects needs the holds, or the trust to read them")
        holds = NewDataHolds.load(store, trust)
    matters = holds.matters(chain_id, records)
    if matters:
        set_legal_holds(store, keys, on=True)
    return matters


def set_legal_holds(store: ObjectStore, keys: Sequence[str], *, on: bool) -> None:
    """Place or lift the legal hold on every key (in parallel); SealError if one is missing."""
    if not keys:
        return

    def apply(key: str) -> None:
        try:
            store.set_legal_hold(key, on)
        except ObjectMissingError:
            raise SealError(f"cannot hold {key!r}: the object is missing") from None

    with ThreadPoolExecutor(max_workers=min(_HOLD_WORKERS, len(keys))) as pool:
        list(pool.map(apply, keys))


# --- placing and releasing -----------------------------------------------------------------------


class HoldRegister(AuditChainClient):
    """Places and releases legal holds, and seals each change into the ``holds`` chain."""

    @cached_property
    def catalog(self) -> ArchiveCatalog:
        return ArchiveCatalog(self.store)

    def matching_segments(self, scope: HoldScope) -> list[Manifest]:
        """Committed segments holding at least one record in ``scope``."""
        return match_scope(self.catalog, scope).manifests

    def place(
        self,
        matter: str,
        scope: HoldScope,
        *,
        who: str,
        now_ms: int,
        reason: str | None = None,
        origin: Origin = Origin.AUDITOR,
    ) -> HoldOutcome:
        """Hold every object of the matching segments, then seal the placement.

        Placing the same matter and scope again holds segments sealed since, and seals a new
        entry only when it held something new.
        """
        _check_matter(matter)
        manifests = self.matching_segments(scope)
        keys = sorted({key for m in manifests for key in self._segment_keys(m)})
        current = active_holds(read_register(self.store, self.verifying_trust)).get(matter)
        already = current.keys if current is not None and current.active else set()
        new_keys = [key for key in keys if key not in already]
        self._set_holds(new_keys, on=True)
        repeated = current is not None and current.active and scope.to_json() in current.scopes
        if repeated and not new_keys:
            return HoldOutcome(matter, "place", (), segments=len(manifests))
        detail = {
            "v": DETAIL_VERSION,
            "action": "place",
            "matter": matter,
            "scope": scope.to_json(),
            "who": who,
            "keys": new_keys,
            "reason": reason,
        }
        sealed = self._seal(detail, now_ms=now_ms, customer=scope.customer, origin=origin)
        return HoldOutcome(matter, "place", tuple(new_keys), segments=len(manifests), sealed=sealed)

    def release(
        self,
        matter: str,
        *,
        who: str,
        now_ms: int,
        reason: str | None = None,
        origin: Origin = Origin.AUDITOR,
    ) -> HoldOutcome:
        """Lift the matter's holds from objects no other active matter holds; seal the release."""
        # What each matter covers now: a hold followed data sealed after its placement, and the
        # objects ingest held since must be released too (unless another matter holds them).
        matters = {m.hold.matter: m for m in coverage(self.store, trust=self.verifying_trust)}
        current = matters.get(matter)
        if current is None or not current.hold.active:
            raise ConfigError(f"no active legal hold for matter {matter!r}")
        others: set[str] = set()
        for other in matters.values():
            if other.hold.matter != matter:
                others |= other.keys
        release = sorted(current.keys - others)
        kept = sorted(current.keys & others)
        detail = {
            "v": DETAIL_VERSION,
            "action": "release",
            "matter": matter,
            "scope": None,
            "who": who,
            "keys": release,
            "kept": kept,
            "reason": reason,
        }
        # Sealed first: a crash after it leaves objects still held, which is the safe side.
        sealed = self._seal(detail, now_ms=now_ms, customer=None, origin=origin)
        self._set_holds(release, on=False)
        return HoldOutcome(matter, "release", tuple(release), tuple(kept), sealed=sealed)

    def holds(self) -> list[Hold]:
        holds = active_holds(read_register(self.store, self.verifying_trust))
        return [holds[name] for name in sorted(holds)]

    # -- helpers --------------------------------------------------------------------------------

    def _segment_keys(self, manifest: Manifest) -> list[str]:
        return segment_keys(self.store, manifest)

    def _set_holds(self, keys: Sequence[str], *, on: bool) -> None:
        set_legal_holds(self.store, keys, on=on)

    def _seal(
        self, detail: Mapping[str, Any], *, now_ms: int, customer: str | None, origin: Origin
    ) -> Manifest:
        text = orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()
        record = Record(
            chain_id=HOLDS_CHAIN,
            record_id=stable_id(
                "hold",
                detail["action"],
                detail["matter"],
                now_ms,
                hashlib.sha256(text.encode()).hexdigest(),
            ),
            kind=Kind.HOLD.value,
            origin=origin.value,
            direction=Direction.NONE.value,
            event_time=now_ms,
            received_time=now_ms,
            customer_id=customer,
            status=str(detail["action"]),
            detail=text,
        )
        return AuditChainWriter(
            self.store,
            HOLDS_CHAIN,
            signer=self.signer,
            archive_name=self.archive_name,
            what="hold register",
            policy=self.policy,
            trust=self.trust,
        ).append(record)


def _check_matter(matter: str) -> None:
    if not matter or not matter.strip() or any(ord(c) < 0x20 for c in matter):
        raise ConfigError("a matter is a non-empty name without control characters")
