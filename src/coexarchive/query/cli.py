"""Auditor subcommands: ``query``, ``report`` and ``shell``.

Every statement is sealed into the access log before its result is printed; there is no option
to skip that. Registered from ``coexarchive.cli`` with :func:`register`.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from coexarchive._internal.cliutil import AddOptions, MakeSettings, parse_moment
from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.query import reports, views
from coexarchive.query.access_log import AccessLog, _plain, auditor_identity
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession, QueryResult, check_params
from coexarchive.query.views import Window, utc_ms
from coexarchive.settings import Settings

__all__ = ["format_table", "open_session", "register", "write_result"]

FORMATS = ("table", "csv", "json", "parquet")
_CELL = 60


def open_session(settings: Settings, who: str) -> AuditSession:
    store = settings.store()
    trust = settings.trust() if settings.trust_file.exists() else None
    log = AccessLog(
        store,
        signer=settings.audit_signer(),
        archive_name=settings.archive_name,
        policy=settings.policy(),
        trust=trust,
    )
    return AuditSession(store, access_log=log, who=who, trust=trust)


# --- output --------------------------------------------------------------------------------------


def _jsonable(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def _flat(table: pa.Table) -> pa.Table:
    """Lists and structs as JSON text, binary as hex: what CSV and a terminal can hold."""
    columns = []
    for column in table.columns:
        if (
            pa.types.is_nested(column.type)
            or pa.types.is_binary(column.type)
            or pa.types.is_fixed_size_binary(column.type)
        ):
            values = [None if v is None else _text(v) for v in column.to_pylist()]
            columns.append(pa.array(values, pa.string()))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def _text(value: Any) -> str:
    plain = _plain(value)
    return plain if isinstance(plain, str) else orjson.dumps(plain).decode()


def format_table(table: pa.Table) -> str:
    flat = _flat(table)
    header = flat.column_names
    rows = [["" if v is None else _cell(v) for v in row.values()] for row in flat.to_pylist()]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    text = _text(value) if not isinstance(value, str) else value
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def write_result(table: pa.Table, fmt: str, out: Path | None, stdout: TextIO) -> None:
    if fmt == "parquet":
        if out is None:
            raise ConfigError("--format parquet needs --out FILE")
        pq.write_table(table, out, compression="zstd")
        return
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(_flat(table), sink)
        text = sink.getvalue().decode("utf-8")
    elif fmt == "json":
        text = orjson.dumps(_jsonable(table), option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = format_table(table) + "\n"
    if out is None:
        stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def _show(result: QueryResult, args: argparse.Namespace) -> None:
    write_result(result.table, args.format, args.out, sys.stdout)
    note = sys.stderr if args.format != "table" or args.out else sys.stdout
    print(
        f"-- {result.table.num_rows} row(s), result sha256 {result.result_sha256}, "
        f"logged as access-log seq {result.access.last_seq}",
        file=note,
    )
    if result.verification is not None:
        print("-- " + result.verification.summary(), file=note)


# --- handlers ------------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    session = open_session(make_settings(args), auditor_identity(args.as_))
    params = dict(_param(p) for p in args.param or ())
    window = _window(args)
    result = session.query(args.sql, params, verify=args.verify, window=window)
    _show(result, args)
    return 0


def cmd_report(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.list or not args.name:
        width = max(len(n) for n in reports.REPORTS)
        for name, summary in reports.describe().items():
            print(f"{name.ljust(width)}  {summary}")
        return 0
    params = Params(customer=args.customer, chain=args.chain, since=args.since, until=args.until)
    check_params(params)
    session = open_session(make_settings(args), auditor_identity(args.as_))
    result = session.report(args.name, params, verify=args.verify)
    _show(result, args)
    return 0


def cmd_shell(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    session = open_session(make_settings(args), auditor_identity(args.as_))
    return run_shell(session, sys.stdin, sys.stdout)


def run_shell(session: AuditSession, stdin: TextIO, stdout: TextIO) -> int:
    """A small REPL: statements end with ``;``; ``.views`` lists views, ``.quit`` leaves."""
    interactive = stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    print(
        f"coexarchive shell as {session.who}: every statement is sealed in the access log. "
        "End statements with ';'. .views lists the views, .quit leaves.",
        file=stdout,
    )
    buffer: list[str] = []
    while True:
        try:
            line = input("... " if buffer else "audit> ") if interactive else stdin.readline()
        except EOFError:
            break
        if not interactive and line == "":
            break
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            break
        if not buffer and stripped == ".views":
            for name, text in views.describe().items():
                print(f"{name:<15} {text}", file=stdout)
            continue
        if stripped:
            buffer.append(line.rstrip("\n"))
        if buffer and stripped.endswith(";"):
            statement = "\n".join(buffer).strip().rstrip(";")
            buffer = []
            try:
                result = session.query(statement)
            except CoexArchiveError as exc:
                print(f"error: {exc.diagnostics()}", file=stdout)
                continue
            print(format_table(result.table), file=stdout)
            print(f"-- logged as access-log seq {result.access.last_seq}", file=stdout)
    return 0


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigError(f"--param {text!r}: expected NAME=VALUE (used as $NAME in the SQL)")
    return name, value


def _window(args: argparse.Namespace) -> Window | None:
    if args.since is None and args.until is None:
        return None
    return Window(
        utc_ms(args.since) if args.since else None, utc_ms(args.until) if args.until else None
    )


# --- registration --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, add_archive_options: AddOptions) -> None:
    add_archive_options(parser)
    parser.add_argument(
        "--as",
        dest="as_",
        metavar="NAME",
        help="who is asking (env COEXARCHIVE_AUDITOR, else OS user)",
    )
    parser.add_argument("--key", type=Path, help="signing key for the access log")
    parser.add_argument("--trust", type=Path, help="trust file (needed for --verify)")


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--out", type=Path, help="write the result to FILE")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="prove the returned rows against the signed checkpoints (and, with --since/--until, "
        "that the time range is complete)",
    )
    parser.add_argument(
        "--since", type=parse_moment, help="from this time (ISO, UTC unless stated)"
    )
    parser.add_argument("--until", type=parse_moment, help="before this time (ISO)")


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    def bind(
        handler: Callable[[argparse.Namespace, MakeSettings], int],
    ) -> Callable[[argparse.Namespace], int]:
        return lambda args: handler(args, make_settings)

    epilog = (
        "Views: " + ", ".join(views.describe()) + ". Every statement is sealed in the access log."
    )
    query = sub.add_parser(
        "query",
        help="run SQL over the archive's views (DuckDB); sealed in the access log",
        description="Run one SQL statement over the archive's views, read straight from the "
        "object store. Named parameters: --param customer=4477... and $customer in the SQL.",
        epilog=epilog,
    )
    _common(query, add_archive_options)
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--param", action="append", metavar="NAME=VALUE")
    _output(query)
    query.set_defaults(handler=bind(cmd_query))

    report = sub.add_parser(
        "report",
        help="run a named compliance report (--list shows them)",
        description="Named reports for the questions auditors ask; --list explains each.",
    )
    _common(report, add_archive_options)
    report.add_argument("name", nargs="?", choices=sorted(reports.REPORTS), metavar="NAME")
    report.add_argument("--list", action="store_true", help="list the reports, one line each")
    report.add_argument("--customer", help="customer id (wa_id or BSUID)")
    report.add_argument("--chain", help="one business number (chain id)")
    _output(report)
    report.set_defaults(handler=bind(cmd_report))

    shell = sub.add_parser(
        "shell",
        help="interactive SQL over the views; each statement sealed in the access log",
        description="An interactive DuckDB prompt with the archive's views loaded.",
        epilog=epilog,
    )
    _common(shell, add_archive_options)
    shell.set_defaults(handler=bind(cmd_shell))
