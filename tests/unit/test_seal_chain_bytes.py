"""The serial per-chain step seals exactly the bytes it always has, whatever the arrival order.

The pinned digests cover every object key (segment keys carry their Merkle root, index keys their
date and root) and every signed checkpoint, whose root and chain hash commit to each sealed
record's canonical bytes and order. Segment and index bytes themselves depend on the pyarrow and
zstd versions, so they are compared between runs instead of pinned. The digests were taken from
the code before the per-chain step was optimised, and re-taken when every record began to say
which secret authenticated its delivery (``detail.delivery_auth``, ``detail.delivery_key_id``),
and again when the writer began to sign an intent before each manifest (the keys and bytes of
``intents/`` are covered; without them the digests are the previous ones). A change to them is a
change to sealed output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence

import pytest

from coexarchive.dedup import DedupIndex
from coexarchive.enrich import collect_side_events
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.store.memory import MemoryStore
from coexarchive.testing import SimulationConfig, bulk_objects, redelivery, simulate
from pipelines.ingest import SealSpec, normalize_object, seal_chain
from support.archive import SIM_AUTH, signer

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
# Re-pinned when simulated attachments got their real SHA-256 and history media follow-ups their
# own record beside the placeholder.
SIM_DIGEST = "c166f27d898b49aeb36fcdb8e4b0e9a300936fc97199aca5b155ddbbe7a31917"
BULK_DIGEST = "dc197a215aaa3ba938d5cad2c54b797ee7d52a1bb8b4487ad0ca83dd33b09486"
Objects = Sequence[tuple[str, bytes]]
SIGNED = ("checkpoints/", "intents/")  # signed notes: Ed25519 is deterministic, so pin their bytes


def normalised(objects: Objects) -> tuple[dict[str, list[Record]], list[Record]]:
    by_chain: dict[str, list[Record]] = defaultdict(list)
    side: list[Record] = []
    for key, data in objects:
        found, _ = normalize_object(key, data, auth=SIM_AUTH)
        for chain_id, records in found.items():
            by_chain[chain_id].extend(records)
            side += collect_side_events(records)
    return by_chain, side


def seal_passes(passes: Sequence[Objects], *, shuffle: int, segment: int) -> MemoryStore:
    store = MemoryStore()
    spec = SealSpec("unused", "bench.coexarchive", "GOVERNANCE:1", segment)
    for objects in passes:
        by_chain, side = normalised(objects)
        for chain_id in sorted(by_chain):
            records = by_chain[chain_id]
            random.Random(shuffle).shuffle(records)
            seal_chain(
                store,
                chain_id,
                records,
                signer=signer(),
                spec=spec,
                policy=POLICY,
                side_events=side,
            )
    return store


def digest(store: MemoryStore) -> str:
    lines = "".join(
        f"{key} {hashlib.sha256(data).hexdigest() if key.startswith(SIGNED) else '-'}\n"
        for key, data in sorted(store.unsafe_objects.items())
    )
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.fixture(scope="module")
def sim_passes() -> list[list[tuple[str, bytes]]]:
    # Half the objects, then all of them (duplicates, observations), then Meta's late retries.
    config = SimulationConfig()
    sim = simulate(config)
    half = len(sim.objects) // 2
    late = redelivery(sim, config, days_later=5, count=40)
    return [sim.objects[:half], sim.objects, late]


def test_simulation_seals_the_pinned_bytes_in_any_order(
    sim_passes: list[list[tuple[str, bytes]]],
) -> None:
    first = seal_passes(sim_passes, shuffle=3, segment=300)
    assert digest(first) == SIM_DIGEST
    again = seal_passes(sim_passes, shuffle=4, segment=300)
    assert again.unsafe_objects == first.unsafe_objects


def test_one_number_bulk_seals_the_pinned_bytes() -> None:
    store = seal_passes([bulk_objects(20_000, 17, 5_000)], shuffle=0, segment=100_000)
    assert digest(store) == BULK_DIGEST


def test_records_naming_several_wabas_seal_alike_in_any_order(
    sim_passes: list[list[tuple[str, bytes]]],
) -> None:
    # Enrichment takes the WABA id of the first record naming one, in classify's order: with
    # several, seal_chain puts the batch in that order before enriching.
    by_chain, _ = normalised(sim_passes[0])
    chain_id = max(by_chain, key=lambda c: len(by_chain[c]))
    records = by_chain[chain_id]
    mixed = [
        dataclasses.replace(r, waba_id="800000000000999") if i % 3 == 0 and r.waba_id else r
        for i, r in enumerate(records)
    ]
    stores = []
    for seed in (1, 2):
        shuffled = list(mixed)
        random.Random(seed).shuffle(shuffled)
        store = MemoryStore()
        spec = SealSpec("unused", "bench.coexarchive", "GOVERNANCE:1", 300)
        seal_chain(store, chain_id, shuffled, signer=signer(), spec=spec, policy=POLICY)
        stores.append(store.unsafe_objects)
    assert stores[0] == stores[1]


def test_unordered_classify_holds_what_classify_gives(
    sim_passes: list[list[tuple[str, bytes]]],
) -> None:
    by_chain, _ = normalised(sim_passes[1] + sim_passes[2])
    for chain_id, records in sorted(by_chain.items()):
        history = [dataclasses.replace(r, kind="history_message") for r in records[::5]]
        batch = [*records, *history]
        random.Random(7).shuffle(batch)
        ordered = DedupIndex(MemoryStore(), chain_id, committed_size=0).classify(batch)
        unordered = DedupIndex(MemoryStore(), chain_id, committed_size=0).classify(
            batch, ordered=False
        )
        again = unordered.in_priority_order()
        assert (again.new, again.observations) == (ordered.new, ordered.observations)
        assert again.duplicates == ordered.duplicates
