"""Auditor subcommands: ``query``, ``report`` and ``shell``.

Every statement is sealed into the access log before its result is printed; there is no option
to skip that. Registered from ``coexarchive.cli`` with :func:`register`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coexarchive._internal.cliutil import AddOptions, MakeSettings, parse_customer, parse_moment
from coexarchive._internal.clock import now_ms
from coexarchive.errors import ConfigError
from coexarchive.query import reports, views
from coexarchive.query.access_log import AccessLog, auditor_identity
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession, QueryResult, check_params
from coexarchive.query.shell import run_shell
from coexarchive.query.verify_rows import HeadLike
from coexarchive.query.views import Window, utc_ms
from coexarchive.settings import Settings

__all__ = [
    "format_table",
    "iso_utc",
    "open_session",
    "register",
    "run_shell",
    "to_csv",
    "to_json",
    "write_result",
]

FORMATS = ("table", "csv", "json", "parquet")
# Shown shortened in a terminal table unless --full-ids: long, and rarely what is read first.
_ID_COLUMNS = frozenset(
    {
        "record_id",
        "msg_record_id",
        "ref_record_id",
        "wamid",
        "context_wamid",
        "media_id",
        "result_sha256",
        "raw_key",
        "leaf_hash",
        "chain_hash",
    }
)
_ID_WIDTH = 12
# Read first: put right after the leading time column in a terminal table.
_TEXT_COLUMNS = ("text", "msg_text", "sql", "reason", "finding")
# Columns that hold JSON documents: objects in JSON output, not strings.
_JSON_COLUMNS = frozenset({"detail", "params"})
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def open_session(settings: Settings, who: str) -> AuditSession:
    store = settings.store()
    trust = settings.trust() if settings.trust_file.exists() else None
    log = AccessLog.for_settings(settings, store, trust=trust)
    keys = settings.readable_data_keys(clock=now_ms)
    return AuditSession(store, access_log=log, who=who, trust=trust, keys=keys)


# --- output --------------------------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    """The one time format of every output: ISO 8601 in UTC to the millisecond, ``Z`` suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _value(value: Any) -> Any:
    """A result value as plain JSON-able data, times in the one output format."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    return value


def _rows(table: pa.Table) -> list[list[Any]]:
    columns = [column.to_pylist() for column in table.columns]
    return [[_value(c[i]) for c in columns] for i in range(table.num_rows)]


def _json_document(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def to_json(table: pa.Table) -> str:
    names = table.column_names
    rows = [
        {name: _json_document(name, v) for name, v in zip(names, row, strict=True)}
        for row in _rows(table)
    ]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n"


def _csv_cell(value: Any, raw: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if not raw and text.startswith(_FORMULA_PREFIXES):
        text = "'" + text  # shown as text by every spreadsheet, never run
    return '"' + text.replace('"', '""') + '"'


def to_csv(table: pa.Table, *, raw: bool = False) -> str:
    """RFC 4180 CSV; cells a spreadsheet would run as a formula get a leading ``'`` unless raw."""
    lines = [",".join(_csv_cell(name, raw) for name in table.column_names)]
    lines += [",".join(_csv_cell(v, raw) for v in row) for row in _rows(table)]
    return "\n".join(lines) + "\n"


def _safe_text(text: str, *, keep_newlines: bool) -> str:
    """Control and bidi-override characters made visible: a cell cannot move the cursor."""
    out = []
    for char in text:
        if char == "\n" and keep_newlines:
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf"):
            out.append(f"\\u{ord(char):04x}" if ord(char) > 0xFF else f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _display(name: str, value: Any, full_ids: bool) -> str:
    if value is None:
        return ""
    if name == "sql" and isinstance(value, str):
        return _safe_text(textwrap.dedent(value).strip(), keep_newlines=True)
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    text = _safe_text(text, keep_newlines=name in _TEXT_COLUMNS)
    if name in _ID_COLUMNS and not full_ids and len(text) > _ID_WIDTH:
        text = text[: _ID_WIDTH - 1] + "…"
    return text


def _display_order(names: Sequence[str]) -> list[int]:
    """Column positions with the text columns right after the leading time column."""
    order = list(range(len(names)))
    texts = [i for i in order if names[i] in _TEXT_COLUMNS]
    rest = [i for i in order if i not in texts]
    lead = 1 if rest and names[rest[0]] in ("event_time", "time", "day", "first_time") else 0
    return rest[:lead] + texts + rest[lead:]


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def format_table(table: pa.Table, *, width: int | None = None, full_ids: bool = False) -> str:
    """The result laid out for a terminal ``width`` columns wide.

    A table when it fits (long text wrapped in its column, every other column at its own width);
    otherwise one block per row, a field a line, as ``psql``'s expanded display. Text comes right
    after the time either way; ids are shortened unless ``full_ids``.
    """
    width = width or terminal_width()
    names = table.column_names
    order = _display_order(names)
    cells = [[_display(names[i], row[i], full_ids) for i in order] for row in _rows(table)]
    heads = [names[i] for i in order]
    count = f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})"
    if not names:
        return count
    natural = [max([len(h), *(_longest_line(r[k]) for r in cells)]) for k, h in enumerate(heads)]
    wide = [k for k, h in enumerate(heads) if h in _TEXT_COLUMNS]
    narrow = sum(w for k, w in enumerate(natural) if k not in wide)
    needed = narrow + 2 * (len(heads) - 1) + sum(min(natural[k], 30) for k in wide)
    sink = io.StringIO()
    console = Console(
        file=sink,
        width=width,
        color_system=None,
        force_terminal=False,
        highlight=False,
        emoji=False,
        markup=False,
    )
    if needed <= width:
        multi_line = any("\n" in cell for row in cells for cell in row)
        grid = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            highlight=False,
            show_lines=multi_line,  # rows of several lines (SQL, messages) stay apart
        )
        for k, head in enumerate(heads):
            if k in wide:
                grid.add_column(Text(head), overflow="fold", ratio=1, min_width=min(natural[k], 30))
            else:
                grid.add_column(Text(head), no_wrap=True, min_width=natural[k])
        for row in cells:
            grid.add_row(*(Text(c) for c in row))
        console.print(grid)
    else:
        label = max(len(h) for h in heads)
        for number, row in enumerate(cells, start=1):
            console.print(Text(f"-[ row {number} ]" + "-" * max(0, min(width, 60) - 12)))
            block = Table.grid(padding=(0, 2))
            block.add_column(no_wrap=True, min_width=label)
            block.add_column(overflow="fold")
            for head, cell in zip(heads, row, strict=True):
                block.add_row(Text(head), Text(cell))
            console.print(block)
    text = "\n".join(line.rstrip() for line in sink.getvalue().splitlines())
    return f"{text}\n{count}"


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def check_output_file(args: argparse.Namespace) -> None:
    """Refuse ``--format``/``--out``/``--force`` that cannot work, before anything runs or is
    logged."""
    out: Path | None = args.out
    if args.format == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE (Parquet is not for a terminal)")
    if out is not None:
        if out.exists() and not args.force:
            raise ConfigError(f"{out} exists; pass --force to replace it")
        if not out.parent.is_dir():
            raise ConfigError(f"cannot write {out}: folder {out.parent} does not exist")


def check_output(args: argparse.Namespace) -> None:
    """Refuse output options that cannot work, before any statement runs or is logged."""
    check_output_file(args)
    if args.expect_head and not args.verify:
        raise ConfigError("--expect-head checks a --verify run; add --verify")


def write_result(
    table: pa.Table,
    fmt: str,
    out: Path | None,
    stdout: TextIO,
    *,
    force: bool = False,
    raw_csv: bool = False,
    full_ids: bool = False,
) -> None:
    if fmt == "parquet":
        if out is None:
            raise ConfigError("--format parquet needs --out FILE")
        with _open_out(out, force, binary=True) as sink:
            pq.write_table(table, sink, compression="zstd")
        return
    if fmt == "csv":
        text = to_csv(table, raw=raw_csv)
    elif fmt == "json":
        text = to_json(table)
    else:
        text = format_table(table, full_ids=full_ids, width=None if out is None else 200) + "\n"
    if out is None:
        stdout.write(text)
    else:
        with _open_out(out, force, binary=False) as sink:
            sink.write(text)


def _open_out(out: Path, force: bool, *, binary: bool) -> Any:
    mode = ("w" if force else "x") + ("b" if binary else "")
    try:
        return out.open(mode) if binary else out.open(mode, encoding="utf-8")
    except FileExistsError:
        raise ConfigError(f"{out} exists; pass --force to replace it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None


def show_table(table: pa.Table, args: argparse.Namespace) -> TextIO:
    """Write ``table`` as the output options ask; returns where notes about it belong."""
    write_result(
        table,
        args.format,
        args.out,
        sys.stdout,
        force=args.force,
        raw_csv=args.raw_csv,
        full_ids=args.full_ids,
    )
    return sys.stderr if args.format != "table" or args.out else sys.stdout


def _show(result: QueryResult, args: argparse.Namespace) -> None:
    note = show_table(result.table, args)
    print(
        f"-- {result.table.num_rows} row(s), result sha256 {result.result_sha256}, "
        f"logged as access-log seq {result.access.last_seq}",
        file=note,
    )
    if args.out is not None:
        print(f"-- written to {args.out}", file=note)
    if result.verification is not None:
        print("-- " + result.verification.summary(), file=note)


def _heads(args: argparse.Namespace, settings: Settings) -> dict[str, HeadLike] | None:
    """Trusted sizes and roots per chain from kept archive heads or chain checkpoints."""
    if not args.expect_head:
        return None
    from coexarchive.archive_head import parse_pinned_head
    from coexarchive.seal.head import is_head_note
    from coexarchive.verify import parse_head

    trust = settings.trust()
    heads: dict[str, HeadLike] = {}
    for path in args.expect_head:
        try:
            note = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read head {path}: {exc.strerror}") from None
        if is_head_note(note):
            for chain in parse_pinned_head(note, trust).head.chains:
                heads[chain.chain_id] = chain
        else:
            head = parse_head(note, trust)
            heads[head.chain_id] = head.checkpoint
    return heads


# --- handlers ------------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    check_output(args)
    params = dict(_param(p) for p in args.param or ())
    window = _window(args)
    settings = make_settings(args)
    heads = _heads(args, settings)
    session = open_session(settings, auditor_identity(args.as_))
    # --since/--until restrict every view (scope) and, with --verify, are the range proven.
    result = session.query(
        args.sql, params, verify=args.verify, window=window, heads=heads, scope=window
    )
    _show(result, args)
    return 0


def cmd_report(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.list or not args.name:
        width = max(len(n) for n in reports.REPORTS)
        for name, summary in reports.describe().items():
            print(f"{name.ljust(width)}  {summary}")
        return 0
    check_output(args)
    params = Params(customer=args.customer, chain=args.chain, since=args.since, until=args.until)
    check_params(params)
    reports.build_sql(reports.REPORTS[args.name], params)  # a missing --customer, say, fails here
    settings = make_settings(args)
    heads = _heads(args, settings)
    session = open_session(settings, auditor_identity(args.as_))
    result = session.report(args.name, params, verify=args.verify, heads=heads)
    _show(result, args)
    return 0


def cmd_shell(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    session = open_session(make_settings(args), auditor_identity(args.as_))
    return run_shell(session, sys.stdin, sys.stdout, full_ids=args.full_ids)


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigError(f"--param {text!r}: expected NAME=VALUE (used as $NAME in the SQL)")
    return name, value


def _window(args: argparse.Namespace) -> Window | None:
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    since, until = (utc_ms(t) if t is not None else None for t in (args.since, args.until))
    return None if since is None and until is None else Window(since, until)


# --- registration --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, add_archive_options: AddOptions) -> None:
    add_archive_options(parser)
    parser.add_argument(
        "--as",
        dest="as_",
        metavar="NAME",
        help="who is asking (env COEXARCHIVE_AUDITOR, else OS user)",
    )
    parser.add_argument(
        "--key", type=Path, help="signing key for the access log (listed in the trust file)"
    )
    parser.add_argument(
        "--trust", type=Path, help="trust file: vouches for the access-log key; used by --verify"
    )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "--out", type=Path, help="write the result to FILE (an existing file only with --force)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out FILE")
    parser.add_argument(
        "--raw-csv",
        action="store_true",
        help="keep cells starting with = + - @ as they are (by default they get a leading ' so "
        "a spreadsheet shows them as text instead of running them)",
    )
    parser.add_argument(
        "--full-ids", action="store_true", help="show ids and hashes whole in a terminal table"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="prove every value shown against the signed checkpoints (and, with --since/--until "
        "and --expect-head, that the time range is complete)",
    )
    parser.add_argument(
        "--expect-head",
        action="append",
        metavar="FILE",
        help="an archive head or a chain's checkpoint kept earlier (`coexarchive head --out`): "
        "with --verify, a time range is called complete only for chains checked against one "
        "(repeatable)",
    )
    parser.add_argument(
        "--since",
        type=parse_moment,
        help="only records from this time (ISO, UTC unless stated; for query, every view)",
    )
    parser.add_argument(
        "--until", type=parse_moment, help="only records before this time (ISO, exclusive)"
    )


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
    query.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a named parameter, used as $NAME in the SQL; repeatable",
    )
    _output(query)
    query.set_defaults(handler=bind(cmd_query))

    report = sub.add_parser(
        "report",
        help="run a named compliance report (--list shows them)",
        description="Named reports for the questions auditors ask; --list explains each.",
    )
    _common(report, add_archive_options)
    report.add_argument(
        "name",
        nargs="?",
        choices=sorted(reports.REPORTS),
        metavar="NAME",
        help="the report to run: " + ", ".join(sorted(reports.REPORTS)),
    )
    report.add_argument("--list", action="store_true", help="list the reports, one line each")
    report.add_argument("--customer", type=parse_customer, help="customer id (wa_id or BSUID)")
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
    shell.add_argument(
        "--full-ids", action="store_true", help="show ids and hashes whole in result tables"
    )
    shell.set_defaults(handler=bind(cmd_shell))
