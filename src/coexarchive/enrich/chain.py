"""Enrich one chain's batch of new records: consent, templates, the 24-hour window and flags.

``enrich_chain`` is pure (records + context + config in, records out). ``enrich_for_seal`` is the
ingest pipeline's seam: it loads the chain's context from the archive and calls it, between
de-duplication and sealing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from coexarchive.enrich.consent import ConsentLedger, keyword_event
from coexarchive.enrich.context import ChainContext, load_context
from coexarchive.enrich.flags import ENRICHED_KINDS, EnrichConfig, Knowledge, apply, assess
from coexarchive.enrich.templates import TemplateRegistry
from coexarchive.enrich.window import EchoIndex, InboundIndex
from coexarchive.records import Kind, Record
from coexarchive.seal.keys import TrustStore
from coexarchive.store.base import ObjectStore

__all__ = ["collect_side_events", "enrich_chain", "enrich_for_seal", "knowledge_of"]

# Kinds whose enrichment reads the chain's past; a batch without them needs no context.
_CONTEXT_KINDS = frozenset({Kind.OUTBOUND.value, Kind.STATUS.value, Kind.ECHO.value})
_MESSAGE = Kind.MESSAGE.value  # the only kind keyword_event reads


def knowledge_of(context: ChainContext, *, horizon_ms: int) -> Knowledge:
    return Knowledge(
        ledger=ConsentLedger(context.consent_events),
        registry=TemplateRegistry(context.template_events),
        inbound=InboundIndex(context.inbound),
        echoes=EchoIndex(context.echo_times),
        captured=set(context.captured),
        horizon_ms=horizon_ms,
    )


def enrich_chain(
    records: Sequence[Record],
    context: ChainContext,
    *,
    config: EnrichConfig,
    horizon_ms: int | None = None,
) -> list[Record]:
    """``records`` with enrichment columns and flags set, plus keyword consent records.

    Everything in ``records`` counts as known, whatever order it came in: a consent or template
    event in the same batch applies to a send after it. ``horizon_ms`` (default: the batch's latest
    receive or event time) is what the status grace period is measured against.
    """
    keywords = config.keywords
    derived = [
        event
        for record in records
        if record.kind == _MESSAGE and (event := keyword_event(record, keywords)) is not None
    ]
    batch = ChainContext(context.chain_id, context.waba_id)
    batch.add(records)
    batch.add(derived)
    merged = ChainContext(
        context.chain_id,
        context.waba_id,
        consent_events=[*context.consent_events, *batch.consent_events],
        template_events=[*context.template_events, *batch.template_events],
        inbound=[*context.inbound, *batch.inbound],
        echo_times=[*context.echo_times, *batch.echo_times],
        captured=context.captured | batch.captured,
    )
    if horizon_ms is None:
        horizon_ms = max(
            (r.event_time if r.received_time is None else r.received_time for r in records),
            default=0,
        )
    knowledge = knowledge_of(merged, horizon_ms=horizon_ms)
    enriched = []
    for record in [*records, *derived]:
        # assess() is None for every other kind: most records (inbound messages) skip the call.
        if record.kind in ENRICHED_KINDS:
            assessment = assess(record, knowledge, config)
            if assessment is not None:
                record = apply(record, assessment)
        enriched.append(record)
    return enriched


def enrich_for_seal(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    *,
    config: EnrichConfig,
    trust: TrustStore,
    side_events: Iterable[Record] = (),
    horizon_ms: int | None = None,
    committed_size: int | None = None,
) -> list[Record]:
    """Enrich the records about to be sealed on ``chain_id`` with what the archive knows: what
    its checkpoints, and the WABA chain's, commit under ``trust`` (``enrich.context``).

    ``side_events`` are the current run's template events from every chain (see
    :func:`collect_side_events`): the WABA chain holding them may be sealed after this one.
    ``committed_size``: the chain's committed size, when the caller has read it (0: a new
    chain, whose own past is not listed).
    """
    waba_id = next((r.waba_id for r in records if r.waba_id), None) or config.waba_ids.get(chain_id)
    timed = [r.event_time for r in records if r.kind in _CONTEXT_KINDS]
    if timed:
        context = load_context(
            store, chain_id, since_ms=min(timed), until_ms=max(timed), trust=trust,
            waba_id=waba_id, config=config, committed_size=committed_size,
        )  # fmt: skip
    else:
        context = ChainContext(chain_id, waba_id)
    context.add_side_events(side_events)
    return enrich_chain(records, context, config=config, horizon_ms=horizon_ms)


def collect_side_events(records: Iterable[Record]) -> list[Record]:
    """The records of a run every chain's enrichment needs: template events (on WABA chains)."""
    return [record for record in records if record.kind == Kind.TEMPLATE_EVENT]
