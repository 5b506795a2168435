"""The pure half of the job's sealing step: one chain's new records → de-duplicated, sealed."""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.dedup import DedupIndex
from coexarchive.enrich import EnrichConfig, enrich_for_seal
from coexarchive.errors import ConfigError, SealError
from coexarchive.export.holds import NewDataHolds
from coexarchive.records import Kind, Record
from coexarchive.resume import UnsignedTailError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import (
    ChainState,
    ChainWriter,
    EncodedPart,
    SegmentPlan,
    encode_records,
    own_trust,
)
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.at_ingest import ActivePolicies, scan_batch
from pipelines.specs import SealSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentCounts:
    """What a segment holds of this run's input: counted in the summary only if it is created."""

    sealed: int  # input events (observations included)
    observations: int
    derived: Mapping[str, int]  # records enrichment derived, by kind


@dataclass(frozen=True)
class ChainPlan:
    """Everything the commit of one chain needs besides the encoded parts; picklable.

    ``summary`` is the chain's final summary when nothing is to be committed (an unsigned tail),
    else its counts known at planning (duplicates, inputs, supervision gap).
    """

    chain_id: str
    state: ChainState | None
    segments: tuple[SegmentPlan, ...] = ()
    counts: tuple[SegmentCounts, ...] = ()
    inputs: int = 0
    duplicates: int = 0
    supervision_gap: str | None = None
    holds: NewDataHolds | None = None
    summary: Mapping[str, Any] | None = None


def seal_chain(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    *,
    signer: Ed25519Signer,
    spec: SealSpec,
    policy: RetentionPolicy,
    side_events: Sequence[Record] = (),
    enrich: EnrichConfig | None = None,
    trust: TrustStore | None = None,
    personal: PersonalSealer | None = None,
    supervision: ActivePolicies | None = None,
) -> dict[str, Any]:
    """De-duplicate ``records`` against the chain, enrich what is new, and seal it.

    The job's three steps in one process: :func:`plan_chain`, :func:`encode_records` per
    segment, :func:`commit_chain`. See :func:`plan_chain` for the arguments.
    """
    plan, stored = plan_chain(
        store,
        chain_id,
        records,
        signer=signer,
        spec=spec,
        policy=policy,
        side_events=side_events,
        enrich=enrich,
        trust=trust,
        personal=personal,
        supervision=supervision,
    )
    return encode_and_commit(store, plan, stored, signer=signer, spec=spec, trust=trust)


def encode_and_commit(
    store: ObjectStore,
    plan: ChainPlan,
    stored: Sequence[Sequence[Record]],
    *,
    signer: Ed25519Signer,
    spec: SealSpec,
    trust: TrustStore | None = None,
) -> dict[str, Any]:
    """Encode each planned segment whole, here, and commit the chain (:func:`commit_chain`).

    The same bytes as encoding :func:`work_units` on other workers: what the job does with a
    chain small enough that moving its records to other workers would cost more than it spreads.
    """
    # Encoded one segment at a time as the commit asks for it, while the one before is written.
    parts = (
        [encode_records(records, segment.first_seq, segment.record_version)]
        for segment, records in zip(plan.segments, stored, strict=True)
    )
    return commit_chain(store, plan, parts, signer=signer, spec=spec, trust=trust)


def plan_chain(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    *,
    signer: Ed25519Signer,
    spec: SealSpec,
    policy: RetentionPolicy,
    side_events: Sequence[Record] = (),
    enrich: EnrichConfig | None = None,
    trust: TrustStore | None = None,
    personal: PersonalSealer | None = None,
    supervision: ActivePolicies | None = None,
    holds: NewDataHolds | None = None,
) -> tuple[ChainPlan, list[list[Record]]]:
    """The serial decisions of one chain: what is new, enriched, scanned, in which segments.

    Returns the plan and, per planned segment, the records it stores (personal fields already
    sealed when ``personal`` is given), in seq order.

    ``side_events`` are this run's consent and template events from every chain: template events
    live on the WABA's chain, which may be sealed after the chains whose sends they govern.

    A chain that ends in objects no trusted key signed (:class:`UnsignedTailError`) is left
    unsealed and named in the summary's ``unsigned_tail``; the other chains of the run still seal.

    ``supervision``: the active policies (``coexarchive.supervision.at_ingest``); the new
    messages are scanned with them and their hits sealed in the same append. When they could
    not be verified, a ``scan_gap`` record is sealed instead and the summary's
    ``supervision_gap`` says why.

    ``holds``: the legal holds read from the sealed register this run (read here when None).
    """
    # Holds follow data: a segment holding records an active hold covers is held as it is
    # sealed, before its checkpoint commits it (read from the sealed register each run).
    if holds is None:
        holds = NewDataHolds.load(store, own_trust(signer, trust))
    writer = _writer(store, chain_id, signer, spec, policy, trust, personal, holds)
    try:
        state = writer.state()
    except UnsignedTailError as exc:
        return _held_back(chain_id, records, exc), []
    # A chain's batch is hundreds of thousands of acyclic records: the cyclic collector would
    # re-traverse all of them every few thousand allocations (a quarter of the time).
    with cyclic_gc_paused():
        index = DedupIndex(store, chain_id, committed_size=state.size, trust=writer.trust)
        # Arrival order (roughly event-time order) makes the writer's sort cheap. Enrichment
        # reads the batch as a whole, except for the WABA id, taken from the first record naming
        # one: when records name several, they go in classify's order, as they always have.
        classified = index.classify(records, ordered=False)
        if len(set(map(_waba_of, classified.to_seal)) - {None, ""}) > 1:
            classified = classified.in_priority_order()
        try:
            # Enrichment learns only from what the writer's keys signed, on this chain and on
            # its WABA's: an unsigned tail there holds this chain's events back too.
            to_seal = enrich_for_seal(
                store,
                chain_id,
                classified.to_seal,
                config=enrich or EnrichConfig(),
                trust=writer.trust,
                side_events=side_events,
                committed_size=state.size,
            )
        except UnsignedTailError as exc:
            return _held_back(chain_id, records, exc), []
        scan = scan_batch(chain_id, to_seal, supervision or ActivePolicies(), personal=personal)
        to_seal += scan.records
        planned = writer.plan(to_seal) if to_seal else []
        # Enrichment returns new objects for the records it flags: tell input from derived by id.
        inputs = set(map(_record_id_of, classified.to_seal))
        # Personal sealing keeps record ids and kinds, so the stored records count as the plain.
        counts = [_counts(stored, inputs) for _, stored in planned]
    plan = ChainPlan(
        chain_id,
        state,
        segments=tuple(segment for segment, _ in planned),
        counts=tuple(counts),
        inputs=len(classified.to_seal),
        duplicates=classified.duplicates,
        supervision_gap=scan.gap
        and f"chain {chain_id}: {scan.unscanned} message(s) not scanned by supervision: {scan.gap}",
        holds=holds,
    )
    return plan, [stored for _, stored in planned]


def _held_back(chain_id: str, records: Sequence[Record], exc: UnsignedTailError) -> ChainPlan:
    """The plan of a chain left unsealed because of an unsigned tail, named in its summary."""
    log.warning("%s", exc)
    summary = {
        "chain_id": chain_id,
        "sealed": 0,
        "observations": 0,
        "duplicates": 0,
        "concurrent": 0,
        "held_back": len(records),  # this chain's events wait until the tail is resolved
        "derived": {},
        "segments": 0,
        "tree_size": None,
        "unsigned_tail": str(exc),
        "supervision_gap": None,
    }
    return ChainPlan(chain_id, None, summary=summary)


def commit_chain(
    store: ObjectStore,
    plan: ChainPlan,
    parts: Iterable[Sequence[EncodedPart]],
    *,
    signer: Ed25519Signer,
    spec: SealSpec,
    trust: TrustStore | None = None,
) -> dict[str, Any]:
    """Write the planned segments from their encoded parts (one list per segment, in seq order)
    in order, then the chain's summary. Each segment is hashed and encoded into Parquet while
    the one before it is written (:meth:`ChainWriter.commit_segments`)."""
    if plan.summary is not None:
        return dict(plan.summary)
    if plan.state is None:
        raise SealError(f"chain {plan.chain_id}: a plan without a summary must carry a state")
    writer = _writer(store, plan.chain_id, signer, spec, None, trust, None, plan.holds).with_state(
        plan.state
    )
    sealed = observations = segments = 0
    derived: Counter[str] = Counter()
    results = writer.commit_segments(zip(plan.segments, parts, strict=True))
    for counts, result in zip(plan.counts, results, strict=True):
        # A concurrent run of the same input seals byte-identical segments; the one that commits
        # second finds them in place (``created`` false) and must not claim their records as new.
        if result.created:
            segments += 1
            sealed += counts.sealed
            observations += counts.observations
            derived.update(counts.derived)
    state = writer.state()
    return {
        "chain_id": plan.chain_id,
        "sealed": sealed,  # input events this run committed (observations included)
        "observations": observations,
        "duplicates": plan.duplicates,
        # Input events in segments a concurrent run had already committed, byte for byte.
        "concurrent": plan.inputs - sealed,
        "held_back": 0,
        "derived": dict(derived),
        "segments": segments,
        "tree_size": state.size,
        # What the archive head will state for this chain (its last committed manifest).
        "manifest": state.last_manifest,
        "supervision_gap": plan.supervision_gap,
    }


def work_units(
    plan: ChainPlan, stored: Sequence[Sequence[Record]], *, unit_records: int
) -> Iterator[WorkUnit]:
    """The planned segments' records in runs of at most ``unit_records``, for encoding.

    Small enough (``SealSpec.unit_records``) that two workers stay balanced on one chain even
    when it has only a few segments; large enough that each unit's overhead stays small.
    """
    if unit_records < 1:
        raise ConfigError(f"a work unit must hold at least one record, not {unit_records}")
    for number, (segment, records) in enumerate(zip(plan.segments, stored, strict=True)):
        for start in range(0, len(records), unit_records):
            yield WorkUnit(
                plan.chain_id,
                number,
                segment.first_seq + start,
                segment.record_version,
                records[start : start + unit_records],
            )


@dataclass(frozen=True)
class WorkUnit:
    """A run of one planned segment's stored records, from seq ``first_seq``."""

    chain_id: str
    segment: int  # its index in the chain's plan
    first_seq: int
    record_version: int
    records: Sequence[Record]

    def encode(self) -> EncodedPart:
        return encode_records(self.records, self.first_seq, self.record_version)


def _writer(
    store: ObjectStore,
    chain_id: str,
    signer: Ed25519Signer,
    spec: SealSpec,
    policy: RetentionPolicy | None,
    trust: TrustStore | None,
    personal: PersonalSealer | None,
    holds: NewDataHolds | None,
) -> ChainWriter:
    return ChainWriter(
        store,
        chain_id,
        signer=signer,
        archive_name=spec.archive_name,
        policy=policy,
        max_segment_records=spec.max_segment_records,
        trust=trust,
        personal=personal,
        legal_holds=holds,
    )


def _counts(records: Sequence[Record], inputs: set[str]) -> SegmentCounts:
    observation = Kind.OBSERVATION.value
    derived: Counter[str] = Counter()
    sealed = observations = 0
    for record in records:
        if record.record_id not in inputs:
            derived[record.kind] += 1  # consent events derived from opt-out keywords
        else:
            sealed += 1
            observations += record.kind == observation
    return SegmentCounts(sealed, observations, dict(derived))


_waba_of = operator.attrgetter("waba_id")
_record_id_of = operator.attrgetter("record_id")
