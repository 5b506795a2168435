"""The ``coexarchive s3`` command: start, reuse, describe or stop the embedded S3 server."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from coexarchive._internal.cliutil import shell_exports
from coexarchive._internal.helpformat import Parser
from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.store.s3client import create_locked_bucket
from coexarchive.store.seaweed import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_DATA_DIR,
    DEFAULT_S3_PORT,
    DEFAULT_SECRET_KEY,
    GRPC_OFFSET,
    PORT_SPAN,
    EmbeddedS3,
    stop_server,
)


def default_buckets(env: Mapping[str, str] | None = None) -> list[str]:
    """The buckets the CLI's other commands will use: COEXARCHIVE_BUCKET and _RAW_BUCKET."""
    from coexarchive.settings import DEFAULT_BUCKET

    env = os.environ if env is None else env
    buckets = [env.get("COEXARCHIVE_BUCKET") or DEFAULT_BUCKET]
    raw = env.get("COEXARCHIVE_RAW_BUCKET")
    if raw and raw not in buckets:
        buckets.append(raw)
    return buckets


def default_port(env: Mapping[str, str] | None = None) -> int:
    """The S3 port: COEXARCHIVE_S3_PORT if set, else 8333."""
    env = os.environ if env is None else env
    text = env.get("COEXARCHIVE_S3_PORT", "").strip()
    if not text:
        return DEFAULT_S3_PORT
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"COEXARCHIVE_S3_PORT={text!r} is not a port number") from None


def export_lines(server: EmbeddedS3, buckets: Sequence[str]) -> list[str]:
    """``export`` lines that point this shell's coexarchive commands at ``server``."""
    values = dict(server.environment())
    if buckets:
        values["COEXARCHIVE_BUCKET"] = buckets[0]
    return shell_exports(values)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="coexarchive s3",
        description="Run the embedded S3 server (SeaweedFS, Object Lock) on 127.0.0.1 and create "
        "its archive bucket(s) with Object Lock and versioning. Local development only: its "
        "filer port can delete locked files.",
        epilog=f"Ports: the S3 port P (default {DEFAULT_S3_PORT}), P+1..P+{PORT_SPAN - 1} for "
        f"SeaweedFS's master, volume, filer and admin servers, and each of those + {GRPC_OFFSET} "
        "for their gRPC; all on 127.0.0.1. Buckets: COEXARCHIVE_BUCKET (default coexarchive) and "
        "COEXARCHIVE_RAW_BUCKET if set, unless --bucket is given.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where the server keeps its data, log and server.json (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=default_port(),
        help=f"S3 port (env COEXARCHIVE_S3_PORT, default {DEFAULT_S3_PORT})",
    )
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY, help="local-only credential")
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY, help="local-only credential")
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        help="create this Object Lock bucket (repeatable; default: COEXARCHIVE_BUCKET)",
    )
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="leave new archive buckets sealing personal content unencrypted (record version "
        "1); by default a bucket that holds no archive yet seals it encrypted under per-customer "
        "data keys, so `coexarchive erase` can honour erasure requests",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--background",
        action="store_true",
        help="start, create the buckets, print `export` lines on stdout and return; the server "
        'keeps running (use: eval "$(coexarchive s3 --background)")',
    )
    mode.add_argument(
        "--env", action="store_true", help="print the `export` lines of the running server"
    )
    mode.add_argument("--stop", action="store_true", help="stop the server running on --data-dir")
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``coexarchive s3``: one line on stderr and exit 2 for every expected failure."""
    try:
        return _main(_parser().parse_args(argv))
    except CoexArchiveError as exc:
        print(f"coexarchive s3: error: {exc.diagnostics()}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    buckets: list[str] = args.bucket or default_buckets()
    if args.stop:
        if not stop_server(data_dir):
            print(f"no embedded S3 server runs on {data_dir}", file=sys.stderr)
            return 1
        print(f"stopped the embedded S3 server on {data_dir}", file=sys.stderr)
        return 0
    if args.env:
        running = EmbeddedS3.attach(data_dir)
        if running is None:
            raise ConfigError(
                f"no embedded S3 server runs on {data_dir}: start one with "
                f"`coexarchive s3 --background --data-dir {data_dir}`"
            )
        print("\n".join(export_lines(running, buckets)))
        return 0
    if args.background:
        return _background(args, data_dir, buckets)
    return _foreground(args, data_dir, buckets)


def _new_archive_setting(args: argparse.Namespace, server: EmbeddedS3, bucket: str) -> None:
    """A bucket that holds no archive yet seals personal content encrypted (unless --plaintext);
    the raw bucket, when separate, holds no archive and gets no setting."""
    from coexarchive._internal.clock import now_ms
    from coexarchive.datakeys import enable_for_new_archive
    from coexarchive.settings import Settings

    settings = Settings.from_env()
    if args.plaintext or (settings.raw_bucket == bucket != settings.bucket):
        return
    if enable_for_new_archive(server.store(bucket), now=now_ms(), policy=settings.policy()):
        print(
            f"# bucket {bucket}: personal content will be sealed encrypted (data keys in "
            f"{settings.data_keys_dir}; --plaintext to opt out)",
            file=sys.stderr,
        )


def _background(args: argparse.Namespace, data_dir: Path, buckets: list[str]) -> int:
    server = EmbeddedS3.attach(data_dir)
    reused = server is not None
    if server is None:
        server = EmbeddedS3(
            data_dir, s3_port=args.port, access_key=args.access_key, secret_key=args.secret_key
        )
        server.start()
    try:
        for bucket in buckets:
            create_locked_bucket(server.client(), bucket)
            _new_archive_setting(args, server, bucket)
    except BaseException:
        if not reused:
            server.stop()
        raise
    server.detach()
    what = "already running" if reused else "started"
    print(
        f"# embedded S3 (local only) {what} on {server.endpoint_url}, pid {server.pid}, data in "
        f"{server.data_dir}; bucket(s) {', '.join(buckets)} with Object Lock and versioning. "
        f"Stop it with `coexarchive s3 --stop --data-dir {data_dir}`.",
        file=sys.stderr,
    )
    print("\n".join(export_lines(server, buckets)), flush=True)
    return 0


def _foreground(args: argparse.Namespace, data_dir: Path, buckets: list[str]) -> int:
    server = EmbeddedS3(
        data_dir, s3_port=args.port, access_key=args.access_key, secret_key=args.secret_key
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.start()
        for bucket in buckets:
            create_locked_bucket(server.client(), bucket)
            _new_archive_setting(args, server, bucket)
        print(
            f"# embedded S3 (local only) on {server.endpoint_url}, data in {server.data_dir}; "
            f"bucket(s) {', '.join(buckets)} with Object Lock and versioning"
        )
        print("\n".join(export_lines(server, buckets)))
        print("# Ctrl-C to stop", flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"weed mini exited; see {server.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
