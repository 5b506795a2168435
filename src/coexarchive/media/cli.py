"""The ``media`` command: ``media fetch`` downloads the attachments the archive references."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, binder
from coexarchive.errors import ConfigError
from coexarchive.media.fetch import FetchOptions, FetchSummary, MediaFetcher, pending_refs
from coexarchive.media.graph import (
    DEFAULT_GRAPH_URL,
    DEFAULT_GRAPH_VERSION,
    GraphClient,
    GraphConfig,
)
from coexarchive.raw import MEDIA_SECRETS_ENV, secrets_from
from coexarchive.settings import Settings

GRAPH_URL_ENV = "COEXARCHIVE_GRAPH_URL"
GRAPH_TOKEN_ENV = "COEXARCHIVE_GRAPH_TOKEN"  # noqa: S105 (a variable's name)
GRAPH_VERSION_ENV = "COEXARCHIVE_GRAPH_VERSION"
MEDIA_ENV: tuple[tuple[str, str], ...] = (
    (GRAPH_URL_ENV, f"Graph API base URL (default: {DEFAULT_GRAPH_URL})"),
    (GRAPH_TOKEN_ENV, "system-user token that may read the numbers' media"),
    (GRAPH_VERSION_ENV, f"Graph API version (default: {DEFAULT_GRAPH_VERSION})"),
    (MEDIA_SECRETS_ENV, "secret(s) that sign fetch receipts; the first signs, ingest checks all"),
)


def graph_config(env: Mapping[str, str]) -> GraphConfig:
    """Where Graph is and the token, from the environment (the token is never an option)."""
    return GraphConfig(
        base_url=env.get(GRAPH_URL_ENV) or DEFAULT_GRAPH_URL,
        token=env.get(GRAPH_TOKEN_ENV, ""),
        version=env.get(GRAPH_VERSION_ENV) or DEFAULT_GRAPH_VERSION,
    )


def receipt_secret(env: Mapping[str, str]) -> bytes:
    found = secrets_from(env.get(MEDIA_SECRETS_ENV, ""))
    if not found:
        raise ConfigError(
            f"no receipt secret: set {MEDIA_SECRETS_ENV} (and give ingest the same value) so "
            "that ingest can prove each fetch receipt came from this job"
        )
    return found[0]


def fetch_once(
    settings: Settings, env: Mapping[str, str], options: FetchOptions, **kwargs: Any
) -> FetchSummary:
    """One pass: every attachment without a receipt is fetched and its receipt landed."""
    store, raw_store = settings.store(), settings.raw_store()
    fetcher = MediaFetcher(
        store,
        raw_store,
        GraphClient(graph_config(env)),
        policy=settings.policy(),
        receipt_secret=receipt_secret(env),
        options=options,
        **kwargs,
    )
    return fetcher.run(pending_refs(store, raw_store))


def cmd_fetch(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    options = FetchOptions(
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        spool_dir=Path(args.spool_dir) if args.spool_dir else None,
    )
    env = dict(os.environ)
    graph_config(env)  # refuse a bad URL or a missing token before reading the archive
    receipt_secret(env)
    if not args.follow:
        _print(fetch_once(settings, env, options))
        return 0
    from coexarchive._internal.signals import stop_on_signals

    stop = threading.Event()
    with stop_on_signals(stop, what="media fetch stops"):
        while not stop.is_set():
            summary = fetch_once(settings, env, options)
            if summary.considered:
                _print(summary)
            stop.wait(args.interval)
    return 0


def _print(summary: FetchSummary) -> None:
    for line in summary.lines():
        print(line)
    if summary.receipts:
        print("run `coexarchive ingest` to seal the receipts as media records")


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)
    media = sub.add_parser(
        "media",
        help="fetch and store the attachments (photos, documents, voice notes, videos)",
        description="Attachments: the archive seals each message's media id and Meta's hash; "
        "`media fetch` downloads the bytes before Meta forgets the id (7 days).",
    )
    actions = media.add_subparsers(dest="media_action", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="download every attachment the archive references and has not fetched yet",
        description="Read the sealed records for media ids without a fetch receipt, resolve "
        "each with the Graph API (bearer token), stream the bytes, check Meta's sha256 and "
        "file_size and the size limit of the type, and store them once per distinct content "
        "under media/v1/sha256=<hex>, create-only, with the Object Lock retention of the "
        "message. Each final outcome lands as a receipt in raw/ signed with the media secret; "
        "the next `coexarchive ingest` seals it as a `media` record in the message's chain. "
        "Rate limits (429, Retry-After, Graph's codes) and 5xx are retried with backoff; an "
        "attachment still failing is retried by the next run while Meta keeps it (7 days), "
        "then sealed as a named gap (flag media_gap). A crash loses no work: a re-run skips "
        "what has a receipt and does not download again what is already stored.",
        epilog="media environment:\n"
        + "\n".join(f"  {name:<28}  {text}" for name, text in MEDIA_ENV),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_archive_options(fetch)
    fetch.add_argument(
        "--follow", action="store_true", help="keep fetching new references until stopped"
    )
    fetch.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="seconds between passes with --follow (default: 30.0)",
    )
    fetch.add_argument(
        "--concurrency", type=int, default=4, help="downloads at a time (default: 4)"
    )
    fetch.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        help="tries per attachment and run before it waits for the next run (default: 5)",
    )
    fetch.add_argument(
        "--spool-dir",
        help="where downloads are spooled while they are checked (default: the system temp dir)",
    )
    fetch.set_defaults(handler=bind(cmd_fetch))
