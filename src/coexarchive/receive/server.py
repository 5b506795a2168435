"""``coexarchive receive``: the webhook receiver (uvicorn, one worker), its spool and its shipper.

Secrets come only from the environment or files: ``COEXARCHIVE_APP_SECRETS`` (comma-separated,
several for rotation) or ``--app-secret-file``; ``COEXARCHIVE_VERIFY_TOKEN``;
``COEXARCHIVE_OUTBOUND_TOKEN``, the capture secret(s) sending systems sign ``/outbound`` bodies with
(comma-separated; ``/outbound`` answers 404 without one). The archive's bucket and S3
endpoint come from the same environment as every other command (``Settings.from_env``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from coexarchive._internal.gcpause import freeze_long_lived
from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.raw import receiver_id_problem
from coexarchive.receive.app import Receiver, ReceiverConfig, app_secrets_from, create_app
from coexarchive.receive.shipper import RetentionFor, Shipper
from coexarchive.receive.spool import Spool
from coexarchive.store.base import ObjectStore

__all__ = [
    "JsonFormatter",
    "Running",
    "build_parser",
    "check_spool_dir",
    "check_start",
    "config_from_env",
    "listen",
    "main",
    "start",
    "uvicorn_config",
]

SWITCH_INTERVAL = 0.002  # seconds; CPython's default is 0.005
BACKLOG = 2048  # connections the kernel queues while the receiver starts; uvicorn's default
log = logging.getLogger("coexarchive.receive")

# Only these ``extra`` fields reach the log: the handlers pass no content and no secret, and an
# allowlist keeps it that way when someone adds a field later.
_LOG_FIELDS = (
    "status", "reason", "segment", "key", "deliveries", "error", "errno", "frames", "port",
    "host", "receiver_id", "recovered_segments", "recovered_deliveries", "truncated_bytes",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and allowlisted fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coexarchive receive",
        description="Receive WhatsApp webhooks: verify, fsync to a local spool, answer 200, "
        "ship to raw/ under Object Lock.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The receive options, for the CLI's subparser."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path("var/spool"),
        metavar="DIR",
        help="local spool; holds bodies until shipped, so put it on an encrypted volume",
    )
    parser.add_argument(
        "--receiver-id",
        default=None,
        metavar="ID",
        help="[a-z0-9-], unique per receiver (default: rcv- and the host name)",
    )
    parser.add_argument(
        "--app-secret-file",
        type=Path,
        metavar="FILE",
        help="file with app secrets, one a line (added to COEXARCHIVE_APP_SECRETS)",
    )
    parser.add_argument(
        "--spool-max-bytes",
        type=int,
        default=1 << 30,
        metavar="BYTES",
        help="spool size at which deliveries are answered 503 so that Meta retries",
    )
    parser.add_argument(
        "--segment-bytes",
        type=int,
        default=16 << 20,
        metavar="BYTES",
        help="spool segment size at which it is closed and shipped",
    )
    parser.add_argument(
        "--segment-age",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds before an open segment is closed and shipped",
    )
    parser.add_argument(
        "--ship-max-backoff", type=float, default=30.0, help="longest pause between upload retries"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR: JSON log lines at this level and above",
    )


def default_receiver_id() -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")
    return ("rcv-" + name)[:63].rstrip("-") or "rcv"


def check_start(args: argparse.Namespace) -> str:
    """Refuse, with one clear error, a receiver that could not work: before the port opens.

    Returns the receiver id. A bad id would be accepted and answered 200 for, then fail every
    upload until the spool filled; an unusable spool would fail every delivery.
    """
    # Only an absent --receiver-id takes the host name's; an empty one is a mistake.
    receiver_id = default_receiver_id() if args.receiver_id is None else args.receiver_id
    problem = receiver_id_problem(receiver_id)
    if problem is not None:
        raise ConfigError(f"--receiver-id: {problem}")
    for name, value in (
        ("--spool-max-bytes", args.spool_max_bytes),
        ("--segment-bytes", args.segment_bytes),
        ("--segment-age", args.segment_age),
        ("--ship-max-backoff", args.ship_max_backoff),
    ):
        if not value > 0:
            raise ConfigError(f"{name} must be greater than 0, got {value}")
    if args.segment_bytes > args.spool_max_bytes:
        raise ConfigError("--segment-bytes must not exceed --spool-max-bytes")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    check_spool_dir(Path(args.spool_dir))
    return receiver_id


def check_spool_dir(directory: Path) -> None:
    """The spool directory exists or can be made, and a file in it can be written and synced."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-check-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(
            f"spool directory {directory} is not usable ({error.strerror or error}): "
            "give --spool-dir a writable local directory"
        ) from None


def config_from_env(env: Mapping[str, str], secret_file: Path | None) -> ReceiverConfig:
    """Secrets from the environment or a file; never from the command line."""
    text = env.get("COEXARCHIVE_APP_SECRETS", "")
    if secret_file is not None:
        try:
            text += "\n" + secret_file.read_text()
        except OSError as error:
            raise ConfigError(f"cannot read app secret file {secret_file}: {error}") from None
    secrets = app_secrets_from(text)
    if not secrets:
        raise ConfigError(
            "no app secret: set COEXARCHIVE_APP_SECRETS (comma-separated) or --app-secret-file"
        )
    try:
        return ReceiverConfig(
            app_secrets=secrets,
            verify_token=env.get("COEXARCHIVE_VERIFY_TOKEN") or None,
            capture_secrets=app_secrets_from(env.get("COEXARCHIVE_OUTBOUND_TOKEN", "")),
        )
    except ValueError as error:
        raise ConfigError(f"receiver secrets: {error}") from None


@dataclass
class Running:
    """A started spool, shipper and app, ready to be served."""

    receiver: Receiver
    shipper: Shipper
    app: Any

    def stop(self, *, drain_for: float = 5.0) -> None:
        self.receiver.spool.close()
        self.shipper.stop(drain_for=drain_for)


def start(
    config: ReceiverConfig,
    spool: Spool,
    store: ObjectStore,
    retention_for: RetentionFor,
    *,
    max_backoff: float = 30.0,
) -> Running:
    """Recover the spool, start shipping what it holds, and build the app."""
    report = spool.open()
    log.info(
        "spool recovered",
        extra={
            "receiver_id": spool.receiver_id,
            "recovered_segments": report.segments,
            "recovered_deliveries": report.deliveries,
            "truncated_bytes": report.truncated_bytes,
        },
    )
    # The shipper's encoding and the spool writer share the GIL with the event loop; a shorter
    # switch interval hands it back sooner, which keeps their bursts out of request latency.
    sys.setswitchinterval(SWITCH_INTERVAL)
    receiver = Receiver(config, spool)
    # Segments are encoded in a child process: off the event loop's GIL and out of its collector.
    shipper = Shipper(spool, store, retention_for, max_backoff=max_backoff, encode_in_process=True)
    shipper.start()
    metrics = receiver.metrics
    metrics.gauge("coexarchive_spool_bytes", "Bytes held in the spool.", lambda: spool.used_bytes())
    metrics.gauge("coexarchive_spool_segments_waiting", "Closed segments not yet shipped.",
                  lambda: shipper.backlog)  # fmt: skip
    metrics.gauge("coexarchive_spool_fsync_batches", "Group commits so far.",
                  lambda: spool.stats.batches)  # fmt: skip
    metrics.gauge("coexarchive_spool_write_errors", "Spool write or fsync failures.",
                  lambda: spool.stats.write_errors)  # fmt: skip
    metrics.gauge("coexarchive_ship_objects", "Landing objects shipped.",
                  lambda: shipper.stats.objects)  # fmt: skip
    metrics.gauge("coexarchive_ship_failures", "Failed upload attempts (retried).",
                  lambda: shipper.stats.failures)  # fmt: skip
    metrics.gauge("coexarchive_ship_last_success_seconds", "Unix time of the last upload.",
                  lambda: shipper.stats.last_success)  # fmt: skip
    app = create_app(receiver)
    # What exists now lives as long as the server: full collections need not walk it again.
    freeze_long_lived()
    return Running(receiver, shipper, app)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then flush the spool and try to ship what it holds."""
    _configure_logging(args.log_level)
    env = os.environ if env is None else env
    # The receiver's own checks come before the port is bound and the spool opened.
    config = config_from_env(env, args.app_secret_file)
    receiver_id = check_start(args)
    # Then the port listens at once: while the rest starts (imports, the archive's settings,
    # spool recovery), senders' connections wait in its backlog instead of being refused, and
    # nothing is answered before the spool is recovered.
    sock = listen(args.host, args.port)
    try:
        return _serve(args, env, config, receiver_id, sock)
    finally:
        sock.close()


def _serve(
    args: argparse.Namespace,
    env: Mapping[str, str],
    config: ReceiverConfig,
    receiver_id: str,
    sock: socket.socket,
) -> int:
    import uvicorn

    from coexarchive.commands import raw_retention
    from coexarchive.settings import Settings

    settings = Settings.from_env(env)
    policy = settings.policy()
    spool = Spool(
        args.spool_dir,
        receiver_id,
        max_bytes=args.spool_max_bytes,
        segment_bytes=args.segment_bytes,
        segment_age=args.segment_age,
    )
    running = start(
        config,
        spool,
        settings.store(),
        lambda key: raw_retention(key, policy),
        max_backoff=args.ship_max_backoff,
    )
    server = uvicorn.Server(uvicorn_config(running.app, host=args.host, port=args.port))
    log.info("receiver listening", extra={"host": args.host, "port": args.port})
    # uvicorn stops on SIGTERM, then raises it again under the handler it found: with the
    # default one the process would die there, before the spool is closed and the shipper (and
    # its encoder process) stopped. This one lets the ``finally`` below run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run(sockets=[sock])
    finally:
        running.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, as uvicorn would bind it, or a ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # A restart after a crash must not wait for the old connections' TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): "
            "give --host an address of this machine and --port a free port"
        ) from None
    return sock


def uvicorn_config(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Any:
    """uvicorn settings for the receiver: no access log, no server header, no proxy trust."""
    import uvicorn

    # The handshake's query string carries the verify token: no access log, ever, whichever
    # handlers someone attaches to the access logger later.
    logging.getLogger("uvicorn.access").disabled = True
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        ws="none",
        timeout_keep_alive=30,
        backlog=BACKLOG,
    )


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # boto3 and uvicorn loggers can print request details; keep them at WARNING.
    for name in ("botocore", "boto3", "urllib3", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CoexArchiveError as error:
        print(f"coexarchive receive: {error.diagnostics()}", file=sys.stderr)
        sys.exit(2)
