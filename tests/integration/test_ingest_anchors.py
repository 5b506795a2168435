"""The ingest pipeline timestamps each head it writes; a TSA that is down leaves a named gap.

Beam ingest on a real S3 server with a loopback RFC 3161 authority (``openssl ts -reply``): the
first run finds the authority down, seals anyway and the archive reports the gap; the next run,
with the authority back, names the gap in its head, fills it, and verify then finds none.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive.anchor.timestamps import token_key
from coexarchive.anchor.tsa import load_tsa_file
from coexarchive.commands import upload_raw
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.head import AnchorLine, ArchiveHead, head_key
from coexarchive.store.s3 import S3Store
from coexarchive.testing import SimulationConfig, simulate
from coexarchive.testing.tsa import LocalTsa
from coexarchive.verify import verify_archive
from pipelines.ingest import SealSpec, StoreSpec, run_pipeline
from support.archive import SIM_AUTH, signer, trust_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARCHIVE = "coexarchive.test"


def newest_head(store: S3Store) -> ArchiveHead:
    note = store.get(list(store.list("heads/"))[-1])
    return ArchiveHead.parse(note[: note.rfind(b"\n\n") + 1])


def test_a_tsa_down_during_ingest_leaves_a_gap_the_next_run_fills(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    spec = StoreSpec(s3_store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    sim = simulate(SimulationConfig(seed=5, customers=4, days=2, deliveries_per_object=25))
    assert len(sim.objects) >= 2
    upload_raw(s3_store, sim.objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    keys = [key for key, _ in sim.objects]

    with LocalTsa(tmp_path / "tsa") as tsa:
        tsa.start()
        tsa_file = tsa.write_tsa_file(tmp_path / "tsa.txt")
        [configured] = load_tsa_file(tsa_file)
        seal = SealSpec(str(key_file), ARCHIVE, "GOVERNANCE:1", tsa_file=str(tsa_file))

        def ingest(batch: list[str]) -> None:
            run_pipeline(
                batch, spec, seal, PipelineOptions(["--runner=FnApiRunner"]), auth=SIM_AUTH
            )

        tsa.stop()  # the authority is down for the first run
        ingest(keys[:1])
        first = newest_head(s3_store)
        assert not s3_store.exists(token_key(first.seq, "local-tsa"))
        report = verify_archive(s3_store, trust_for(signer()), tsas=[configured])
        assert report.timestamps is not None
        assert report.timestamps.gaps == {"local-tsa": [str(first.seq)]}

        tsa.start()  # back, on another port: the TSA file names it anew
        tsa.write_tsa_file(tsa_file)
        [configured] = load_tsa_file(tsa_file)
        seal = dataclasses.replace(seal, tsa_file=str(tsa_file))
        ingest(keys[1:])
        second = newest_head(s3_store)
        assert second.seq > first.seq
        assert AnchorLine("timestamp-missing", second.seq - 1, "local-tsa") in second.anchors
        assert s3_store.exists(token_key(first.seq, "local-tsa"))
        assert s3_store.exists(token_key(second.seq, "local-tsa"))
        assert s3_store.exists(head_key(second.seq))
        report = verify_archive(s3_store, trust_for(signer()), tsas=[configured])
        assert report.timestamps is not None
        assert report.timestamps.gaps == {}
