"""What a chain's past costs each new run: planning a fixed batch as the chain grows.

Run from the repository root::

    .venv/bin/python bench/history.py                     # 200 runs of 500 events, embedded S3
    .venv/bin/python bench/history.py --runs 400 --every 100
    .venv/bin/python bench/history.py --store memory       # no S3: the reads' own cost

One business number is ingested run after run (``coexarchive.testing.bulk_objects``, each run
six hours after the one before, ``--events`` per run, one segment per run), with the job's own
functions: ``normalize_object``, ``plan_chain``, ``encode_records`` + ``commit_chain``. Every
``--every`` runs, the next run's plan is timed on the same records reading the chain's past
``READERS`` at a time (``coexarchive._internal.fetch``: what the job does) and one read at a
time, best of two each, interleaved, with the GETs a plan made. The first row (an empty chain)
is the floor: what planning the same batch costs with no past at all.

Enrichment reads one manifest per segment of the chain and every segment holding consent or
template events, so the plan's time grows with the number of segments; the table shows how
fast. The exit code is always 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from coexarchive._internal import fetch as fetch_module
from coexarchive.raw import DeliveryAuth
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer
from coexarchive.segments import encode_records, list_manifests
from coexarchive.store.base import ObjectStore
from coexarchive.store.memory import MemoryStore
from coexarchive.store.seaweed import EmbeddedS3
from coexarchive.testing import DEMO_APP_SECRET, SimulationConfig, bulk_objects
from pipelines.normalize_step import normalize_object
from pipelines.seal_step import commit_chain, plan_chain
from pipelines.specs import SealSpec

AUTH = DeliveryAuth((DEMO_APP_SECRET,))
SPEC = SealSpec("unused", "bench.coexarchive", "GOVERNANCE:1")
POLICY = RetentionPolicy.parse(SPEC.retention)
SIGNER = Ed25519Signer.from_seed("bench.coexarchive", b"\x07" * 32)


class Counted:
    """A store that counts the GETs and LISTs made through it."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.gets = self.lists = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes:
        self.gets += 1
        return self.inner.get(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.lists += 1
        return self.inner.list(prefix)


def batch(run: int, events: int) -> list[Record]:
    base = SimulationConfig(seed=7, receiver_id="history")
    config = replace(base, start=base.start + timedelta(hours=6 * run))
    records: list[Record] = []
    for key, data in bulk_objects(events, run, events, config=config):
        by_chain, _ = normalize_object(f"raw/{run:06d}/{key}", data, auth=AUTH)
        for chain in by_chain.values():
            records += chain
    return records


def plan(store: Counted, records: list[Record], readers: int) -> tuple[float, int, Any]:
    """Seconds and GETs to plan ``records``, with ``readers`` reads of the past at a time."""
    saved = fetch_module.READERS
    setattr(fetch_module, "READERS", readers)  # noqa: B010 - a Final the bench varies
    try:
        gets = store.gets
        started = time.perf_counter()
        planned = plan_chain(
            store,
            records[0].chain_id,
            records,
            signer=SIGNER,
            spec=SPEC,
            policy=POLICY,
        )
        return time.perf_counter() - started, store.gets - gets, planned
    finally:
        setattr(fetch_module, "READERS", saved)  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="runs sealed before the last")
    parser.add_argument("--events", type=int, default=500, help="events per run")
    parser.add_argument("--every", type=int, default=50, help="time a plan every this many runs")
    parser.add_argument("--store", choices=("s3", "memory"), default="s3")
    args = parser.parse_args(argv)
    readers = fetch_module.READERS
    with ExitStack() as stack:
        if args.store == "s3":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="history-")))
            server = stack.enter_context(EmbeddedS3(tmp / "s3"))
            os.environ.update(
                {k: v for k, v in server.environment().items() if k != "AWS_ENDPOINT_URL"}
            )
            store = Counted(server.store("history"))
            where = "embedded S3"
        else:
            store = Counted(MemoryStore())
            where = "in-memory store"
        print(
            f"bench/history.py: {args.runs} runs of {args.events} events, one chain, {where}; "
            f"plan timed with {readers} reads at a time and with 1",
            flush=True,
        )
        print(
            f"{'segments before':>15} {'records before':>14} {'GETs':>6} "
            f"{f'plan, {readers} at a time':>20} {'plan, 1 at a time':>18} {'÷':>6}"
        )
        floor = None
        for run in range(args.runs + 1):
            records = batch(run, args.events)
            if run % args.every == 0 or run == args.runs:
                # Best of two each, interleaved: the second read of an object finds caches warm.
                one = seconds = float("inf")
                for _ in range(2):
                    one = min(one, plan(store, records, 1)[0])
                    took, gets, planned = plan(store, records, readers)
                    seconds = min(seconds, took)
                state = planned[0].state
                segments = len(list_manifests(store, records[0].chain_id))
                floor = floor if floor is not None else seconds
                print(
                    f"{segments:>15,} {state.size if state else 0:>14,} {gets:>6,} "
                    f"{seconds * 1000:>17,.0f} ms {one * 1000:>15,.0f} ms {one / seconds:>5.2f}×",
                    flush=True,
                )
            else:
                _, _, planned = plan(store, records, readers)
            commit_chain(
                store,
                planned[0],
                (
                    [encode_records(stored, segment.first_seq, segment.record_version)]
                    for segment, stored in zip(planned[0].segments, planned[1], strict=True)
                ),
                signer=SIGNER,
                spec=SPEC,
            )
        if floor is not None:
            print(
                f"floor: planning the first batch into an empty chain took {floor * 1000:,.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
