"""The pure half of the job's sealing step: one chain's new records → de-duplicated, sealed."""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Sequence
from typing import Any

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.dedup import DedupIndex
from coexarchive.enrich import EnrichConfig, enrich_for_seal
from coexarchive.export.holds import NewDataHolds
from coexarchive.records import Kind, Record
from coexarchive.resume import UnsignedTailError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import ChainWriter, SegmentResult
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.at_ingest import ActivePolicies, scan_batch
from pipelines.specs import SealSpec

log = logging.getLogger(__name__)


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

    ``side_events`` are this run's consent and template events from every chain: template events
    live on the WABA's chain, which may be sealed after the chains whose sends they govern.

    A chain that ends in objects no trusted key signed (:class:`UnsignedTailError`) is left
    unsealed and named in the summary's ``unsigned_tail``; the other chains of the run still seal.

    ``supervision``: the active policies (``coexarchive.supervision.at_ingest``); the new
    messages are scanned with them and their hits sealed in the same append. When they could
    not be verified, a ``scan_gap`` record is sealed instead and the summary's
    ``supervision_gap`` says why.
    """
    writer = ChainWriter(
        store,
        chain_id,
        signer=signer,
        archive_name=spec.archive_name,
        policy=policy,
        max_segment_records=spec.max_segment_records,
        trust=trust,
        personal=personal,
        # Holds follow data: a segment holding records an active hold covers is held as it is
        # sealed, before its checkpoint commits it (read from the sealed register each run).
        legal_holds=NewDataHolds.load(store),
    )
    try:
        state = writer.state()
    except UnsignedTailError as exc:
        log.warning("%s", exc)
        return {
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
    # A chain's batch is hundreds of thousands of acyclic records: the cyclic collector would
    # re-traverse all of them every few thousand allocations (a quarter of the time).
    with cyclic_gc_paused():
        index = DedupIndex(store, chain_id, committed_size=state.size)
        # Arrival order (roughly event-time order) makes the writer's sort cheap. Enrichment
        # reads the batch as a whole, except for the WABA id, taken from the first record naming
        # one: when records name several, they go in classify's order, as they always have.
        classified = index.classify(records, ordered=False)
        if len(set(map(_waba_of, classified.to_seal)) - {None, ""}) > 1:
            classified = classified.in_priority_order()
        to_seal = enrich_for_seal(
            store,
            chain_id,
            classified.to_seal,
            config=enrich or EnrichConfig(),
            side_events=side_events,
        )
        scan = scan_batch(chain_id, to_seal, supervision or ActivePolicies(), personal=personal)
        to_seal += scan.records
        results = writer.append(to_seal) if to_seal else []
    written = _written_by_this_run(to_seal, state.size, results)
    # Enrichment returns new objects for the records it flags: tell input from derived by id.
    inputs = set(map(_record_id_of, classified.to_seal))
    observation = Kind.OBSERVATION.value
    derived: Counter[str] = Counter()
    sealed = observations = 0
    for record in written:
        if record.record_id not in inputs:
            derived[record.kind] += 1  # consent events derived from opt-out keywords
        else:
            sealed += 1
            observations += record.kind == observation
    return {
        "chain_id": chain_id,
        "sealed": sealed,  # input events this run committed (observations included)
        "observations": observations,
        "duplicates": classified.duplicates,
        # Input events in segments a concurrent run had already committed, byte for byte.
        "concurrent": len(classified.to_seal) - sealed,
        "held_back": 0,
        "derived": dict(derived),
        "segments": sum(1 for result in results if result.created),
        "tree_size": writer.state().size,
        # What the archive head will state for this chain (its last committed manifest).
        "manifest": writer.state().last_manifest,
        "supervision_gap": scan.gap
        and f"chain {chain_id}: {scan.unscanned} message(s) not scanned by supervision: {scan.gap}",
    }


# The order ChainWriter.append gives sealed records their seqs: the i-th of this order gets
# seq ``first + i``, which ties each record to the segment (and manifest) holding it.
_writer_order = operator.attrgetter("event_time", "record_id")


def _written_by_this_run(
    to_seal: Sequence[Record], first: int, results: Sequence[SegmentResult]
) -> list[Record]:
    """The records of ``to_seal`` in segments this run created (not found already committed).

    A concurrent run of the same input seals byte-identical segments; the one that commits
    second finds them in place (``created`` false) and must not claim their records as new.
    """
    if all(result.created for result in results):
        return list(to_seal)
    ordered = sorted(to_seal, key=_writer_order)
    written: list[Record] = []
    for result in results:
        if result.created:
            manifest = result.manifest
            written += ordered[manifest.first_seq - first : manifest.last_seq - first + 1]
    return written


_waba_of = operator.attrgetter("waba_id")
_record_id_of = operator.attrgetter("record_id")
