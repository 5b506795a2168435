"""Quarantined input re-driven after a parser fix: newly parseable events sealed once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import pipelines.normalize_step as normalize_step
from coexarchive import quarantine
from coexarchive.cli import main
from coexarchive.commands import upload_raw
from coexarchive.normalize import NormalizeResult, Quarantined, normalize_delivery
from coexarchive.retention import RetentionPolicy
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store.s3 import S3Store
from coexarchive.testing import SimulationConfig, simulate
from pipelines.ingest import SealSpec, StoreSpec, run_pipeline
from support.archive import SIM_AUTH, signer

pytestmark = pytest.mark.integration


def old_parser(body: bytes, **kwargs: Any) -> NormalizeResult:
    """A parser that has not learnt reactions yet: it quarantines them, keeping the rest."""
    result = normalize_delivery(body, **kwargs)
    kept = [r for r in result.records if r.msg_type != "reaction"]
    lost = [
        Quarantined(r.raw_key or "", r.raw_line or 0, "unknown message type", "reaction", b"{}")
        for r in result.records
        if r.msg_type == "reaction"
    ]
    return NormalizeResult(kept, [*result.quarantined, *lost])


def record_ids(store: S3Store) -> list[str]:
    found: list[str] = []
    for key in list_manifests(store, "900000000000001"):
        segment = Manifest.from_bytes(store.get(key)).segment.key
        found += read_segment(store.get(segment)).column("record_id").to_pylist()
    return found


def test_redrive_seals_what_the_fixed_parser_understands(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    sim = simulate(SimulationConfig(seed=5, customers=4, days=2, malformed_rate=0.0))
    upload_raw(s3_store, sim.objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))

    monkeypatch.setattr(normalize_step, "normalize_delivery", old_parser)
    spec = StoreSpec(s3_store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    seal = SealSpec(str(key_file), "coexarchive.test", "GOVERNANCE:1")
    first = run_pipeline(
        [k for k, _ in sim.objects],
        spec,
        seal,
        PipelineOptions(["--runner=FnApiRunner"]),
        auth=SIM_AUTH,
    )
    reactions = sum(1 for e in quarantine.entries(s3_store) if e.item.location == "reaction")
    assert reactions > 0 and first.quarantined >= reactions
    before = record_ids(s3_store)
    monkeypatch.undo()

    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", s3_store.bucket)
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("COEXARCHIVE_SIGNING_KEY", str(key_file))
    monkeypatch.setenv("COEXARCHIVE_NAME", "coexarchive.test")
    monkeypatch.setenv("COEXARCHIVE_RETENTION", "GOVERNANCE:1")
    # The simulator's traffic is signed with the demo secret; redrive checks it again.
    monkeypatch.setenv("COEXARCHIVE_APP_SECRETS", "coexarchive-demo-app-secret")
    monkeypatch.setenv("COEXARCHIVE_OUTBOUND_TOKEN", "coexarchive-demo-app-secret")
    assert main(["redrive"]) == 0
    after = record_ids(s3_store)
    assert len(after) == len(before) + reactions
    assert len(set(after)) == len(after), "a record was sealed twice"
    assert set(before) < set(after)

    # A second re-drive finds nothing new to seal.
    assert main(["redrive"]) == 0
    assert record_ids(s3_store) == after
