"""Ingest as the pipeline does it, with enrichment between de-duplication and sealing.

``seal_chain`` mirrors ``pipelines.ingest.seal_chain`` with the integration lines the pipeline
adopts (``enrich_for_seal`` on ``classified.to_seal``, side events from the whole run).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from coexarchive.dedup import DedupIndex
from coexarchive.enrich import EnrichConfig, collect_side_events, current_flags, enrich_for_seal
from coexarchive.enrich.context import load_context, read_records, waba_chain
from coexarchive.enrich.crm import ConsentImport, parse_consent_file
from coexarchive.enrich.reassess import reassess
from coexarchive.enrich.sealing import seal_new
from coexarchive.enrich.templates import TemplateRegistry, catalogue_records, parse_catalogue
from coexarchive.raw import DeliveryAuth
from coexarchive.records import Kind, Record
from coexarchive.segments import ChainWriter
from coexarchive.store.base import ObjectStore
from pipelines.ingest import normalize_object
from support.archive import ARCHIVE, short_policy, signer, trust_for

SIGNER = signer()
TRUST = trust_for(SIGNER)
POLICY = short_policy()
CONFIG = EnrichConfig()
ALL_KINDS = {kind.value for kind in Kind}
# The golden scenario signs its deliveries, webhooks and captures alike, with this secret.
AUTH = DeliveryAuth((b"golden-secret",), (b"golden-secret",))


def seal_chain(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    side: Sequence[Record],
    *,
    max_segment_records: int = 100_000,
) -> int:
    writer = ChainWriter(
        store,
        chain_id,
        signer=SIGNER,
        archive_name=ARCHIVE,
        policy=POLICY,
        max_segment_records=max_segment_records,
    )
    state = writer.state()
    index = DedupIndex(store, chain_id, committed_size=state.size, trust=TRUST)
    classified = index.classify(records)
    to_seal = enrich_for_seal(
        store,
        chain_id,
        classified.to_seal,
        config=CONFIG,
        trust=TRUST,
        side_events=side,
        committed_size=state.size,
    )
    if to_seal:
        writer.append(to_seal)
    return len(to_seal)


def ingest(
    store: ObjectStore,
    objects: Iterable[tuple[str, bytes]],
    *,
    side_inputs: bool = True,
    max_segment_records: int = 100_000,
) -> dict[str, int]:
    """One run: every chain's records sealed, chains in sorted order (phone chains before
    ``waba-…``: template events are sealed after the messages that use them)."""
    by_chain: dict[str, list[Record]] = defaultdict(list)
    for key, data in objects:
        chains, bad = normalize_object(key, data, auth=AUTH)
        assert not bad, bad
        for chain_id, records in chains.items():
            by_chain[chain_id].extend(records)
    everything = [record for records in by_chain.values() for record in records]
    side = collect_side_events(everything) if side_inputs else []
    return {
        chain: seal_chain(
            store, chain, by_chain[chain], side, max_segment_records=max_segment_records
        )
        for chain in sorted(by_chain)
    }


def import_consent(store: ObjectStore, data: bytes, *, chain_id: str, now_ms: int) -> ConsentImport:
    parsed = parse_consent_file(
        data, fmt="csv", source_name="crm.csv", now_ms=now_ms, chain_id=chain_id
    )
    if parsed.records:
        seal_new(
            store, chain_id, parsed.records, signer=SIGNER, archive_name=ARCHIVE, policy=POLICY
        )
    return parsed


def import_catalogue(
    store: ObjectStore, data: bytes, *, waba_id: str, as_of_ms: int, now_ms: int
) -> tuple[int, list[str]]:
    entries, problems = parse_catalogue(data)
    chain_id = waba_chain(waba_id)
    context = load_context(
        store, chain_id, since_ms=as_of_ms, until_ms=as_of_ms, trust=TRUST, waba_id=waba_id
    )
    records = catalogue_records(
        entries,
        waba_id=waba_id,
        as_of_ms=as_of_ms,
        imported_ms=now_ms,
        registry=TemplateRegistry(context.template_events),
    )
    if records:
        seal_new(store, chain_id, records, signer=SIGNER, archive_name=ARCHIVE, policy=POLICY)
    return len(records), problems


def run_reassess(store: ObjectStore, chain_id: str, *, now_ms: int) -> int:
    result = reassess(
        store, chain_id, since_ms=0, until_ms=now_ms, now_ms=now_ms, config=CONFIG, trust=TRUST
    )
    if result.changed:
        seal_new(
            store, chain_id, result.changed, signer=SIGNER, archive_name=ARCHIVE, policy=POLICY
        )
    return len(result.changed)


def sealed(store: ObjectStore, chain_id: str) -> list[Record]:
    rows = read_records(store, chain_id, kinds=ALL_KINDS, since_ms=0, until_ms=2**62, trust=TRUST)
    return [record for _, record in rows]


def key_of(record: Record) -> tuple[Any, ...]:
    if record.kind == Kind.OUTBOUND:
        return ("outbound", record.wamid)
    if record.kind == Kind.STATUS:
        return ("status", record.wamid, record.status)
    if record.kind == Kind.ACCOUNT_EVENT:
        return ("account", record.msg_type, record.status, record.event_time)
    return ("other", record.kind, record.record_id)


def effective(store: ObjectStore, chains: Iterable[str]) -> dict[tuple[Any, ...], frozenset[str]]:
    """Every record's current flags (sealed, or from its latest assessment), by scenario key."""
    out: dict[tuple[Any, ...], frozenset[str]] = {}
    for chain_id in chains:
        records = sealed(store, chain_id)
        flags = current_flags(records)
        for record in records:
            if record.kind != Kind.ASSESSMENT:
                out[key_of(record)] = frozenset(flags[record.record_id])
    return out
