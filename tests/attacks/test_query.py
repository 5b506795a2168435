# SQL in these tests is the attacker's, built from the fixture's constants.
# ruff: noqa: S608
"""Attacks by an auditor: SQL that escapes the sandbox, "verified" answers that prove nothing,
and access-log entries signed by a key nobody trusts.

The auditor holds the CLI, any SQL, and whatever key file sits on their machine; they do not hold
write access to the archive. Each test names the attack and asserts the refusal.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from query._archive import ALICE, CHAIN_A, CHAIN_B, Fixture, build_archive
from query.test_verify_rows import manifest_of, rewrite_segment, set_column

from coexarchive.cli import main
from coexarchive.errors import ConfigError, VerificationError
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession, QueryError, SandboxError
from coexarchive.query.verify_rows import HeadLike, RowVerification
from coexarchive.query.views import ArchiveCatalog, connect
from coexarchive.seal.checkpoint import Checkpoint, open_checkpoint
from coexarchive.seal.head import ChainHead
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import Manifest, list_manifests
from coexarchive.settings import Settings
from coexarchive.store import MemoryStore

# --- the SQL sandbox: no statement reads or writes a file ----------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The auditor's working directory, with DuckDB's default temp directory already present."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / "secret.csv").write_text("a\n1\n")
    (tmp_path / "secret.parquet").write_bytes(b"PAR1")
    (tmp_path / "secret.json").write_text('{"a": 1}\n')
    return tmp_path


@pytest.fixture
def fixture() -> Fixture:
    return build_archive(MemoryStore())


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


ESCAPES = [
    "COPY (SELECT text FROM messages) TO '{abs}/out.csv'",
    "COPY (SELECT text FROM messages) TO 'out.csv'",
    "COPY (SELECT text FROM messages) TO '.tmp/x.csv'",
    "COPY (SELECT text FROM messages) TO '.tmp/x.parquet' (FORMAT parquet)",
    "COPY messages TO '.tmp/m.json'",
    "SELECT * FROM read_csv('secret.csv')",
    "SELECT * FROM read_csv('.tmp/x.csv')",
    "SELECT * FROM read_csv_auto('{abs}/secret.csv')",
    "SELECT * FROM read_parquet('secret.parquet')",
    "SELECT * FROM read_json('secret.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM 'secret.csv'",
    "SELECT * FROM glob('*')",
    "SELECT * FROM glob('.tmp/*')",
    "ATTACH '.tmp/db' AS stash",
    "ATTACH '{abs}/stash.duckdb' AS stash",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{abs}/evil.duckdb_extension'",
    "SET enable_external_access = true",
    "SET temp_directory = '.tmp'",
    "SET disabled_filesystems = ''",
    "RESET lock_configuration",
    "RESET temp_directory",
    "PRAGMA enable_profiling",
    "SET profiling_output = '{abs}/profile.json'",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "EXPORT DATABASE '.tmp/dump'",
    "EXPORT DATABASE '{abs}/dump'",
    "SELECT * FROM read_csv('https://example.invalid/x.csv')",
]


@pytest.mark.parametrize("statement", ESCAPES)
def test_sandbox_escape_is_refused_and_writes_no_file(
    fixture: Fixture, workdir: Path, statement: str
) -> None:
    session = fixture.session()
    before = _files(workdir)
    sql = statement.replace("{abs}", str(workdir))
    with pytest.raises(QueryError) as caught:
        session.query(sql)
    assert "sandbox" in str(caught.value)  # says why, not only DuckDB's words
    assert _files(workdir) == before
    assert not list((workdir / ".tmp").iterdir())


def test_a_refused_escape_is_still_in_the_access_log(fixture: Fixture, workdir: Path) -> None:
    session = fixture.session()
    with pytest.raises(QueryError):
        session.query("COPY (SELECT text FROM messages) TO '.tmp/x.csv'")
    logged = session.query("SELECT sql, rows FROM access_log ORDER BY seq").table.to_pylist()
    assert logged[0] == {"sql": "COPY (SELECT text FROM messages) TO '.tmp/x.csv'", "rows": None}


def test_spilling_to_disk_is_refused_not_written(fixture: Fixture, workdir: Path) -> None:
    log = fixture.session().access_log
    session = AuditSession(
        fixture.store, access_log=log, who="auditor", trust=fixture.trust, memory_limit="32MB"
    )
    with pytest.raises(QueryError) as caught:
        session.query(
            "SELECT r, repeat('x', 200) AS pad FROM range(3000000) t(r) ORDER BY pad, r DESC"
        )
    assert "memory" in str(caught.value).lower()
    assert _files(workdir) == {".tmp", "secret.csv", "secret.parquet", "secret.json"}
    assert not list((workdir / ".tmp").iterdir())


def test_settings_cannot_be_read_back_as_a_way_around(fixture: Fixture, workdir: Path) -> None:
    session = fixture.session()
    row = session.query(
        "SELECT current_setting('temp_directory') AS t, "
        "current_setting('enable_external_access') AS e, "
        "current_setting('lock_configuration') AS l"
    ).table.to_pylist()[0]
    assert row == {"t": "", "e": False, "l": True}


def test_sql_over_the_views_still_works_in_the_sandbox(fixture: Fixture, workdir: Path) -> None:
    session = fixture.session()
    result = session.query("SELECT count(*) AS n FROM messages")
    assert result.table.column("n").to_pylist()[0] > 0
    assert os.listdir(workdir / ".tmp") == []


# The statement filter is the first wall; the connection's own settings are the second, and must
# hold alone should the filter ever let a statement through.
RAW_ESCAPES = [s for s in ESCAPES if not s.startswith(("CREATE SECRET", "CREATE PERSISTENT"))]


@pytest.mark.parametrize("statement", RAW_ESCAPES)
def test_the_connection_itself_refuses_file_access(
    fixture: Fixture, workdir: Path, statement: str
) -> None:
    con = connect(ArchiveCatalog(fixture.store))
    before = _files(workdir)
    with pytest.raises(duckdb.Error):
        con.sql(statement.replace("{abs}", str(workdir)))
    assert _files(workdir) == before
    assert not list((workdir / ".tmp").iterdir())


def test_redefining_a_view_is_refused(fixture: Fixture, workdir: Path) -> None:
    session = fixture.session()
    with pytest.raises(SandboxError):
        session.query("CREATE OR REPLACE VIEW messages AS SELECT 'I consent' AS text")
    with pytest.raises(SandboxError):
        session.query("SELECT 1; DROP VIEW messages")
    assert session.query("SELECT count(*) AS n FROM messages").table.num_rows == 1


# --- signing: only a key the trust file lists signs the access log -------------------------------


def _keys(directory: Path) -> tuple[Path, Path, Path]:
    """An archive key with its trust file, and a stray key the trust file does not list."""
    directory.mkdir(parents=True, exist_ok=True)
    archive_key, stray = Ed25519Signer.generate("archive.key"), Ed25519Signer.generate("stray")
    archive_key.to_file(directory / "signing.key")
    stray.to_file(directory / "stray.key")
    (directory / "trust.txt").write_text(archive_key.verifier_key() + "\n")
    return directory / "signing.key", directory / "stray.key", directory / "trust.txt"


def test_a_key_missing_from_the_trust_file_does_not_sign(tmp_path: Path) -> None:
    _, stray, trust = _keys(tmp_path)
    settings = Settings(key_file=stray, trust_file=trust)
    with pytest.raises(ConfigError) as caught:
        settings.audit_signer()
    message = str(caught.value)
    stray_id = Ed25519Signer.from_file(stray).key_id.hex()
    assert f"stray {stray_id}" in message and str(trust) in message
    assert "archive.key" in message  # which keys are trusted
    assert "\n" not in message


def test_an_untrusted_audit_key_does_not_sign(tmp_path: Path) -> None:
    key, stray, trust = _keys(tmp_path)
    settings = Settings(key_file=key, audit_key_file=stray, trust_file=trust)
    with pytest.raises(ConfigError, match="COEXARCHIVE_AUDIT_KEY"):
        settings.audit_signer()


def test_no_trust_file_means_no_signing(tmp_path: Path) -> None:
    key, _, trust = _keys(tmp_path)
    trust.unlink()
    with pytest.raises(ConfigError, match=r"trust file .* not found"):
        Settings(key_file=key, trust_file=trust).audit_signer()


def test_the_trusted_key_signs(tmp_path: Path) -> None:
    key, _, trust = _keys(tmp_path)
    signer = Settings(key_file=key, trust_file=trust).audit_signer()
    assert signer.name == "archive.key"


@pytest.mark.parametrize(
    "command",
    [
        ["query", "SELECT 1"],
        ["report", "volume"],
        ["shell"],
        ["hold", "place", "--matter", "m-1", "--customer", ALICE],
        ["export", "--matter", "m-1", "--customer", ALICE, "--out", "bundle.zip"],
    ],
)
def test_auditor_commands_refuse_a_stray_key_before_touching_the_archive(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    _, stray, trust = _keys(tmp_path / "keys")
    monkeypatch.setenv("COEXARCHIVE_SIGNING_KEY", str(stray))
    monkeypatch.setenv("COEXARCHIVE_TRUST", str(trust))
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 1;\n"))
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to sign with key stray" in err
    assert not (tmp_path / "bundle.zip").exists()


def test_keys_are_found_in_the_config_home_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "var" / "keys").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    home = {"HOME": str(tmp_path / "home")}
    assert Settings.from_env(home).key_file == tmp_path / "home/.config/coexarchive/signing.key"
    xdg = {**home, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert Settings.from_env(xdg).trust_file == tmp_path / "xdg/coexarchive/trust.txt"
    pinned = {**xdg, "COEXARCHIVE_HOME": str(tmp_path / "pinned")}
    assert Settings.from_env(pinned).key_file == tmp_path / "pinned/signing.key"
    explicit = {**pinned, "COEXARCHIVE_TRUST": "relative/trust.txt"}
    assert Settings.from_env(explicit).trust_file == tmp_path / "relative/trust.txt"
    monkeypatch.chdir(tmp_path / "var")
    assert Settings.from_env(explicit).trust_file == tmp_path / "var/relative/trust.txt"
    assert Settings.from_env(pinned).key_file == tmp_path / "pinned/signing.key"


def test_keygen_writes_to_the_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("COEXARCHIVE_SIGNING_KEY", "COEXARCHIVE_TRUST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COEXARCHIVE_HOME", str(tmp_path / "conf"))
    assert main(["keygen", "--name", "archive.key"]) == 0
    assert (tmp_path / "conf" / "signing.key").exists()
    assert (tmp_path / "conf" / "trust.txt").exists()
    assert not (tmp_path / "var").exists()
    assert Settings.from_env().audit_signer().name == "archive.key"


# --- "verified" must mean the values shown were proven -------------------------------------------


def _verify(fixture: Fixture, sql: str, **options: Any) -> RowVerification:
    result = fixture.session().query(sql, verify=True, **options)
    assert result.verification is not None
    return result.verification


def _value_failures(caught: pytest.ExceptionInfo[VerificationError]) -> list[str]:
    return [f.message for f in caught.value.failures if f.step == "values"]


def test_a_constant_shown_as_a_sealed_field_is_not_verified(fixture: Fixture) -> None:
    with pytest.raises(VerificationError) as caught:
        _verify(fixture, "SELECT chain_id, seq, 'I consent to everything' AS text FROM messages")
    assert _value_failures(caught) and "column text" in _value_failures(caught)[0]


def test_a_substituted_value_beside_the_real_one_is_caught(fixture: Fixture) -> None:
    with pytest.raises(VerificationError, match="column text"):
        _verify(fixture, "SELECT chain_id, seq, text, upper(text) AS text FROM messages")


def test_a_forged_row_under_a_real_key_is_caught(fixture: Fixture) -> None:
    sql = (
        f"SELECT chain_id, seq, text FROM messages WHERE customer_id = '{ALICE}' UNION ALL "
        f"SELECT '{CHAIN_A}', 1, 'I never said that'"
    )
    with pytest.raises(VerificationError) as caught:
        _verify(fixture, sql)
    assert [f.seq for f in caught.value.failures if f.step == "values"] == [1]


def test_rows_without_a_key_are_not_passed_off_as_verified(fixture: Fixture) -> None:
    sql = "SELECT NULL::VARCHAR AS chain_id, NULL::BIGINT AS seq, 'I consent' AS note"
    with pytest.raises(VerificationError, match="no chain_id or seq"):
        _verify(fixture, sql)


def test_a_shifted_timestamp_is_caught(fixture: Fixture) -> None:
    sql = "SELECT chain_id, seq, event_time + INTERVAL 1 HOUR AS event_time FROM messages"
    with pytest.raises(VerificationError, match="column event_time"):
        _verify(fixture, sql)


def test_a_forged_joined_message_text_is_caught(fixture: Fixture) -> None:
    sql = "SELECT chain_id, seq, msg_seq, 'Your order is cancelled' AS msg_text FROM statuses"
    with pytest.raises(VerificationError, match="column msg_text differs from the joined record"):
        _verify(fixture, sql)


def test_a_status_joined_to_another_message_is_caught(fixture: Fixture) -> None:
    sql = (
        "SELECT s.chain_id, s.seq, s.wamid, m.seq AS msg_seq, m.text AS msg_text "
        "FROM statuses s JOIN messages m ON m.chain_id = s.chain_id AND m.wamid <> s.wamid "
        "AND m.kind = 'message' WHERE s.msg_seq IS NOT NULL"
    )
    with pytest.raises(VerificationError, match="does not belong to this row"):
        _verify(fixture, sql)


def test_joined_text_shown_without_its_record_is_caught(fixture: Fixture) -> None:
    sql = "SELECT chain_id, seq, NULL::BIGINT AS msg_seq, 'hello' AS msg_text FROM statuses"
    with pytest.raises(VerificationError, match="shown without a joined record"):
        _verify(fixture, sql)


def test_a_tampered_joined_message_fails_the_status_row(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    (msg_seq,) = {
        r["msg_seq"]
        for r in fixture.session()
        .query("SELECT msg_seq FROM statuses WHERE status = 'failed'")
        .table.to_pylist()
    }
    manifest = manifest_of(store, CHAIN_A, msg_seq)
    rewrite_segment(store, manifest, lambda t: set_column(t, "text", msg_seq, "cancelled"))
    with pytest.raises(VerificationError) as caught:
        fixture.session().report("failed-deliveries", Params(), verify=True)
    assert any(f.seq == msg_seq and f.step == "rows" for f in caught.value.failures)


def test_columns_that_are_not_sealed_fields_are_listed_as_not_verified(fixture: Fixture) -> None:
    verification = _verify(
        fixture, "SELECT chain_id, seq, text, upper(text) AS shout, 42 AS answer FROM messages"
    )
    summary = verification.summary()
    assert verification.not_verified == ["shout", "answer"]
    assert "not verified (computed or renamed, not sealed fields): shout, answer" in summary
    assert "values shown equal the proven records" in summary and "text" in verification.compared


def test_joined_columns_without_their_seq_are_not_verified(fixture: Fixture) -> None:
    verification = _verify(fixture, "SELECT chain_id, seq, msg_text FROM statuses")
    assert verification.not_verified == ["msg_text"]


def test_honest_status_rows_prove_their_joined_message(fixture: Fixture) -> None:
    result = fixture.session().report("failed-deliveries", Params(), verify=True)
    verification = result.verification
    assert verification is not None and verification.joined == 1
    assert {"msg_text", "msg_kind", "msg_seq", "customer_id"} <= set(verification.compared)
    assert verification.not_verified == []


def test_aggregates_say_their_columns_are_computed(fixture: Fixture) -> None:
    result = fixture.session().report("volume", Params(), verify=True)
    assert result.verification is not None
    assert "records" in result.verification.not_verified


def test_quarantined_rows_are_named_not_verified_in_capture_gaps(fixture: Fixture) -> None:
    result = fixture.session().report("capture-gaps", Params(), verify=True)
    assert result.verification is not None
    assert "not verified: 1 row(s) (quarantined input" in result.verification.summary()


def test_derived_view_columns_are_recomputed_from_the_proven_row(fixture: Fixture) -> None:
    verification = _verify(fixture, "SELECT chain_id, seq, new_state FROM consent_events")
    assert verification.compared == ["new_state"] and verification.not_verified == []
    with pytest.raises(VerificationError, match="column new_state"):
        _verify(fixture, "SELECT chain_id, seq, 'opted_in' AS new_state FROM consent_events")


# --- time ranges: "complete" only against a trusted head -----------------------------------------


def _truncate_tail(store: MemoryStore, chain: str) -> None:
    """Someone with delete rights removes the chain's last segment, manifest and checkpoint."""
    last = list_manifests(store, chain)[-1]
    manifest = Manifest.from_bytes(store.get(last), key=last)
    for key in (manifest.segment.key, manifest.checkpoint_key, last):
        store.unsafe_delete(key)


def _last_day(fixture: Fixture, heads: Mapping[str, HeadLike] | None) -> str:
    params = Params(
        customer=ALICE,
        since=datetime(2026, 1, 7, tzinfo=UTC),
        until=datetime(2026, 1, 8, tzinfo=UTC),
    )
    result = fixture.session().report("transcript", params, verify=True, heads=heads)
    assert result.verification is not None
    return result.verification.summary()


def _heads(fixture: Fixture) -> dict[str, Checkpoint]:
    heads = {}
    for chain in (CHAIN_A, CHAIN_B):
        last = list_manifests(fixture.store, chain)[-1]
        manifest = Manifest.from_bytes(fixture.store.get(last), key=last)
        heads[chain] = open_checkpoint(fixture.store.get(manifest.checkpoint_key), fixture.trust)
    return heads


def test_after_a_tail_truncation_the_range_is_not_called_complete(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    _truncate_tail(store, CHAIN_A)
    summary = _last_day(fixture, None)
    assert "time range complete" not in summary and "NOT proven complete" in summary


def test_a_tail_truncation_fails_against_the_head_saved_before(fixture: Fixture) -> None:
    store = fixture.store
    assert isinstance(store, MemoryStore)
    heads = _heads(fixture)
    _truncate_tail(store, CHAIN_A)
    with pytest.raises(VerificationError) as caught:
        _last_day(fixture, heads)
    (failure,) = [f for f in caught.value.failures if f.step == "head"]
    assert failure.chain_id == CHAIN_A and "removed from its end" in failure.message


def test_a_rewritten_chain_fails_against_the_head(fixture: Fixture) -> None:
    heads = _heads(fixture)
    # The head the auditor kept names another root than the chain now holds at that size.
    heads[CHAIN_A] = Checkpoint(heads[CHAIN_A].origin, heads[CHAIN_A].size, b"\x01" * 32)
    with pytest.raises(VerificationError, match="differ from those the trusted head vouches"):
        _last_day(fixture, heads)


def test_a_wrong_trust_file_is_said_first_in_one_line(fixture: Fixture) -> None:
    stranger = Ed25519Signer.generate("someone.else")
    wrong = replace(fixture, trust=TrustStore([stranger.verifier()]))
    with pytest.raises(VerificationError) as caught:
        wrong.session().query(
            f"SELECT chain_id, seq FROM messages WHERE customer_id = '{ALICE}'", verify=True
        )
    first = caught.value.failures[0]
    assert first.step == "trust" and "someone.else" in first.message
    assert fixture.key.key_id.hex() in first.message
    assert sum(f.step == "trust" for f in caught.value.failures) == 1


def test_a_view_derived_name_over_another_kind_of_record_is_not_verified(fixture: Fixture) -> None:
    verification = _verify(fixture, "SELECT chain_id, seq, 42 AS rows, 'x' AS who FROM messages")
    assert verification.not_verified == ["rows", "who"] and verification.compared == []


def test_access_log_columns_are_recomputed_from_the_sealed_detail(fixture: Fixture) -> None:
    session = fixture.session()
    session.query("SELECT 1")
    result = session.query(
        "SELECT chain_id, seq, who, sql, rows, params FROM access_log", verify=True
    )
    assert result.verification is not None
    assert result.verification.compared == ["who", "sql", "rows", "params"]
    with pytest.raises(VerificationError, match="column who"):
        session.query("SELECT chain_id, seq, 'nobody' AS who FROM access_log", verify=True)


def test_the_verification_report_says_first_that_the_trust_file_is_wrong(
    fixture: Fixture,
) -> None:
    stranger = Ed25519Signer.generate("someone.else")
    wrong = replace(fixture, trust=TrustStore([stranger.verifier()]))
    table = wrong.session().report("verification", Params()).table
    for row in table.to_pylist():
        assert row["status"] == "FAILED"
        assert row["problems"].startswith(f"signed by key {fixture.key.name}")
        assert "someone.else" in row["problems"].split(";")[0]


def test_a_chain_that_vanished_fails_against_the_head(fixture: Fixture) -> None:
    heads: dict[str, HeadLike] = dict(_heads(fixture))
    heads["900000000000009"] = ChainHead("900000000000009", 3, b"\x02" * 32)
    with pytest.raises(VerificationError) as caught:
        _last_day(fixture, heads)
    (failure,) = [f for f in caught.value.failures if f.step == "head"]
    assert failure.chain_id == "900000000000009"
    assert "holds 0 record(s) where the trusted head vouches for 3" in failure.message


def test_joined_records_are_not_counted_as_result_rows(fixture: Fixture) -> None:
    result = fixture.session().report("failed-deliveries", Params(), verify=True)
    assert result.verification is not None and result.table.num_rows == 1
    summary = result.verification.summary()
    assert summary.startswith("verified 1 row(s)") and "and 1 joined record(s)" in summary
