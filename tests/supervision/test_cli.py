"""The supervision flow through the command line, on the embedded S3: import the sample policy,
rescan the demo's traffic, work through the queue, read the reports; every read in the access
log, every change in a sealed chain that `coexarchive verify` checks and names when altered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from coexarchive import cli
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.segments import Manifest, list_manifests, parquet_bytes, read_segment
from coexarchive.store import EmbeddedS3, S3Store
from coexarchive.supervision.register import POLICIES_CHAIN, REVIEWS_CHAIN, read_chain
from supervision._demo import SIGNER, build_demo
from support.archive import signer, use_cli_environment

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).parents[2] / "schemas" / "samples" / "policy-sample.yaml"


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Store:
    build_demo(s3_store)
    use_cli_environment(monkeypatch, seaweed, s3_store, SIGNER, tmp_path, auditor="ana@compliance")
    return s3_store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_supervision_review_end_to_end(
    archive: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "policy", "import", str(SAMPLE))
    assert code == 0 and "policy conduct-sample@1: 7 rule(s) sealed at policies seq 0" in out
    assert "already sealed" in run(capsys, "policy", "import", str(SAMPLE))[1]

    code, out, _ = run(capsys, "policy", "rescan", "--policy", "conduct-sample")
    assert code == 0
    hits = int(out.split("conduct-sample@1: ")[1].split(" hit(s)")[0])
    assert hits > 20 and f"{hits} new sealed" in out
    code, out, _ = run(capsys, "policy", "rescan", "--policy", "conduct-sample@1")
    assert code == 0 and f"{hits} hit(s), 0 new sealed" in out

    code, out, _ = run(capsys, "review", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) == hits
    arabic = next(h for h in listed if h["rule"] == "cancellations-ar")
    hit_id = arabic["id"]

    code, out, _ = run(capsys, "review", "show", hit_id[:10])
    assert code == 0
    assert "sealed record matches the hit's leaf hash" in out
    assert ">>" in out and "إلغاء" in out  # the message, shown among its conversation
    assert "logged as access-log seq" in out

    assert run(capsys, "review", "assign", hit_id, "--to", "bo@compliance")[0] == 0
    code, out, _ = run(
        capsys,
        "review",
        "decide",
        hit_id,
        "--disposition",
        "escalate",
        "--note",
        "refund risk",
        "--as",
        "bo@compliance",
    )
    assert code == 0 and "decided escalate by bo@compliance; sealed at reviews seq" in out
    code, out, err = run(
        capsys, "review", "decide", hit_id, "--disposition", "closed", "--note", "again"
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "already decided (escalate) by bo@compliance" in err

    code, out, _ = run(capsys, "review", "list", "--assignee", "bo@compliance", "--state", "all")
    assert code == 0 and hit_id[:12] in out and "escalate" in out
    code, out, _ = run(capsys, "review", "report", "escalations", "--json")
    assert code == 0
    assert [(r["id"], r["decided_by"], r["note"]) for r in json.loads(out)] == [
        (hit_id, "bo@compliance", "refund risk")
    ]
    code, out, _ = run(capsys, "review", "report", "backlog")
    assert code == 0 and "conduct-sample@1" in out and "row(s), logged as access-log seq" in out
    assert run(capsys, "review", "reopen", hit_id, "--note", "second look")[0] == 0
    code, out, _ = run(capsys, "review", "report", "escalations", "--json")
    assert json.loads(out) == []

    # Every read was sealed in the access log with who asked.
    reads = [
        (row.detail["who"], row.detail["report"]) for row in read_chain(archive, ACCESS_LOG_CHAIN)
    ]
    for what in (
        "policy rescan",
        "review list",
        "review show",
        "review report escalations",
        "review report backlog",
    ):
        assert ("ana@compliance", what) in reads
    decisions = [
        (r.detail["action"], r.detail["who"])
        for r in read_chain(archive, REVIEWS_CHAIN)
        if r.kind == "review" and r.detail["action"] != "scan"
    ]
    assert decisions == [
        ("assign", "ana@compliance"),
        ("decide", "bo@compliance"),
        ("reopen", "ana@compliance"),
    ]

    code, out, _ = run(capsys, "verify")
    assert code == 0, out
    assert f"chain {POLICIES_CHAIN}: 1 records" in out and f"chain {REVIEWS_CHAIN}:" in out


def test_a_bad_policy_file_fails_in_one_line_naming_the_member(
    archive: S3Store, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE.read_text().replace("within: 3", "within: 0"))
    code, out, err = run(capsys, "policy", "import", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "$.rules[1].near.within" in err and str(bad) in err
    assert list_manifests(archive, POLICIES_CHAIN) == []
    code, _, err = run(capsys, "policy", "rescan", "--policy", "conduct-sample")
    assert code == 2 and "no sealed policy 'conduct-sample'" in err


def test_a_key_missing_from_the_trust_file_seals_nothing(
    archive: S3Store,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rogue = tmp_path / "rogue.key"
    signer(name="rogue", seed=b"rogue").to_file(rogue)
    monkeypatch.setenv("COEXARCHIVE_AUDIT_KEY", str(rogue))
    code, out, err = run(capsys, "policy", "import", str(SAMPLE))
    assert code == 2 and out == "" and "refusing to sign with key rogue" in err
    assert list_manifests(archive, POLICIES_CHAIN) == []
    code, _, err = run(capsys, "review", "list")
    assert code == 2 and "refusing to sign with key rogue" in err  # reads are logged, or refused


def _tamper_detail(store: S3Store, chain: str, edit: Any) -> None:
    """Rewrite one record's detail in the chain's first segment, as a storage attacker can."""
    key = list_manifests(store, chain)[0]
    manifest = Manifest.from_bytes(store.get(key), key=key)
    table = read_segment(store.get(manifest.segment.key))
    details = table.column("detail").to_pylist()
    details[0] = orjson.dumps(edit(orjson.loads(details[0])), option=orjson.OPT_SORT_KEYS).decode()
    import pyarrow as pa

    forged = table.set_column(table.schema.get_field_index("detail"), "detail", pa.array(details))
    store.client.put_object(
        Bucket=store.bucket, Key=manifest.segment.key, Body=parquet_bytes(forged)
    )


@pytest.mark.parametrize(
    ("chain", "edit"),
    [
        (POLICIES_CHAIN, lambda d: {**d, "who": "someone else"}),
        (REVIEWS_CHAIN, lambda d: {**d, "rule": "random-5pc"}),
    ],
)
def test_verify_names_an_altered_policy_or_review_record(
    archive: S3Store, capsys: pytest.CaptureFixture[str], chain: str, edit: Any
) -> None:
    assert run(capsys, "policy", "import", str(SAMPLE))[0] == 0
    assert run(capsys, "policy", "rescan", "--policy", "conduct-sample")[0] == 0
    assert run(capsys, "verify")[0] == 0
    _tamper_detail(archive, chain, edit)
    code, out, _ = run(capsys, "verify")
    assert code == 1
    failures = [line for line in out.splitlines() if line.startswith("  - [")]
    assert any("[objects]" in line and f"(chain {chain}, object" in line for line in failures), out
    # The supervision commands refuse to work from the altered chain too.
    code, _, err = run(capsys, "review", "list")
    if chain == REVIEWS_CHAIN:
        assert code == 2 and "run `coexarchive verify`" in err


@pytest.fixture
def empty_archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Store:
    use_cli_environment(monkeypatch, seaweed, s3_store, SIGNER, tmp_path, auditor="ana@compliance")
    return s3_store


def test_ingest_scans_new_messages_and_the_queue_shows_its_hits(
    empty_archive: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policy first, then traffic: `coexarchive ingest` (the Beam job) seals the hits as it seals
    the messages; the reviewer works them like any other, and a rescan adds none twice."""
    assert run(capsys, "policy", "import", str(SAMPLE))[0] == 0
    sim = ("simulate", "--seed", "7", "--customers", "12", "--days", "3")
    assert run(capsys, *sim)[0] == 0
    code, out, _ = run(capsys, "ingest")
    assert code == 0 and "hit" in out and "SUPERVISION GAP" not in out, out
    assert list_manifests(empty_archive, REVIEWS_CHAIN) == []  # ingest holds no audit key

    code, out, _ = run(capsys, "review", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) > 20
    assert {h["found_by"] for h in listed} == {"ingest"}
    arabic = next(h for h in listed if h["rule"] == "cancellations-ar")
    code, out, _ = run(capsys, "review", "show", arabic["id"][:10])
    assert code == 0 and "إلغاء" in out and "WARNING" not in out
    code, out, _ = run(
        capsys, "review", "decide", arabic["id"], "--disposition", "closed", "--note", "ok"
    )
    assert code == 0 and "decided closed" in out
    code, out, _ = run(capsys, "policy", "rescan", "--policy", "conduct-sample")
    assert code == 0 and f"{len(listed)} hit(s), 0 new sealed" in out
    code, out, _ = run(capsys, "review", "list", "--json", "--state", "all")
    assert len(json.loads(out)) == len(listed)
    code, out, _ = run(capsys, "verify")
    assert code == 0, out


def test_ingest_over_an_altered_policies_chain_scans_nothing_and_says_so(
    empty_archive: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A storage attacker rewrites the sealed policy: ingest still seals every message, scans
    none, prints the gap and seals it in the chain, where `review report gaps` finds it."""
    assert run(capsys, "policy", "import", str(SAMPLE))[0] == 0
    _tamper_detail(empty_archive, POLICIES_CHAIN, lambda d: {**d, "who": "someone else"})
    assert run(capsys, "simulate", "--seed", "7", "--customers", "3", "--days", "1")[0] == 0
    code, out, _ = run(capsys, "ingest")
    assert code == 0, out
    assert "SUPERVISION GAP: chain" in out and "policies chain does not verify" in out
    code, out, _ = run(capsys, "review", "report", "gaps", "--json")
    gaps = json.loads(out)
    assert code == 0 and gaps and all(int(g["unscanned"]) > 0 for g in gaps)
    code, out, _ = run(capsys, "review", "list", "--json")
    assert code == 0 and json.loads(out) == []
