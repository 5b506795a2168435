"""Options shared by ``coexarchive simulate`` and ``python -m coexarchive.testing``.

``coexarchive simulate`` lands the objects in the archive's bucket (or ``--out``);
``python -m coexarchive.testing`` writes them to ``--out`` or only prints what it would make.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from coexarchive._internal.helpformat import Parser
from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.raw import decode_landing
from coexarchive.testing.bulk import bulk_objects
from coexarchive.testing.landing import simulate
from coexarchive.testing.model import DEMO_APP_SECRET, Simulation, SimulationConfig

DESCRIPTION = (
    "Generate realistic, deterministic WhatsApp Coexistence webhook traffic in the raw landing "
    "format (schemas/RAW_LANDING.md): one business number, its customers, the onboarding "
    "history import, template and account events, with Meta's duplicates, reordering, batching "
    "and malformed bodies. The same options always give the same bytes. Test and demo data only."
)
EPILOG = (
    "examples:\n"
    "  coexarchive simulate                              a week of traffic into the bucket's raw/\n"
    "  coexarchive simulate --seed 8                     more traffic beside it (receiver sim-8)\n"
    "  coexarchive simulate --customers 1000 --out var/raw   objects under var/raw/raw/date=...\n"
    "  coexarchive simulate --bulk 1000000 --out var/bench   benchmark input\n"
    "\n"
    "Deliveries are signed with a published, test-only demo app secret unless --app-secret-file\n"
    "is given (the secret is never printed). Each seed lands under its own receiver id, so\n"
    "traffic from several seeds sits side by side; the same seed again lands the same objects."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options (every one with its default in --help)."""
    defaults = SimulationConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--customers", type=int, default=defaults.customers, help="customers talking to the number"
    )
    parser.add_argument(
        "--days", type=int, default=defaults.days, help="days of live traffic after onboarding"
    )
    parser.add_argument(
        "--start",
        default=defaults.start.isoformat(),
        metavar="TIME",
        help="onboarding moment, ISO 8601 with offset",
    )
    parser.add_argument(
        "--receiver-id",
        default=None,
        metavar="ID",
        help="receiver id in raw keys and lines, [a-z0-9-] (default: sim-SEED)",
    )
    parser.add_argument(
        "--messages-per-day",
        type=float,
        default=defaults.messages_per_customer_per_day,
        metavar="N",
        help="mean inbound messages per customer per day",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=float,
        default=defaults.duplicate_rate,
        metavar="SHARE",
        help="share of deliveries Meta sends twice",
    )
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=defaults.malformed_rate,
        metavar="SHARE",
        help="share of deliveries made malformed (they must end in quarantine)",
    )
    parser.add_argument(
        "--deliveries-per-object",
        type=int,
        default=defaults.deliveries_per_object,
        metavar="N",
        help="deliveries per raw object",
    )
    parser.add_argument(
        "--no-history", action="store_true", help="skip the onboarding history import"
    )
    parser.add_argument(
        "--app-secret-file",
        type=Path,
        metavar="FILE",
        help="file holding the app secret to sign with (default: the test-only demo secret)",
    )
    parser.add_argument(
        "--bulk",
        type=int,
        metavar="EVENTS",
        help="fast bulk mode: this many text messages and statuses, no quirks",
    )
    parser.add_argument(
        "--events-per-object",
        type=int,
        default=20_000,
        metavar="N",
        help="bulk mode: events per raw object",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the objects under DIR at their raw keys (create-only) instead of to S3",
    )


def parser() -> argparse.ArgumentParser:
    """The parser of ``python -m coexarchive.testing``."""
    result = Parser(prog="python -m coexarchive.testing", description=DESCRIPTION, epilog=EPILOG)
    add_arguments(result)
    return result


def config_from(args: argparse.Namespace) -> SimulationConfig:
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError as error:
        raise ConfigError(f"--start {args.start!r} is not an ISO 8601 time: {error}") from None
    secret = DEMO_APP_SECRET
    if args.app_secret_file is not None:
        try:
            secret = args.app_secret_file.read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"cannot read the app secret file: {error.strerror}") from None
    return SimulationConfig(
        seed=args.seed,
        customers=args.customers,
        days=args.days,
        start=start,
        app_secret=secret,
        receiver_id=args.receiver_id or default_receiver_id(args.seed),
        messages_per_customer_per_day=args.messages_per_day,
        duplicate_rate=args.duplicate_rate,
        malformed_rate=args.malformed_rate,
        deliveries_per_object=args.deliveries_per_object,
        include_history=not args.no_history,
    )


def default_receiver_id(seed: int) -> str:
    """One receiver id per seed: the objects of different seeds never share a key."""
    return f"sim-{seed}" if seed >= 0 else f"sim-m{-seed}"


def generate(args: argparse.Namespace) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The raw objects the options ask for, and a summary of them, line by line."""
    config = config_from(args)
    if args.bulk is not None:
        objects = bulk_objects(args.bulk, args.seed, args.events_per_object, config=config)
        return objects, [f"objects      {len(objects)}", f"events       {args.bulk}"]
    sim = simulate(config)
    return sim.objects, list(summary(sim, config))


def write(out: Path, objects: Sequence[tuple[str, bytes]]) -> None:
    """Write create-only: an existing file with other bytes is an error, never overwritten."""
    for key, data in objects:
        path = out / key
        if path.exists():
            if path.read_bytes() != data:
                raise ConfigError(
                    f"{path} exists with different content: these options would replace "
                    "earlier traffic; use another --seed or --receiver-id, or an empty --out"
                )
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def summary(sim: Simulation, config: SimulationConfig) -> Iterator[str]:
    deliveries = sum(len(decode_landing(data, key=key)) for key, data in sim.objects)
    size = sum(len(data) for _, data in sim.objects)
    yield f"objects      {len(sim.objects)} ({size:,} bytes compressed)"
    yield f"receiver     {config.receiver_id}"
    yield f"deliveries   {deliveries}"
    yield f"duplicates   {sim.duplicates}"
    yield f"malformed    {sim.malformed}"
    yield f"expected     {len(sim.expected)} events"
    counts: dict[str, int] = {}
    for event in sim.expected:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    for kind in sorted(counts):
        yield f"  {kind:<16} {counts[kind]}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m coexarchive.testing``."""
    args = parser().parse_args(argv)
    try:
        objects, lines = generate(args)
        if args.out is not None:
            write(args.out, objects)
            lines.append(f"written to   {args.out}")
    except CoexArchiveError as error:
        print(f"coexarchive.testing: error: {error.diagnostics()}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
