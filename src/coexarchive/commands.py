"""Pipeline-facing subcommands: ``simulate``, ``ingest`` and ``redrive`` (``demo``: demo.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, add_signing_key_option, binder
from coexarchive.errors import ConfigError
from coexarchive.retention import RetentionPolicy
from coexarchive.settings import Settings
from coexarchive.store.base import ObjectStore, Retention


def upload_raw(
    store: ObjectStore,
    objects: Sequence[tuple[str, bytes]],
    *,
    policy: RetentionPolicy,
    progress: Any = None,
) -> int:
    """Land raw objects as the receiver's shipper does: create-only, under Object Lock."""
    written = 0
    for key, data in objects:
        store.put(key, data, retention=raw_retention(key, policy), content_type="application/zstd")
        written += 1
        if progress is not None:
            progress.advance()
    return written


def raw_retention(key: str, policy: RetentionPolicy) -> Retention:
    """Raw bodies are evidence: locked from their receive date like the records made from them."""
    from coexarchive.records import Record

    date = next((p[5:] for p in key.split("/") if p.startswith("date=")), None)
    if date is None:
        raise ConfigError(f"raw key {key!r} has no date= segment")
    received = int(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
    marker = Record("raw", "-", "raw", "system", "none", received, received_time=received)
    return policy.retention_for([marker])


def ingest_argv(
    settings: Settings, *, prefix: str, workers: int, extra: Sequence[str] = ()
) -> list[str]:
    argv = [
        f"--bucket={settings.bucket}",
        f"--input_prefix={prefix}",
        f"--signing_key={settings.key_file}",
        f"--archive_name={settings.archive_name}",
        f"--retention={settings.retention}",
    ]
    if settings.trust_file.exists():
        argv.append(f"--trust_file={settings.trust_file}")
    if settings.tsa_file.exists():
        argv.append(f"--tsa_file={settings.tsa_file}")
    if settings.witness_file.exists():
        argv.append(f"--witness_file={settings.witness_file}")
    if settings.raw_bucket:
        argv.append(f"--raw_bucket={settings.raw_bucket}")
    if settings.endpoint_url:
        argv.append(f"--endpoint_url={settings.endpoint_url}")
    if settings.region_name:
        argv.append(f"--region_name={settings.region_name}")
    if settings.sse_kms_key_id:
        argv.append(f"--sse_kms_key_id={settings.sse_kms_key_id}")
    argv.append(f"--data_keys_dir={settings.data_keys_dir}")
    if settings.data_key_kms:
        argv.append(f"--data_key_kms={settings.data_key_kms}")
    if not any(a.startswith("--runner") for a in extra):
        argv.append("--runner=FnApiRunner")
        if workers > 1:
            argv += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    return argv + list(extra)


def auth_lines(counters: dict[str, int]) -> list[str]:
    """What authentication refused or could not check in a run, said plainly."""
    lines = []
    if refused := counters.get("signature_invalid", 0):
        lines.append(
            f"not authenticated:   {refused:>10,}  deliveries quarantined, not sealed "
            "(signature_invalid or signature_unverifiable: reasons under quarantine/v1/)"
        )
    if unchecked := counters.get("unverified_deliveries", 0):
        lines.append(
            f"UNVERIFIED:          {unchecked:>10,}  deliveries sealed without a secret to check "
            'them; their records say "delivery_auth": "unverified_no_secret"'
        )
    return lines


# --- handlers ------------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    from coexarchive._internal.progress import Progress
    from coexarchive.testing import DEMO_APP_SECRET
    from coexarchive.testing.cli import generate, write

    objects, lines = generate(args)
    print("\n".join(lines))
    if args.out:
        write(Path(args.out), objects)
        print(f"wrote them under {args.out}/")
    else:
        settings = make_settings(args)
        progress = Progress("landing raw objects", len(objects))
        upload_raw(settings.raw_store(), objects, policy=settings.policy(), progress=progress)
        progress.close()
        print(f"landed them in s3://{settings.raw_bucket or settings.bucket}/raw/")
    if args.app_secret_file is None:
        # Ingest checks every signature: say which secret it needs (a published demo value).
        secret = DEMO_APP_SECRET.decode()
        print(
            f"signed with the demo app secret: ingest with COEXARCHIVE_APP_SECRETS={secret} "
            f"COEXARCHIVE_OUTBOUND_TOKEN={secret}"
        )
    if args.serve_media is not None:
        from coexarchive.testing.graph import serve_until_stopped

        serve_until_stopped(objects, args.serve_media)
    return 0


def cmd_ingest(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    from coexarchive.raw import DeliveryAuth
    from pipelines.ingest import run

    # Fail early, with one clear line, without the secrets that authenticate raw deliveries.
    auth = DeliveryAuth.from_env(os.environ, allow_unauthenticated=args.allow_unauthenticated)
    settings = make_settings(args, retention=args.retention)
    settings.signer()  # fail early, with a clear message, if the key is missing
    if args.follow:
        return _follow(args, settings, auth)
    started = time.monotonic()
    summary = run(
        ingest_argv(settings, prefix=args.prefix, workers=args.workers, extra=args.beam),
        auth=auth,
        progress=args.progress,
    )
    print("\n".join(summary.lines()))
    print("\n".join(auth_lines(summary.extra)))
    print(f"took {time.monotonic() - started:.1f}s")
    summary.check()  # a chain ending in an unsigned tail was refused: exit non-zero, naming it
    return 0


def _follow(args: argparse.Namespace, settings: Settings, auth: Any) -> int:
    """``ingest --follow``: a line per pass; on SIGTERM or Ctrl-C, finish the pass and sum up."""
    import threading

    from coexarchive._internal.progress import wanted
    from coexarchive._internal.signals import stop_on_signals
    from coexarchive.receive.continuous import PassResult, follow_from_settings
    from pipelines.ingest import IngestSummary

    total = IngestSummary()
    passes = failed = idle = 0
    waiting = wanted(sys.stderr, args.progress)

    def on_pass(result: PassResult) -> None:
        nonlocal passes, failed, idle
        stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
        if result.error:
            failed += 1
            print(f"{stamp} pass failed, retrying: {result.error}", flush=True)
        elif result.summary is None:
            idle += 1
            if waiting:  # an idle pass is news only to someone watching
                sys.stderr.write(f"\r{stamp} waiting for new raw objects ({idle} idle passes)")
                sys.stderr.flush()
            return
        else:
            passes += 1
            total.add(result.summary)
            latency = max(result.latencies_ms, default=0)
            print(
                f"{stamp} pass {passes}: {result.summary.pass_line()}; "
                f"slowest 200→sealed {latency:,} ms",
                flush=True,
            )
        if waiting and idle:
            sys.stderr.write("\n")
        idle = 0

    stop = threading.Event()
    with stop_on_signals(stop):
        follower = follow_from_settings(
            settings, auth=auth, poll=args.poll, beam_args=args.beam, stop=stop, on_pass=on_pass
        )
    if waiting and idle:
        sys.stderr.write("\n")
    p95 = follower.p95_ms()
    print(
        f"stopped: {passes} pass(es), {failed} failed; {total.pass_line()}; "
        f"p95 200→sealed {'-' if p95 is None else f'{p95:,} ms'}",
        flush=True,
    )
    return 0


def cmd_redrive(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    from coexarchive import quarantine
    from coexarchive.raw import DeliveryAuth
    from pipelines.ingest import SealSpec, StoreSpec, run_pipeline

    auth = DeliveryAuth.from_env(os.environ, allow_unauthenticated=args.allow_unauthenticated)
    settings = make_settings(args)
    store = settings.store()
    raw_keys = sorted({entry.item.raw_key for entry in quarantine.entries(store)})
    raw_bucket = settings.raw_bucket or settings.bucket
    if not raw_keys:
        print("quarantine is empty: nothing to re-drive")
        return 0
    from apache_beam.options.pipeline_options import PipelineOptions

    spec = StoreSpec(
        settings.bucket, settings.endpoint_url, settings.region_name, settings.sse_kms_key_id
    )
    seal = SealSpec(
        str(settings.key_file),
        settings.archive_name,
        settings.retention,
        trust_file=str(settings.trust_file) if settings.trust_file.exists() else None,
        tsa_file=str(settings.tsa_file) if settings.tsa_file.exists() else None,
        witness_file=str(settings.witness_file) if settings.witness_file.exists() else None,
        data_keys_dir=str(settings.data_keys_dir),
        data_key_kms=settings.data_key_kms,
    )
    raw_spec = StoreSpec(
        raw_bucket, settings.endpoint_url, settings.region_name, settings.sse_kms_key_id
    )
    options = PipelineOptions(["--runner=FnApiRunner"])
    summary = run_pipeline(raw_keys, spec, seal, options, auth=auth, raw_spec=raw_spec)
    print(f"re-drove {len(raw_keys)} raw object(s) that had quarantined input")
    print("\n".join(summary.lines()))
    print(
        "events already sealed were recognised as duplicates; only newly parseable ones were sealed"
    )
    summary.check()  # a chain ending in an unsigned tail was refused: exit non-zero, naming it
    return 0


# --- registration --------------------------------------------------------------------------------


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)

    from coexarchive.testing import cli as simulate_cli

    simulate = sub.add_parser(
        "simulate",
        help="generate realistic, signed webhook traffic as raw landing objects (test data)",
        description=simulate_cli.DESCRIPTION + " Writes to the bucket's raw/ prefix, or to a "
        "directory with --out.",
        epilog=simulate_cli.EPILOG,
    )
    add_archive_options(simulate)
    simulate_cli.add_arguments(simulate)
    simulate.add_argument(
        "--serve-media",
        type=int,
        metavar="PORT",
        help="then serve the traffic's attachments as a local Graph API on 127.0.0.1:PORT "
        "(bearer token, 5-minute URLs, 7-day ids) until Ctrl-C, for `coexarchive media fetch`",
    )
    simulate.set_defaults(handler=bind(cmd_simulate))

    ingest = sub.add_parser(
        "ingest",
        help="run the Beam ingest pipeline over raw/ objects",
        description="Parse, normalise, de-duplicate and seal every raw landing object under "
        "--prefix. Idempotent: re-running changes nothing. Arguments after `--` go to Beam "
        "(e.g. `-- --runner=FlinkRunner ...`).",
    )
    add_archive_options(ingest)
    ingest.add_argument("--prefix", default="raw/", help="raw objects to read")
    ingest.add_argument("--workers", type=int, default=1, help="local worker processes")
    add_signing_key_option(ingest)
    ingest.add_argument(
        "--retention",
        help="Object Lock for new objects, e.g. COMPLIANCE:7 or "
        "message=COMPLIANCE:7,default=GOVERNANCE:3 (env COEXARCHIVE_RETENTION, else COMPLIANCE:7)",
    )
    ingest.add_argument(
        "--follow", action="store_true", help="keep ingesting new raw objects as they land"
    )
    ingest.add_argument(
        "--poll", type=float, default=5.0, help="seconds between passes with --follow"
    )
    _add_auth_option(ingest)
    ingest.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress on stderr (default: only when stderr is a terminal)",
    )
    ingest.add_argument("beam", nargs="*", help=argparse.SUPPRESS)
    ingest.set_defaults(handler=bind(cmd_ingest))

    redrive = sub.add_parser(
        "redrive",
        help="re-run quarantined input through the current parser",
        description="Re-ingest every raw object that has quarantined input. Events already sealed "
        "are recognised and skipped; those the parser now understands are sealed.",
    )
    add_archive_options(redrive)
    add_signing_key_option(redrive)
    _add_auth_option(redrive)
    redrive.set_defaults(handler=bind(cmd_redrive))

    from coexarchive.demo import register_demo

    register_demo(sub, bind)


def _add_auth_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="without COEXARCHIVE_APP_SECRETS, seal raw deliveries marked "
        '"delivery_auth": "unverified_no_secret" instead of refusing (the secrets, like the '
        "receiver's, come from COEXARCHIVE_APP_SECRETS and COEXARCHIVE_OUTBOUND_TOKEN)",
    )
