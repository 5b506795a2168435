"""``coexarchive query --since/--until``: every statement sees only records in the period.

The period used to bound only what ``--verify`` proved: ``SELECT count(*) FROM messages`` gave the
same count with and without ``--since``. Now every view reads the sealed records through the
session's window, with or without ``--verify``, and the access log says so.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from query._archive import Fixture, build_archive
from query.test_cli import access_entries

from coexarchive import cli
from coexarchive.errors import ConfigError
from coexarchive.query.cli import register
from coexarchive.query.session import AuditSession
from coexarchive.query.views import Window, utc_ms
from coexarchive.store import EmbeddedS3, MemoryStore, S3Store
from support.archive import START_MS, use_cli_environment

START = datetime.fromtimestamp(START_MS / 1000, UTC)
DAY = timedelta(days=1)
SINCE, UNTIL = START + DAY, START + 2 * DAY  # the second of the archive's three days
WINDOW = Window(utc_ms(SINCE), utc_ms(UNTIL))

SPAN = "SELECT count(*) AS n, min(event_time) AS low, max(event_time) AS high FROM {view}"
VIEWS = ("records", "sealed_records", "messages", "statuses", "flags", "consent_events")


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    return build_archive(MemoryStore())


def span(session: AuditSession, view: str, scope: Window | None) -> dict[str, Any]:
    result = session.query(SPAN.format(view=view), scope=scope)
    return dict(result.table.to_pylist()[0])


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_holds_only_the_period(fixture: Fixture, view: str) -> None:
    session = fixture.session()
    everything = span(session, view, None)
    period = span(session, view, WINDOW)
    counted = session.query(
        f"SELECT count(*) AS n FROM {view} WHERE event_time >= $s AND event_time < $u",  # noqa: S608
        {"s": SINCE, "u": UNTIL},
    ).table.to_pylist()[0]["n"]
    assert period["n"] == counted
    if period["n"]:
        assert period["low"] >= SINCE and period["high"] < UNTIL
    assert everything["n"] >= period["n"]


def test_the_period_changes_the_answer(fixture: Fixture) -> None:
    session = fixture.session()
    everything = span(session, "messages", None)
    period = span(session, "messages", WINDOW)
    assert everything["low"] < SINCE and everything["high"] >= UNTIL  # the period cuts both ends
    assert 0 < period["n"] < everything["n"]


def test_the_window_lasts_one_statement(fixture: Fixture) -> None:
    session = fixture.session()
    before = span(session, "records", None)
    span(session, "records", WINDOW)
    assert span(session, "records", None) == before


def test_open_ended_periods(fixture: Fixture) -> None:
    session = fixture.session()
    since = span(session, "records", Window(utc_ms(SINCE), None))
    until = span(session, "records", Window(None, utc_ms(UNTIL)))
    assert since["low"] >= SINCE and until["high"] < UNTIL
    assert (
        since["n"] + until["n"]
        == span(session, "records", None)["n"] + span(session, "records", WINDOW)["n"]
    )


def test_current_flags_within_a_period_still_come_from_assessments(fixture: Fixture) -> None:
    # The period applies to the assessments too: they carry their original's event time.
    from query._archive import CHAIN_A
    from query.test_current_flags import MWC, assessment, original

    fresh = build_archive(MemoryStore())
    fresh.writers[CHAIN_A].append([assessment(original(CHAIN_A, 5), (MWC,), 1)])
    found = fresh.session().query(
        "SELECT seq, flags, flags_seq FROM messages WHERE chain_id = $c AND seq = 5",
        {"c": CHAIN_A},
        scope=WINDOW,
    )
    assert found.table.to_pylist() == [{"seq": 5, "flags": [MWC], "flags_seq": 13}]


def test_the_quarantine_refuses_a_period(fixture: Fixture) -> None:
    with pytest.raises(ConfigError, match=r"quarantine.*date column"):
        fixture.session().query("SELECT count(*) FROM quarantine", scope=WINDOW)


def test_the_access_log_records_the_period(fixture: Fixture) -> None:
    session = fixture.session()
    result = session.query("SELECT count(*) AS n FROM messages", scope=WINDOW)
    assert "views restricted to event_time from 2026-01-06" in result.sql
    assert "(exclusive)" in result.sql


# -- the command line, on the embedded S3 ---------------------------------------------------------


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coexarchive")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, cli._add_archive_options, cli._settings)
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.mark.integration
def test_query_since_until_restrict_the_statement_with_and_without_verify(
    s3_store: S3Store,
    seaweed: EmbeddedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = build_archive(s3_store)
    use_cli_environment(monkeypatch, seaweed, s3_store, archive.key, tmp_path, auditor="carol@x")
    sql = "SELECT count(*) AS n, min(event_time) AS low FROM messages"
    counts = []
    for extra in ([], ["--since", "2026-01-06", "--until", "2026-01-07"]):
        assert run("query", sql, "--format", "json", *extra) == 0
        counts.append(json.loads(capsys.readouterr().out)[0])
    everything, period = counts
    assert period["n"] < everything["n"]
    assert period["low"] >= "2026-01-06" > everything["low"]
    period_sql = "SELECT chain_id, seq, event_time FROM messages"
    argv = ["--since", "2026-01-06", "--until", "2026-01-07", "--verify", "--format", "json"]
    assert run("query", period_sql, *argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == period["n"]
    assert all("2026-01-06" <= row["event_time"] < "2026-01-07" for row in shown)
    logged = [e for e in access_entries(s3_store) if e.get("sql", "").startswith(period_sql)]
    assert logged and "views restricted to event_time" in str(logged[-1]["sql"])
