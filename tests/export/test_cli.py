"""hold, export and verify-bundle through the command line, on the embedded S3."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from export._evidence import ALICE, build_evidence

from coexarchive import cli
from coexarchive.errors import ConfigError
from coexarchive.export.bundle import read_bundle
from coexarchive.export.cli import register
from coexarchive.export.holds import held_keys
from coexarchive.seal.keys import TrustStore
from coexarchive.store import EmbeddedS3, S3Store
from support.archive import use_cli_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):  # type: ignore[no-untyped-def]
    evidence = build_evidence(s3_store)
    trust_file = use_cli_environment(
        monkeypatch, seaweed, s3_store, evidence.key, tmp_path, auditor="dana@legal"
    )
    return evidence, trust_file


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coexarchive")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, cli._add_archive_options, cli._settings)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_hold_export_and_verify_bundle_end_to_end(
    archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    evidence, trust_file = archive
    assert run("hold", "place", "--matter", "SEC-1", "--customer", ALICE) == 0
    assert "legal hold placed" in capsys.readouterr().out
    assert held_keys(evidence.store, trust=evidence.trust)
    assert run("hold", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(h["matter"], h["active"], h["placed_by"]) for h in listed] == [
        ("SEC-1", True, "dana@legal")
    ]

    out = tmp_path / "bundle.zip"
    args = ("export", "--matter", "SEC-1", "--customer", ALICE, "--tz", "Europe/London")
    assert run(*args, "--out", str(out), "--as-of", "2026-02-01T00:00:00Z") == 0
    printed = capsys.readouterr().out
    assert "custody entry sealed in the access log" in printed and "--at " in printed
    again = tmp_path / "again.zip"
    assert run(*args, "--out", str(again), "--as-of", "2026-02-01T00:00:00Z") == 0
    assert out.read_bytes() == again.read_bytes()

    assert run("verify-bundle", str(out), "--trust", str(trust_file)) == 0
    key = TrustStore.from_file(trust_file).verifiers[0]
    assert (
        f"OK: every file, record, proof and checkpoint verified against trusted key(s) "
        f"{key.name}+{key.key_id.hex()}" in capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as usage:
        run("verify-bundle", str(out))  # no trust chosen: a usage error, never a silent default
    assert usage.value.code == 2
    assert "--trust" in capsys.readouterr().err
    report = tmp_path / "report.jsonl"
    assert run("verify-bundle", str(out), "--trust-bundle-keys", "--report", str(report)) == 3
    captured = capsys.readouterr()
    assert "NOT who signed them" in captured.err
    assert "UNTRUSTED: every check held" in captured.out and "OK:" not in captured.out
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert rows and all(row["ok"] for row in rows)

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path, data in read_bundle(out).items():
        target = tampered / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.replace(b"ready for pickup", b"never ordered"))
    assert run("verify-bundle", str(tampered), "--trust", str(trust_file)) == 1
    output = capsys.readouterr().out
    assert "verification failed" in output and "records/records.jsonl" in output

    assert run("hold", "release", "--matter", "SEC-1", "--reason", "closed") == 0
    assert held_keys(evidence.store, trust=evidence.trust) == set()
    assert run("hold", "list") == 0
    assert "no active legal holds" in capsys.readouterr().out


def test_export_by_query_needs_chain_and_seq(archive, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="chain_id and seq"):
        run("export", "--matter", "M", "--query", "SELECT 1 AS x", "--out", str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    code = run(
        "export",
        "--matter",
        "M",
        "--query",
        "SELECT chain_id, seq FROM messages WHERE text LIKE '%Bob%'",
        "--out",
        str(tmp_path / "q"),
    )
    assert code == 0
    texts = [
        json.loads(line)["text"]
        for line in (tmp_path / "q" / "records/records.jsonl").read_text().splitlines()
    ]
    assert texts == ["Bob here, any news?", "Not yet, Bob"]
