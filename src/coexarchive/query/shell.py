"""``coexarchive shell``: an interactive prompt over the archive's views.

Each statement goes through :meth:`AuditSession.query`, so it is sealed in the access log before
its result is shown, like every other statement.
"""

from __future__ import annotations

from typing import TextIO

from coexarchive.errors import CoexArchiveError
from coexarchive.query import views
from coexarchive.query.session import AuditSession

__all__ = ["run_shell"]


_SHELL_HELP = """\
Statements end with ';' and may span lines. Each is sealed in the access log before its
result is shown. Only SELECT (with DESCRIBE, SUMMARIZE, EXPLAIN) runs: no files, no settings.
  .help           this text
  .tables         the views and tables, one line each (also .views)
  .schema VIEW    the columns of VIEW and their types
  .quit           leave (also .exit, Ctrl-D)"""


def run_shell(
    session: AuditSession, stdin: TextIO, stdout: TextIO, *, full_ids: bool = False
) -> int:
    """A small REPL: statements end with ``;``; dot commands as in ``.help``."""
    from coexarchive.query.cli import format_table  # the command's own table output

    interactive = stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    print(
        f"coexarchive shell as {session.who}: every statement is sealed in the access log. "
        "End statements with ';'. .help lists the commands.",
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
        if not buffer and stripped.startswith((".", "\\")):
            if _dot_command(session, stripped, stdout):
                continue
            break
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
            print(format_table(result.table, full_ids=full_ids), file=stdout)
            print(f"-- logged as access-log seq {result.access.last_seq}", file=stdout)
    return 0


def _dot_command(session: AuditSession, command: str, stdout: TextIO) -> bool:
    """Run a dot command; False when it asks to leave."""
    name, _, rest = command.partition(" ")
    if name in (".quit", ".exit", "\\q"):
        return False
    if name == ".help":
        print(_SHELL_HELP, file=stdout)
    elif name in (".tables", ".views"):
        described = views.describe()
        width = max(len(n) for n in described)
        for view, text in described.items():
            print(f"{view:<{width}}  {text}", file=stdout)
    elif name == ".schema":
        print(_schema(session, rest.strip().rstrip(";")), file=stdout)
    else:
        print(f"unknown command {name}; .help lists the commands", file=stdout)
    return True


def _schema(session: AuditSession, view: str) -> str:
    if not view:
        return "usage: .schema VIEW (.tables lists them)"
    if view not in views.describe():
        return f"no view named {view!r}{views.suggest(view)}; .tables lists them"
    columns = session.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [view],
    ).fetchall()
    width = max(len(name) for name, _ in columns)
    return "\n".join(f"{name:<{width}}  {kind}" for name, kind in columns)
