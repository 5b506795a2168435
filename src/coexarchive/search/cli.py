"""The ``search`` command: full-text search over the archive, sealed in the access log.

``coexarchive search QUERY`` searches; ``coexarchive search reindex`` brings the index up to date
(``--rebuild`` builds it again from nothing). Registered from ``coexarchive.cli``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, parse_moment
from coexarchive._internal.clock import now_ms
from coexarchive._internal.progress import Progress
from coexarchive.errors import ConfigError
from coexarchive.query.access_log import AccessEntry, AccessLog, auditor_identity
from coexarchive.query.cli import FORMATS, check_output_file, show_table
from coexarchive.query.views import ArchiveCatalog, Window, utc_ms
from coexarchive.search.index import (
    INDEX_DIR_ENV,
    SearchIndex,
    archive_identity,
    default_index_dir,
)
from coexarchive.search.service import Searcher, SearchResult
from coexarchive.settings import Settings

__all__ = ["register"]

EPILOG = """\
Query language (operators in capitals; words are matched case- and accent-insensitively):
  guaranteed return             both words, anywhere in the message (same as AND)
  "guaranteed return"           the phrase, words in this order
  crypto OR bitcoin             either
  crypto NOT test, crypto -test the first without the second
  (crypto OR bitcoin) AND "guaranteed return"
  guaranteed NEAR/5 crypto      at most 5 words apart, either order (phrases too)
  chain:ID customer:ID direction:inbound|outbound kind:KIND type:document
                                exact filters on the record's columns
Searched: message text, media captions and document file names. Period: --since/--until.
A query that starts with - goes after --:  coexarchive search -- '-test crypto'.
`coexarchive search reindex` first (and after ingest); every search is sealed in the access log.
"""


def _access_log(settings: Settings) -> AccessLog:
    return AccessLog.for_settings(settings)


def _index(settings: Settings, args: argparse.Namespace) -> SearchIndex:
    directory: Path = args.index or default_index_dir(settings)
    return SearchIndex(
        directory, archive_identity(settings), keys=settings.readable_data_keys(clock=now_ms)
    )


def cmd_search(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.words == ["reindex"]:
        return cmd_reindex(args, make_settings)
    if args.rebuild:
        raise ConfigError("--rebuild is for `coexarchive search reindex`")
    _check_output(args)
    window = _window(args)
    settings = make_settings(args)
    who = auditor_identity(args.as_)
    index = _index(settings, args)
    searcher = Searcher(
        index,
        ArchiveCatalog(settings.store()),
        access_log=_access_log(settings),
        who=who,
        clock=now_ms,
    )
    result = searcher.search(
        " ".join(args.words),
        window=window,
        limit=args.limit,
        stemmed=args.stem,
        newest_first=args.newest_first,
    )
    _show(result, args)
    return 0


def cmd_reindex(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    who = auditor_identity(args.as_)
    log = _access_log(settings)  # a missing or untrusted key fails before any work
    index = _index(settings, args)
    catalog = ArchiveCatalog(settings.store())
    progress = Progress("indexing segments", 0)
    try:
        update = index.update(catalog, rebuild=args.rebuild, progress=progress)
    finally:
        progress.close()
    # Reading the archive into a local index is an access too: it is sealed like a search.
    log.append(
        AccessEntry(
            who=who,
            sql="-- search reindex" + (" --rebuild" if args.rebuild else ""),
            params={
                "index": str(index.directory),
                "segments_added": len(update.added),
                "segments_removed": len(update.removed),
            },
            rows=update.records,
            result_sha256=None,
            report="search-reindex",
        ),
        now_ms=now_ms(),
    )
    print(
        f"search index {index.directory}: {len(update.added)} segment(s) indexed "
        f"({update.records} record(s)), {len(update.removed)} removed, "
        f"{len(index.segments())} held"
    )
    return 0


def _show(result: SearchResult, args: argparse.Namespace) -> None:
    note = show_table(result.table, args)
    shown = result.table.num_rows
    more = f" of {result.total} (raise --limit for more)" if result.total > args.limit else ""
    print(
        f"-- {shown} match(es){more}, result sha256 {result.result_sha256}, "
        f"logged as access-log seq {result.access.last_seq}",
        file=note,
    )
    if result.not_indexed:
        print(
            f"-- warning: {result.not_indexed} committed segment(s) are not in the search index "
            "yet, so their records were not searched: run `coexarchive search reindex`",
            file=sys.stderr,
        )
    if result.mismatched:
        print(
            f"-- warning: {result.mismatched} index hit(s) did not match the archive's records "
            "and were left out: the index is stale or was altered; run "
            "`coexarchive search reindex --rebuild`",
            file=sys.stderr,
        )


def _check_output(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    check_output_file(args)


def _window(args: argparse.Namespace) -> Window | None:
    if args.since is None and args.until is None:
        return None
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    return Window(
        utc_ms(args.since) if args.since else None, utc_ms(args.until) if args.until else None
    )


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    search = sub.add_parser(
        "search",
        help="full-text search of messages, captions and file names; sealed in the access log",
        description="Search the archive's messages with words, phrases, AND/OR/NOT, NEAR/n and\n"
        "filters, through a local index (`coexarchive search reindex` builds and updates it).\n"
        "Each hit is read back from the archive and shown with the command that opens its\n"
        "conversation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_archive_options(search)
    search.add_argument("words", nargs="+", metavar="QUERY", help="the query, or `reindex`")
    search.add_argument(
        "--index",
        type=Path,
        metavar="DIR",
        help=f"the search index directory (env {INDEX_DIR_ENV}; default: "
        "$COEXARCHIVE_HOME/search/BUCKET)",
    )
    search.add_argument(
        "--rebuild", action="store_true", help="with reindex: build the index again from nothing"
    )
    search.add_argument("--as", dest="as_", metavar="NAME", help="who is asking")
    search.add_argument("--key", type=Path, help="signing key for the access log")
    search.add_argument("--trust", type=Path, help="trust file listing the access-log key")
    search.add_argument(
        "--since", type=parse_moment, help="from this time (ISO, UTC unless stated)"
    )
    search.add_argument("--until", type=parse_moment, help="before this time (ISO)")
    search.add_argument("--limit", type=int, default=100, help="show at most N hits (100)")
    search.add_argument(
        "--newest-first", action="store_true", help="newest hits first (default: oldest first)"
    )
    search.add_argument(
        "--stem",
        action="store_true",
        help="match words by their English stem (invest finds investing, invested)",
    )
    search.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    search.add_argument("--out", type=Path, help="write the result to FILE")
    search.add_argument("--force", action="store_true", help="replace an existing --out FILE")
    search.add_argument(
        "--raw-csv", action="store_true", help="keep cells starting with = + - @ as they are"
    )
    search.add_argument("--full-ids", action="store_true", help="show ids whole in a table")
    search.set_defaults(handler=lambda args: cmd_search(args, make_settings))
