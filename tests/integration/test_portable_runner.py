"""Ingest on Beam's portability path gives the archive the in-process runner gives, byte for byte.

Flink, Spark and Dataflow run Python pipelines as a pipeline proto handed to a job service, whose
SDK harnesses run in other processes and talk the Fn API. Here the embedded job service and an
external worker pool (``support.portable``) take that path on one machine, against the real S3
server: the same raw objects are ingested once with ``FnApiRunner`` and once portably, into two
buckets, and every sealed object (segments, record indexes, manifests, checkpoints, dedup index,
archive head) must be identical. The local run seals each chain where it plans it; the portable
run spreads every chain's records over the harnesses in small units. Both archives then verify.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive.commands import upload_raw
from coexarchive.retention import RetentionPolicy
from coexarchive.store import EmbeddedS3, S3Store, layout
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.verify import verify_archive
from pipelines.ingest import IngestSummary, SealSpec, StoreSpec, run_pipeline
from pipelines.verify import verify_with_beam
from support.archive import SIM_AUTH, signer, trust_for
from support.portable import portable_options, worker_pool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
# Several chains, duplicates, malformed lines (quarantine) and enrichment's side events.
CONFIG = SimulationConfig(seed=7, customers=4, days=2)


def objects_of(store: S3Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list("")}


def ingest(
    store: S3Store,
    seaweed: EmbeddedS3,
    key_file: Path,
    keys: list[str],
    options: PipelineOptions,
    *,
    spread: bool = False,
) -> IngestSummary:
    """``spread``: every chain's records go to the workers in units of 7 (plans, units and
    encoded parts all cross the Fn API); else each small chain is sealed where it is planned."""
    spec = StoreSpec(store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    seal = SealSpec(str(key_file), "coexarchive.test", "GOVERNANCE:1", max_segment_records=50)
    if spread:
        seal = dataclasses.replace(seal, spread_above=0, unit_records=7)
    return run_pipeline(sorted(keys), spec, seal, options, auth=SIM_AUTH)


def test_portable_ingest_seals_the_archive_the_local_runner_seals(
    seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    sim = simulate(CONFIG)
    local = seaweed.store(f"local-{uuid.uuid4().hex[:12]}")
    portable = seaweed.store(f"portable-{uuid.uuid4().hex[:12]}")
    for store in (local, portable):
        upload_raw(store, sim.objects, policy=POLICY)
    keys = [key for key, _ in sim.objects]

    trust = trust_for(signer())
    expected = ingest(local, seaweed, key_file, keys, PipelineOptions(["--runner=FnApiRunner"]))
    with worker_pool(os.environ) as pool:
        got = ingest(portable, seaweed, key_file, keys, portable_options(pool.address), spread=True)
        spec = StoreSpec(
            portable.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1"
        )
        verified = verify_with_beam(spec, trust, portable_options(pool.address))
        harnesses = pool.harnesses_started
    # The steps ran in harness processes the pool started, not in this one.
    assert harnesses >= 2, harnesses

    # The job's counters come back through the job service's metrics as well.
    assert got.lines() == expected.lines()
    assert expected.sealed > 0 and expected.segments > 1 and expected.quarantined > 0
    local_objects, portable_objects = objects_of(local), objects_of(portable)
    assert sorted(portable_objects) == sorted(local_objects)
    differing = [k for k in local_objects if local_objects[k] != portable_objects[k]]
    assert differing == []
    sealed = {k for k in local_objects if not k.startswith(layout.RAW_PREFIX)}
    for prefix in (layout.ARCHIVE_PREFIX, layout.MANIFEST_PREFIX, layout.CHECKPOINT_PREFIX):
        assert any(k.startswith(prefix) for k in sealed), prefix

    # Verification as a job on the portable runner reports what the local verify reports.
    local_report = verify_archive(portable, trust)
    assert verified.to_json() == local_report.to_json()
    assert verified.records_checked == expected.sealed + sum(expected.derived.values())
