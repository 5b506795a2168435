"""The auditor commands end to end on the embedded S3, and the access log they leave."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from query._archive import ALICE, CHAIN_A, CHAIN_B, Fixture, build_archive

from coexarchive import cli
from coexarchive.archive_head import write_head_after
from coexarchive.errors import ConfigError, StorageError, VerificationError
from coexarchive.query.access_log import AccessEntry, AccessLog, auditor_identity
from coexarchive.query.cli import register, run_shell
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.records import RECORD_SCHEMA
from coexarchive.segments import Manifest, list_manifests, parquet_bytes, read_segment
from coexarchive.store import EmbeddedS3, MemoryStore, S3Store
from coexarchive.verify import verify_archive
from support.archive import ARCHIVE, use_cli_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Fixture:
    fixture = build_archive(s3_store)
    use_cli_environment(
        monkeypatch, seaweed, s3_store, fixture.key, tmp_path, auditor="carol@compliance"
    )
    return fixture


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coexarchive")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, cli._add_archive_options, cli._settings)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def access_entries(store: S3Store | MemoryStore) -> list[dict[str, object]]:
    entries = []
    for key in list_manifests(store, ACCESS_LOG_CHAIN):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        table = read_segment(store.get(manifest.segment.key))
        entries += [json.loads(d) for d in table.column("detail").to_pylist()]
    return entries


def test_query_prints_rows_and_seals_an_access_record_verify_covers(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT chain_id, seq, text FROM messages WHERE customer_id = $c ORDER BY event_time"
    assert run("query", sql, "--param", f"c={ALICE}", "--verify") == 0
    out = capsys.readouterr().out
    assert "Hi, is my order ready?" in out and "(6 rows)" in out
    assert "verified 6 row(s)" in out
    (entry,) = access_entries(archive.store)  # type: ignore[arg-type]
    assert entry["who"] == "carol@compliance" and entry["sql"] == sql
    assert entry["params"] == {"c": ALICE} and entry["rows"] == 6
    report = verify_archive(archive.store, archive.trust)
    covered = {chain.chain_id: chain.records_checked for chain in report.chains}
    assert covered[ACCESS_LOG_CHAIN] == 1


def test_report_formats_for_filing(
    archive: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("report", "transcript", "--customer", ALICE, "--format", "csv") == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0].startswith('"event_time","chain_id","seq"')
    assert len(csv_text.splitlines()) == 7
    assert run("report", "failed-deliveries", "--format", "json", "--as", "dave") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["error_code"] == 131047 and row["event_time"] == "2026-01-06T00:51:00.000Z"
    out = tmp_path / "gaps.parquet"
    assert run("report", "capture-gaps", "--format", "parquet", "--out", str(out)) == 0
    assert pq.read_table(out).num_rows == 4
    whos = [(e["who"], e["report"]) for e in access_entries(archive.store)]  # type: ignore[arg-type]
    assert whos == [
        ("carol@compliance", "transcript"),
        ("dave", "failed-deliveries"),
        ("carol@compliance", "capture-gaps"),
    ]


def test_report_list_explains_each_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("report", "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[0].startswith("transcript ")


def test_a_new_object_version_over_a_segment_fails_verify_and_shows_nothing(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Object Lock keeps old versions, but a writer can still put a new current one."""
    store = archive.store
    assert isinstance(store, S3Store)
    key = next(k for k in list_manifests(store, CHAIN_A))
    manifest = Manifest.from_bytes(store.get(key), key=key)
    table = read_segment(store.get(manifest.segment.key))
    texts = table.column("text").to_pylist()
    texts[0] = "tampered"
    table = table.set_column(table.schema.get_field_index("text"), "text", [texts])
    store.client.put_object(
        Bucket=store.bucket, Key=manifest.segment.key, Body=parquet_bytes(table.cast(RECORD_SCHEMA))
    )
    with pytest.raises(VerificationError) as caught:
        run("report", "transcript", "--customer", ALICE, "--verify")
    assert caught.value.failures[0].chain_id == CHAIN_A
    assert "differ from what its manifest records" in caught.value.failures[0].message
    assert {f.seq for f in caught.value.failures if f.step == "rows"} == {0, 1, 5, 11}
    assert "tampered" not in capsys.readouterr().out
    # The attempt itself is on record.
    assert [e["report"] for e in access_entries(store)] == ["transcript"]


def test_shell_logs_each_statement_before_showing_it() -> None:
    fixture = build_archive(MemoryStore())
    session = fixture.session(who="erin")
    stdin = io.StringIO("SELECT count(*) AS n\n FROM messages;\n.views\nSELECT nope;\n.quit\n")
    stdout = io.StringIO()
    assert run_shell(session, stdin, stdout) == 0
    text = stdout.getvalue()
    assert "\n10\n" in text and "logged as access-log seq 0" in text
    assert "access_log" in text and "error: query failed" in text
    entries = access_entries(fixture.store)  # type: ignore[arg-type]
    assert [(e["sql"], e["rows"]) for e in entries] == [
        ("SELECT count(*) AS n\n FROM messages", 1),
        ("SELECT nope", None),
    ]
    assert entries[1]["error"] == "BinderException"


class _RefusingStore(MemoryStore):
    def put(self, key: str, data: bytes, **options: object) -> bool:
        if key.startswith(("archive/v1/chain=access-log", "manifests/chain=access-log")):
            raise StorageError("access denied")
        return super().put(key, data, **options)  # type: ignore[arg-type]


def test_no_result_without_its_access_record() -> None:
    store = _RefusingStore()
    fixture = build_archive(store)
    with pytest.raises(StorageError, match="access denied"):
        fixture.session().query("SELECT * FROM messages")


def test_identity_comes_from_as_then_environment_then_os_user() -> None:
    assert auditor_identity("alice", {"COEXARCHIVE_AUDITOR": "bob"}) == "alice"
    assert auditor_identity(None, {"COEXARCHIVE_AUDITOR": "bob"}) == "bob"
    assert auditor_identity(None, {})  # the OS user


def test_access_entries_are_sealed_with_the_archive_key() -> None:
    store = MemoryStore()
    fixture = build_archive(store)
    log = AccessLog(store, signer=fixture.key, archive_name=ARCHIVE)
    entry = AccessEntry(who="x", sql="SELECT 1", params={}, rows=1, result_sha256="ab" * 32)
    manifest = log.append(entry, now_ms=1_767_571_200_000)
    assert (manifest.chain_id, manifest.first_seq) == (ACCESS_LOG_CHAIN, 0)
    # A second session's log continues the chain rather than forking it.
    other = AccessLog(store, signer=fixture.key, archive_name=ARCHIVE)
    assert other.append(entry, now_ms=1_767_571_200_001).first_seq == 1
    assert log.append(entry, now_ms=1_767_571_200_002).first_seq == 2  # after a lost race
    verify_archive(store, fixture.trust, chains=[ACCESS_LOG_CHAIN])


def test_session_sees_its_own_access_log() -> None:
    session: AuditSession = build_archive(MemoryStore()).session()
    session.query("SELECT 1")
    assert session.query("SELECT count(*) AS n FROM access_log").table.column("n").to_pylist() == [
        1
    ]


def test_argument_errors_are_caught_before_anything_is_logged(
    archive: Fixture, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="--format parquet needs --out"):
        run("query", "SELECT * FROM messages", "--format", "parquet")
    kept = tmp_path / "filed.csv"
    kept.write_text("filed\n")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        run("report", "volume", "--format", "csv", "--out", str(kept))
    with pytest.raises(ConfigError, match="needs --customer"):
        run("report", "transcript")
    assert access_entries(archive.store) == []  # type: ignore[arg-type]
    assert kept.read_text() == "filed\n"


def test_verify_of_a_substituted_value_exits_non_zero_and_prints_no_rows(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT chain_id, seq, 'I consent to everything' AS text FROM messages"
    assert cli.main(["query", sql, "--verify"]) == 2
    captured = capsys.readouterr()
    assert "I consent" not in captured.out and "verified" not in captured.out
    assert "[values]" in captured.err and "column text" in captured.err


def test_a_period_is_complete_only_against_a_saved_head(
    archive: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heads = []
    for chain in (CHAIN_A, CHAIN_B):
        heads += ["--expect-head", str(tmp_path / f"{chain}.head")]
        assert cli.main(["head", "--chain", chain, "--out", heads[-1]]) == 0
    period = ["--customer", ALICE, "--since", "2026-01-06", "--until", "2026-01-07", "--verify"]
    assert run("report", "transcript", *period) == 0
    assert "time range NOT proven complete" in capsys.readouterr().out
    assert run("report", "transcript", *period, *heads) == 0
    out = capsys.readouterr().out
    assert "time range complete against the trusted head" in out


def test_an_archive_head_pins_every_chain_at_once(
    archive: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lasts = []
    for chain in (CHAIN_A, CHAIN_B):
        key = list_manifests(archive.store, chain)[-1]
        lasts.append(Manifest.from_bytes(archive.store.get(key), key=key))
    write_head_after(archive.store, lasts, signer=archive.key, archive_name=ARCHIVE)
    kept = tmp_path / "archive.head"
    assert cli.main(["head", "--out", str(kept)]) == 0
    period = ["--customer", ALICE, "--since", "2026-01-06", "--until", "2026-01-07", "--verify"]
    capsys.readouterr()
    assert run("report", "transcript", *period, "--expect-head", str(kept)) == 0
    out = capsys.readouterr().out
    assert f"time range complete against the trusted head ({CHAIN_A} at size 13" in out
