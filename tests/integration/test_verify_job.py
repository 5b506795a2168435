"""`coexarchive verify --runner …`: the Beam job says what the local verify says, exit code too.

Sound archives and tampered ones (a segment gone, a checkpoint gone, a segment under a manifest
whose bytes were swapped, a pinned head the archive was cut below) go through the local verify
and the job on ``FnApiRunner`` with two worker processes; the JSON reports must be identical.
The job on the portable runner is in ``test_portable_runner.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from coexarchive.cli import main
from coexarchive.errors import Failure
from coexarchive.store.s3 import S3Store
from coexarchive.verify import ChainReport, ChainScope
from pipelines.verify import _results
from support.archive import ARCHIVE, build

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAINS = ("900000000000001", "900000000000002", "900000000000003")


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", s3_store.bucket)
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("COEXARCHIVE_NAME", ARCHIVE)
    built = [build(s3_store, chain_id=chain, days=(0, 1, 2), per_day=7) for chain in CHAINS]
    trust = tmp_path / "trust.txt"
    trust.write_text(built[0].signer.verifier_key() + "\n")
    monkeypatch.setenv("COEXARCHIVE_TRUST", str(trust))
    return built


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", *argv])
    return code, capsys.readouterr().out


def both(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Local verify and the job on FnApiRunner: the same exit code and output, or the test fails."""
    local = verify(capsys, *argv)
    job = verify(capsys, *argv, "--runner", "FnApiRunner", "--workers", "2")
    assert job == local
    return local


def test_a_sound_archive_reports_the_same_from_the_job(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = both(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert [c["records_checked"] for c in report["chains"]] == [21, 21, 21]
    # The text report too, line for line.
    code, out = both(capsys)
    assert code == 0 and out.splitlines()[-1].startswith("OK: 3 chain(s) verified")


def test_tampering_is_reported_the_same_by_the_job(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = archive
    client, bucket = first.store.client, first.store.bucket
    # A middle segment of one chain gone; a checkpoint of another; a third untouched.
    client.delete_object(Bucket=bucket, Key=first.manifests[1].segment.key)
    client.delete_object(Bucket=bucket, Key=second.manifests[2].checkpoint_key)
    code, out = both(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    steps = {(f["chain_id"], f["step"]) for f in report["failures"]}
    assert (first.chain_id, "objects") in steps and (second.chain_id, "checkpoint") in steps
    assert not any(chain == third.chain_id for chain, _ in steps)
    code, out = both(capsys)
    assert code == 1 and first.manifests[1].segment.key in out


def test_a_pinned_head_above_a_cut_archive_fails_in_the_job_too(
    archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain = archive[2]
    head = tmp_path / "head.note"
    assert main(["head", "--chain", chain.chain_id, "--out", str(head)]) == 0
    last = chain.manifests[-1]
    for key in (last.segment.key, last.record_index.key, last.key, last.checkpoint_key):
        chain.store.client.delete_object(Bucket=chain.store.bucket, Key=key)
    code, out = both(capsys, "--json", "--expect-head", str(head), "--chain", chain.chain_id)
    assert code == 1
    assert "tail truncated" in " ".join(f["message"] for f in json.loads(out)["failures"])


def test_one_chain_and_a_time_range_through_the_job(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = both(capsys, "--json", "--chain", CHAINS[1], "--since", "2026-01-06T00:00:00Z")
    report = json.loads(out)
    assert code == 0 and [c["chain_id"] for c in report["chains"]] == [CHAINS[1]]
    assert report["chains"][0]["records_checked"] == 14  # two of its three days


def test_a_chain_the_job_returned_nothing_for_fails_closed() -> None:
    answered = json.dumps(
        {"chain": ChainReport(chain_id="a", records_checked=3).to_json(), "failures": []}
    )
    results = _results(["a", "b"], [answered])
    assert [report.chain_id for report, _ in results] == ["a", "b"]
    assert results[0][1] == []
    [missing] = results[1][1]
    assert missing == Failure(
        "archive", "the verification job returned nothing for this chain", "b"
    )


def test_beam_arguments_without_a_runner_are_refused(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--", "--job_endpoint=embed"]) == 2
    assert "give --runner" in capsys.readouterr().err


def test_checks_of_other_manifest_bytes_are_not_taken(archive: Any) -> None:
    """A manifest written or rewritten after the workers read it counts as unchecked."""
    chain = archive[0]
    scope = ChainScope(archive_name=ARCHIVE)
    worker = scope.verifier(chain.store, chain.trust, chain.chain_id)
    checks = {m.key: worker.check_one(m, start) for m, start in worker.plan()}
    assert all(check.failures == () and check.rows == 7 for check in checks.values())

    whole = scope.verifier(chain.store, chain.trust, chain.chain_id)
    whole.run(None, None, checked=checks)
    assert whole.report.failures == [] and whole.chain.records_checked == 21

    stale = dict(checks)
    key = chain.manifests[1].key
    stale[key] = dataclasses.replace(checks[key], manifest_sha256="0" * 64)
    del stale[chain.manifests[2].key]
    refused = scope.verifier(chain.store, chain.trust, chain.chain_id)
    refused.run(None, None, checked=stale)
    assert [(f.step, f.key) for f in refused.report.failures] == [
        ("objects", chain.manifests[1].key),
        ("objects", chain.manifests[2].key),
    ]
    assert refused.chain.records_checked == 7
