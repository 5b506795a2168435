"""CPU per event of the pure work of ingest: normalise, de-duplicate, enrich, seal.

Run from the repository root::

    .venv/bin/python bench/per_event.py                           # this tree only
    .venv/bin/python bench/per_event.py --baseline main           # this tree beside main's code
    .venv/bin/python bench/per_event.py --events 50000 --repeat 5 --rounds 3 --baseline HEAD~3

No Beam, no S3, no Parquet: the functions the pipeline's steps call, in one process, on
``coexarchive.testing.bulk_objects`` (70 % plain text messages, a fifth of them opt-out keywords,
30 % statuses, one chain), with the cyclic collector paused as the pipeline pauses it. Stages:

* normalise: every landing object → ``raw.decode_landing`` → ``DeliveryAuth.check`` (HMAC) →
  ``normalize.normalize_delivery``;
* dedup: ``DedupIndex.classify(ordered=False)`` on an empty in-memory archive;
* enrich: ``enrich.enrich_chain`` (keyword consent events, window, flags) with an empty past, then
  ``supervision.at_ingest.scan_batch`` with no policies;
* seal: ``seal.chain.seal_records`` (canonical bytes, leaf and chain hashes).

Each stage's time is the best of ``--repeat`` passes in one process. With ``--baseline REF`` the
``src/`` tree of git revision REF is extracted to a temporary directory and the same measurement
runs on it in a child process, alternating with a child on this tree for ``--rounds`` rounds;
the table shows each side's best and the ratio. Both sides must produce the same records and the
same chain head hash on the same data, or the run says so (and the figures mean nothing). The
exit code is 0 unless the two sides disagree.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("normalise", "dedup", "enrich", "seal")
SEED = 7


def _measure(events: int, repeat: int, per_object: int) -> dict[str, Any]:
    """Best-of-``repeat`` seconds per stage, with a digest of every stage's output."""
    from coexarchive.dedup import DedupIndex
    from coexarchive.enrich import EnrichConfig
    from coexarchive.enrich.chain import enrich_chain
    from coexarchive.enrich.context import ChainContext
    from coexarchive.normalize import normalize_delivery
    from coexarchive.raw import DeliveryAuth, decode_landing
    from coexarchive.records import RECORD_FIELDS
    from coexarchive.seal.chain import genesis, seal_records
    from coexarchive.store.memory import MemoryStore
    from coexarchive.supervision.at_ingest import ActivePolicies, scan_batch
    from coexarchive.testing import DEMO_APP_SECRET, SimulationConfig, bulk_objects

    config = SimulationConfig(seed=SEED, receiver_id="bulk")
    objects = bulk_objects(events, SEED, per_object, config=config)
    auth = DeliveryAuth((DEMO_APP_SECRET,))
    chain_id, waba_id = config.phone_number_id, config.waba_id
    enrich_config = EnrichConfig()

    def normalise() -> tuple[list[Any], int]:
        records: list[Any] = []
        quarantined = 0
        for key, data in objects:
            for line in decode_landing(data, key=key):
                assert line.delivery is not None
                verdict = auth.check(line.delivery)
                assert not isinstance(verdict, str), verdict
                result = normalize_delivery(
                    line.delivery.body,
                    raw_key=key,
                    raw_line=line.line,
                    received_time=line.delivery.received_at,
                    source=line.delivery.source,
                    auth=verdict,
                )
                records += result.records
                quarantined += len(result.quarantined)
        return records, quarantined

    def dedup(records: list[Any]) -> list[Any]:
        index = DedupIndex(MemoryStore(), chain_id, committed_size=0)
        return index.classify(records, ordered=False).to_seal

    def enrich(records: list[Any]) -> list[Any]:
        enriched = enrich_chain(records, ChainContext(chain_id, waba_id), config=enrich_config)
        return enriched + scan_batch(chain_id, enriched, ActivePolicies()).records

    def seal(records: list[Any]) -> list[Any]:
        return seal_records(records, first_seq=0, prev_chain_hash=genesis(chain_id))

    best = dict.fromkeys(STAGES, float("inf"))
    outputs: dict[str, Any] = {}

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        gc.collect()
        gc.disable()  # as the pipeline's steps run (cyclic_gc_paused)
        try:
            start = time.process_time()
            out = fn(*args)
            best[stage] = min(best[stage], time.process_time() - start)
        finally:
            gc.enable()
        return out

    for _ in range(repeat):
        outputs.clear()
        records, quarantined = timed("normalise", normalise)
        new = timed("dedup", dedup, records)
        enriched = timed("enrich", enrich, new)
        sealed = timed("seal", seal, enriched)
        outputs = {"records": records, "enriched": enriched, "sealed": sealed}
    values = [tuple(getattr(r, name) for name in RECORD_FIELDS) for r in outputs["enriched"]]
    digest = hashlib.sha256(json.dumps(values, ensure_ascii=False).encode()).hexdigest()
    return {
        "events": events,
        "records": len(outputs["records"]),
        "quarantined": quarantined,
        "sealed": len(outputs["sealed"]),
        "records_sha256": digest,
        "chain_head": outputs["sealed"][-1].chain_hash.hex() if outputs["sealed"] else "",
        "seconds": best,
    }


def _worker(args: argparse.Namespace) -> int:
    src = Path(args.src).resolve()
    sys.path.insert(0, str(src))
    import coexarchive

    where = Path(coexarchive.__file__).resolve()
    if src not in where.parents:
        raise SystemExit(f"coexarchive came from {where}, not from {src}")
    print(json.dumps(_measure(args.events, args.repeat, args.per_object)))
    return 0


def _extract(ref: str, into: Path) -> Path:
    """``src/`` of git revision ``ref``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _child(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", "--src", str(src), "--events", str(args.events),
        "--repeat", str(args.repeat), "--per-object", str(args.per_object),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _table(sides: dict[str, dict[str, Any]], events: int) -> list[str]:
    names = list(sides)
    lines = [
        "| stage | "
        + " | ".join(f"{n}: µs/event | {n}: events/s" for n in names)
        + (" | after ÷ before (CPU) |" if len(names) == 2 else " |"),
        "| --- " * (1 + 2 * len(names) + (len(names) == 2)) + "|",
    ]
    for stage in (*STAGES, "total"):
        cells = []
        seconds = []
        for name in names:
            found = sides[name]["seconds"]
            value = sum(found.values()) if stage == "total" else found[stage]
            seconds.append(value)
            cells += [f"{value / events * 1e6:.2f}", f"{events / value:,.0f}"]
        ratio = [f"{seconds[1] / seconds[0]:.2f}"] if len(names) == 2 else []
        lines.append("| " + " | ".join([stage, *cells, *ratio]) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="passes per process (best kept)")
    parser.add_argument("--rounds", type=int, default=2, help="child processes per side")
    parser.add_argument("--per-object", type=int, default=5_000, help="events per landing object")
    parser.add_argument("--baseline", metavar="REF", help="git revision to compare with")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", default=str(ROOT / "src"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    with tempfile.TemporaryDirectory(prefix="per-event-") as tmp:
        trees = {"after": ROOT / "src"}
        if args.baseline:
            trees = {"before": _extract(args.baseline, Path(tmp)), **trees}
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                results[name].append(_child(src, args))
    sides = {}
    for name, runs in results.items():
        best = {stage: min(run["seconds"][stage] for run in runs) for stage in STAGES}
        sides[name] = {**runs[0], "seconds": best}
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{args.events:,} events ({next(iter(sides.values()))['records']:,} records), "
        f"CPU time best of {args.repeat} passes × {args.rounds} processes per side; "
        f"load average {load}"
        + (f"; before = {args.baseline}, after = this tree" if args.baseline else "")
    )
    print()
    print("\n".join(_table(sides, args.events)))
    identity = {
        name: (s["records"], s["quarantined"], s["sealed"], s["records_sha256"], s["chain_head"])
        for name, s in sides.items()
    }
    print()
    if len(set(identity.values())) > 1:
        for name, found in identity.items():
            print(f"{name}: records, quarantined, sealed, records sha256, chain head = {found}")
        print("THE SIDES DISAGREE: the figures compare different work")
        return 1
    only = next(iter(identity.values()))
    print(f"same output on every side: {only[2]:,} sealed records, chain head {only[4][:16]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
