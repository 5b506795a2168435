"""End to end on a real S3 server: simulated traffic → raw/ → Beam ingest → sealed archive.

Every generated event is in the archive exactly once — after duplicate deliveries, a re-run of the
job, and Meta-style re-deliveries landed days later — malformed input is quarantined with its valid
siblings archived, and ``verify`` passes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive import quarantine
from coexarchive.commands import upload_raw
from coexarchive.normalize._base import follow_up_record_id
from coexarchive.retention import RetentionPolicy
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store.s3 import S3Store
from coexarchive.testing import Simulation, SimulationConfig, redelivery, simulate
from coexarchive.testing.model import FOLLOW_UP_SUFFIX
from coexarchive.verify import chains_in, verify_archive
from pipelines.ingest import IngestSummary, run_pipeline
from support.archive import SIM_AUTH, signer, trust_for
from support.ingest_world import s3_ingest_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
WAMID_KINDS = {"message", "echo", "outbound", "history_message", "message_edit", "message_revoke"}
CONFIG = SimulationConfig(seed=11, customers=6, days=3)


@pytest.fixture
def world(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    return s3_ingest_world(s3_store, seaweed, tmp_path, monkeypatch)


def ingest(world: dict[str, Any], keys: list[str]) -> IngestSummary:
    return run_pipeline(
        sorted(keys),
        world["spec"],
        world["seal"],
        PipelineOptions(["--runner=FnApiRunner"]),
        auth=SIM_AUTH,
    )


def archive_rows(store: S3Store) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chain in chains_in(store):
        for key in list_manifests(store, chain):
            manifest = Manifest.from_bytes(store.get(key))
            table = read_segment(store.get(manifest.segment.key))
            rows += table.select(
                ["chain_id", "kind", "wamid", "status", "ref_record_id", "record_id"]
            ).to_pylist()
    return rows


def assert_exactly_once(sim: Simulation, rows: list[dict[str, Any]]) -> None:
    sealed = Counter()
    for row in rows:
        if row["kind"] in WAMID_KINDS:
            key = row["wamid"]
            if row["record_id"] == follow_up_record_id(row["chain_id"], key):
                key += FOLLOW_UP_SUFFIX  # a history media follow-up beside its placeholder
            sealed[(row["kind"], row["chain_id"], key)] += 1
        elif row["kind"] == "status":
            sealed[("status", row["chain_id"], f"{row['wamid']}:{row['status']}")] += 1
    expected = Counter(
        (e.kind, e.chain_id, e.key) for e in sim.expected if e.kind in WAMID_KINDS | {"status"}
    )
    missing = expected - sealed
    extra = sealed - expected
    assert not missing, f"events missing from the archive: {sorted(missing)[:5]}"
    assert not extra, f"events sealed more than once or unexpected: {sorted(extra)[:5]}"
    # Events without a wamid: the same number of each kind per chain.
    # Keyword opt-outs and opt-ins derived from inbound text carry their source message's wamid;
    # the generator does not list them as events of their own.
    other = Counter(
        (r["kind"], r["chain_id"])
        for r in rows
        if r["kind"] not in WAMID_KINDS | {"status", "observation"}
        and not (r["kind"] == "consent_event" and r["wamid"] is not None)
    )
    other_expected = Counter(
        (e.kind, e.chain_id) for e in sim.expected if e.kind not in WAMID_KINDS | {"status"}
    )
    assert other == other_expected


def test_every_event_archived_exactly_once(world: dict[str, Any]) -> None:
    store: S3Store = world["store"]
    sim = simulate(CONFIG)
    upload_raw(store, sim.objects, policy=POLICY)
    first = ingest(world, [k for k, _ in sim.objects])
    assert first.quarantined >= sim.malformed
    assert first.duplicates >= sim.duplicates
    rows = archive_rows(store)
    assert_exactly_once(sim, rows)

    # The same job again: nothing new is sealed and no object is added.
    before = sorted(store.list(""))
    again = ingest(world, [k for k, _ in sim.objects])
    assert (again.sealed, again.segments) == (0, 0)
    assert sorted(store.list("")) == before

    # Meta re-delivers some of them five days later, under new raw objects.
    late = redelivery(sim, CONFIG, days_later=5, count=40)
    upload_raw(store, late, policy=POLICY)
    redelivered = ingest(world, [k for k, _ in late])
    assert redelivered.sealed == 0 and redelivered.duplicates > 0
    assert_exactly_once(sim, archive_rows(store))

    trust = trust_for(signer())
    report = verify_archive(store, trust)
    assert report.records_checked == len(archive_rows(store))

    # Quarantine points at the exact raw lines that were malformed.
    where = {(e.item.raw_key, e.item.raw_line) for e in quarantine.entries(store)}
    assert {(key, line) for key, line, _ in sim.malformed_at} <= where
