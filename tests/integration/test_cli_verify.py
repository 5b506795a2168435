"""`coexarchive verify` and `head` as an operator runs them, against a real S3 server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coexarchive.cli import main
from coexarchive.seal.head import head_key
from coexarchive.store.s3 import S3Store
from support.archive import ARCHIVE, build

pytestmark = pytest.mark.integration


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", s3_store.bucket)
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("COEXARCHIVE_NAME", ARCHIVE)
    built = build(s3_store, days=(0, 1), per_day=10)
    trust = tmp_path / "trust.txt"
    trust.write_text(built.signer.verifier_key() + "\n")
    monkeypatch.setenv("COEXARCHIVE_TRUST", str(trust))
    return built


def test_clean_archive_exits_zero_with_a_json_report(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["chains"][0]["records_checked"] == 20
    steps = report["steps"]
    assert steps[0] == "manifests" and steps[-3:] == ["tail", "archive-head", "media"]
    assert len(steps) == 12
    assert report["archive_head"]["seq"] == 1 and report["archive_head"]["chains"] == 1


def test_tampered_archive_exits_one_and_names_the_object(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = archive.manifests[1]
    archive.store.client.delete_object(Bucket=archive.store.bucket, Key=manifest.checkpoint_key)
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "[checkpoint] segment has no checkpoint" in out and manifest.checkpoint_key in out


def test_pinned_head_catches_a_later_truncation(
    archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = tmp_path / "head.note"
    assert main(["head", "--chain", archive.chain_id, "--out", str(head)]) == 0
    last = archive.manifests[-1]
    # The cut goes back to an archive head, which the attacker deletes with the segment.
    cut = (
        last.segment.key,
        last.record_index.key,
        last.intent_key,
        last.key,
        last.checkpoint_key,
        head_key(1),
    )
    for key in cut:
        archive.store.client.delete_object(Bucket=archive.store.bucket, Key=key)
    capsys.readouterr()
    assert main(["verify"]) == 0  # a clean cut is invisible without an outside anchor
    capsys.readouterr()
    assert main(["verify", "--expect-head", str(head), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["step"] for f in report["failures"]] == ["head"]
    assert "tail truncated" in report["failures"][0]["message"]


def test_head_of_an_unknown_chain_is_a_clear_error(
    archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["head", "--chain", "123"]) == 2
    assert "no sealed segments" in capsys.readouterr().err


def test_untrusted_key_fails_every_checkpoint(
    archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    other.write_text("")
    assert main(["verify", "--trust", str(other), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    # Every checkpoint and head fails, so everything is an unsigned tail and nothing was verified.
    assert {f["step"] for f in report["failures"]} == {"checkpoint", "tail", "archive-head"}
    assert any("nothing was verified" in f["message"] for f in report["failures"])
