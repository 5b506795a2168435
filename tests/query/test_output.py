"""What the auditor commands print: safe for a spreadsheet and a terminal, one time format."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from query._archive import ALICE, build_archive

from coexarchive import cli
from coexarchive.errors import ConfigError
from coexarchive.query.cli import (
    check_output,
    format_table,
    register,
    run_shell,
    to_csv,
    to_json,
    write_result,
)
from coexarchive.query.reports import Params
from coexarchive.query.session import QueryError
from coexarchive.store import MemoryStore

MOMENT = datetime(2025, 9, 2, 2, 25, 51, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coexarchive")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, cli._add_archive_options, cli._settings)
    return parser.parse_args(argv)


# --- CSV that does not attack a spreadsheet ------------------------------------------------------


@pytest.mark.parametrize(
    "cell", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_formula_cells_are_neutralised(cell: str) -> None:
    text = to_csv(pa.table({"text": [cell]}))
    (value,) = list(csv.reader(io.StringIO(text)))[1]
    assert value == "'" + cell


def test_raw_csv_keeps_the_cells_as_they_are() -> None:
    text = to_csv(pa.table({"text": ["=1+1"]}), raw=True)
    assert list(csv.reader(io.StringIO(text)))[1] == ["=1+1"]


def test_numbers_and_plain_text_are_not_touched() -> None:
    text = to_csv(pa.table({"n": [-5], "text": ['hello, "you"']}))
    assert list(csv.reader(io.StringIO(text)))[1] == ["-5", 'hello, "you"']


# --- one time format, JSON documents as objects --------------------------------------------------


def test_every_format_writes_times_in_iso_8601_utc() -> None:
    table = pa.table({"event_time": pa.array([MOMENT], pa.timestamp("ms", tz="UTC"))})
    assert "2025-09-02T02:25:51.000Z" in to_csv(table)
    assert json.loads(to_json(table))[0]["event_time"] == "2025-09-02T02:25:51.000Z"
    assert "2025-09-02T02:25:51.000Z" in format_table(table, width=80)
    assert "02:25:51.000000" not in to_csv(table)


def test_detail_and_params_are_objects_in_json() -> None:
    table = pa.table({"detail": ['{"who": "x", "n": 1}'], "params": ['{"c": "1"}'], "text": ["{}"]})
    (row,) = json.loads(to_json(table))
    assert row == {"detail": {"who": "x", "n": 1}, "params": {"c": "1"}, "text": "{}"}


# --- a terminal table that fits and cannot be abused ---------------------------------------------


def _transcript_table() -> pa.Table:
    session = build_archive(MemoryStore()).session()
    return session.report("transcript", Params(customer=ALICE)).table


def test_the_transcript_fits_the_terminal_with_the_text_early() -> None:
    text = format_table(_transcript_table(), width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    # Too many columns for 100: one block per row, the text right after the time.
    assert lines[1].startswith("event_time") and lines[2].split() == [
        "text",
        "Hi,",
        "is",
        "my",
        "order",
        "ready?",
    ]


def test_a_result_that_fits_is_a_table_with_long_text_wrapped() -> None:
    table = _transcript_table().select(["event_time", "direction", "customer_id", "text"])
    table = table.set_column(3, "text", pa.array(["word " * 40] * table.num_rows))
    lines = format_table(table, width=90).splitlines()
    assert max(len(line) for line in lines) <= 90
    assert lines[0].split() == ["event_time", "text", "direction", "customer_id"]
    assert len(lines) > table.num_rows + 3  # the text wrapped within its column


def test_ids_are_shortened_unless_asked_whole() -> None:
    table = pa.table({"record_id": ["3d7c9e664108b8918a1e12c610e47e32"]})
    assert "3d7c9e66410…" in format_table(table, width=80)
    assert "3d7c9e664108b8918a1e12c610e47e32" in format_table(table, width=80, full_ids=True)


def test_terminal_escapes_in_a_cell_are_shown_not_run() -> None:
    table = pa.table({"text": ["\x1b[2J\x1b]0;pwned\x07 hi \u202e"]})
    text = format_table(table, width=80)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text and "\\u202e" in text


def test_rich_markup_in_a_cell_is_text() -> None:
    assert "[bold]x[/bold]" in format_table(pa.table({"text": ["[bold]x[/bold]"]}), width=80)


def test_multi_line_sql_is_shown_as_sql() -> None:
    sql = "\n            SELECT a\n            FROM messages\n            WHERE b = 1\n            "
    text = format_table(pa.table({"sql": [sql]}), width=80)
    assert "\\n" not in text
    assert [line.strip() for line in text.splitlines()[2:5]] == [
        "SELECT a",
        "FROM messages",
        "WHERE b = 1",
    ]


# --- argument errors before anything runs or is logged -------------------------------------------


def test_parquet_without_out_is_refused_before_the_query() -> None:
    args = parse("query", "SELECT 1", "--format", "parquet")
    with pytest.raises(ConfigError, match="--format parquet needs --out"):
        check_output(args)


def test_an_existing_out_file_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "result.csv"
    out.write_text("filed evidence\n")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        check_output(parse("query", "SELECT 1", "--out", str(out)))
    with pytest.raises(ConfigError, match="exists; pass --force"):
        write_result(pa.table({"a": [1]}), "csv", out, io.StringIO())
    assert out.read_text() == "filed evidence\n"
    check_output(parse("query", "SELECT 1", "--out", str(out), "--force"))
    write_result(pa.table({"a": [1]}), "csv", out, io.StringIO(), force=True)
    assert out.read_text() == '"a"\n1\n'


def test_expect_head_without_verify_is_refused() -> None:
    with pytest.raises(ConfigError, match="add --verify"):
        check_output(parse("query", "SELECT 1", "--expect-head", "head.txt"))


def test_a_misspelled_view_is_suggested_from_the_archives_views() -> None:
    session = build_archive(MemoryStore()).session()
    with pytest.raises(QueryError) as caught:
        session.query("SELECT * FROM mesages")
    message = str(caught.value)
    assert "did you mean messages?" in message and "duckdb" not in message


# --- the shell's dot commands --------------------------------------------------------------------


def shell(text: str) -> str:
    session = build_archive(MemoryStore()).session()
    stdout = io.StringIO()
    assert run_shell(session, io.StringIO(text), stdout) == 0
    return stdout.getvalue()


def test_dot_commands_are_not_sql() -> None:
    out = shell(".help\n.tables\n.schema statuses\n.nope\n.quit\nSELECT 1;\n")
    assert ".schema VIEW" in out
    assert "consent_state" in out and "every message event" in out
    assert "msg_text" in out and "VARCHAR" in out
    assert "unknown command .nope" in out
    assert "error:" not in out and "logged as" not in out  # .quit left before SELECT 1


def test_schema_of_an_unknown_view_suggests_one() -> None:
    assert "did you mean statuses?" in shell(".schema statusse\n")
