"""A simulated archive (the demo's traffic), sealed in-process with enrichment, for the
supervision tests: the same texts the demo produces, on any store."""

from __future__ import annotations

from collections import defaultdict

from coexarchive.archive_head import write_head_after
from coexarchive.dedup import DedupIndex
from coexarchive.enrich import EnrichConfig, collect_side_events, enrich_for_seal
from coexarchive.records import Record
from coexarchive.segments import ChainWriter, Manifest
from coexarchive.store.base import ObjectStore
from coexarchive.testing import SimulationConfig, simulate
from pipelines.ingest import normalize_object
from support.archive import ARCHIVE, SIM_AUTH, short_policy, signer

SIGNER = signer()
CONFIG = SimulationConfig(seed=7, customers=12, days=3)


def build_demo(store: ObjectStore, config: SimulationConfig = CONFIG) -> dict[str, int]:
    """Simulate, normalise, enrich and seal every chain; one archive head for the run."""
    by_chain: dict[str, list[Record]] = defaultdict(list)
    for key, data in simulate(config).objects:
        chains, _bad = normalize_object(key, data, auth=SIM_AUTH)
        for chain_id, records in chains.items():
            by_chain[chain_id].extend(records)
    everything = [record for records in by_chain.values() for record in records]
    side = collect_side_events(everything)
    manifests: list[Manifest] = []
    sealed: dict[str, int] = {}
    for chain_id in sorted(by_chain):
        writer = ChainWriter(
            store, chain_id, signer=SIGNER, archive_name=ARCHIVE, policy=short_policy()
        )
        index = DedupIndex(store, chain_id, committed_size=writer.state().size, trust=writer.trust)
        to_seal = enrich_for_seal(
            store,
            chain_id,
            index.classify(by_chain[chain_id]).to_seal,
            config=EnrichConfig(),
            trust=writer.trust,
            side_events=side,
        )
        if to_seal:
            manifests += [result.manifest for result in writer.append(to_seal)]
        sealed[chain_id] = len(to_seal)
    write_head_after(store, manifests, signer=SIGNER, archive_name=ARCHIVE)
    return sealed
