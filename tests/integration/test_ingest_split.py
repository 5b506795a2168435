"""The ingest job's encode units, spread over two worker processes, seal the archive one worker
seals with whole segments, byte for byte.

The job plans each chain on one worker, encodes its records in units of ``unit_records`` keyed so
the runner deals them out to every worker, and commits per chain. Here the same raw objects go
into two buckets of the real S3 server: once on ``FnApiRunner`` in this process with one unit per
segment (what ``ChainWriter.append`` does; each chain is small, so it is encoded and committed
where it was planned), once on two ``multi_processing`` workers spreading every chain in units of
a few records, in two runs so that the second continues chains the first left with a tail. Every
object must be identical and the archive must verify.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive.commands import upload_raw
from coexarchive.retention import RetentionPolicy
from coexarchive.store import EmbeddedS3, S3Store
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.verify import verify_archive
from pipelines.ingest import IngestSummary, SealSpec, StoreSpec, run_pipeline
from support.archive import SIM_AUTH, signer, trust_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
CONFIG = SimulationConfig(seed=11, customers=5, days=3, deliveries_per_object=10)
ONE_WORKER = ["--runner=FnApiRunner"]
TWO_WORKERS = [
    "--runner=FnApiRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]


def ingest(
    store: S3Store, seaweed: EmbeddedS3, seal: SealSpec, keys: list[str], options: list[str]
) -> IngestSummary:
    spec = StoreSpec(store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    return run_pipeline(sorted(keys), spec, seal, PipelineOptions(options), auth=SIM_AUTH)


def test_units_on_two_workers_seal_what_whole_segments_on_one_seal(
    seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    seal = SealSpec(str(key_file), "coexarchive.test", "GOVERNANCE:1", max_segment_records=40)
    whole = dataclasses.replace(seal, unit_records=1_000_000)
    units = dataclasses.replace(seal, spread_above=0, unit_records=7)
    sim = simulate(CONFIG)
    keys = sorted(key for key, _ in sim.objects)
    half = len(keys) // 2
    expected = seaweed.store(f"whole-{uuid.uuid4().hex[:12]}")
    got = seaweed.store(f"units-{uuid.uuid4().hex[:12]}")
    for store in (expected, got):
        upload_raw(store, sim.objects, policy=POLICY)

    import pipelines.ingest as ingest_module

    committed_where_planned: list[str] = []

    def counted(
        store: S3Store, plan: ingest_module.ChainPlan, *args: object, **kw: object
    ) -> object:
        committed_where_planned.append(plan.chain_id)
        return encode_and_commit(store, plan, *args, **kw)

    encode_and_commit = ingest_module.encode_and_commit
    monkeypatch.setattr(ingest_module, "encode_and_commit", counted)
    summaries = []
    for run_keys in (keys[:half], keys):  # the second run continues every chain's tail
        summaries.append(
            (
                ingest(expected, seaweed, whole, run_keys, ONE_WORKER),
                ingest(got, seaweed, units, run_keys, TWO_WORKERS),
            )
        )

    for one, two in summaries:
        assert two.lines() == one.lines()
    # The one-worker runs took the in-place path for every chain of both runs.
    assert len(committed_where_planned) == sum(one.chains for one, _ in summaries) > 0
    first, second = summaries[0][0], summaries[1][0]
    assert first.sealed > 0 and second.sealed > 0 and second.duplicates > 0
    # Segments larger than a unit, so units really split them.
    assert first.sealed + second.sealed > 7 * (first.segments + second.segments)
    want = {key: expected.get(key) for key in expected.list("")}
    have = {key: got.get(key) for key in got.list("")}
    assert sorted(have) == sorted(want)
    assert [key for key in want if want[key] != have[key]] == []
    report = verify_archive(got, trust_for(signer()))
    assert report.ok
