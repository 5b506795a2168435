"""Verification as a Beam job beside the local verify, same archive, same run.

Run from the repository root::

    .venv/bin/python bench/verify_job.py                      # 1,000,000 records
    .venv/bin/python bench/verify_job.py --records 400000 --repeat 2

One chain of ``bench/_records.py`` records is sealed by ``ChainWriter`` into the embedded S3
(SeaweedFS on loopback) in segments of ``--segment-records``. Then, each in a fresh process, best
of ``--repeat`` with the two interleaved:

* local: ``verify_archive`` with two worker processes (what ``coexarchive verify --workers 2``
  does), store reads included;
* job: ``pipelines.verify`` (``coexarchive verify --runner FnApiRunner --workers 2``): the same
  steps, segments spread over two SDK worker processes and joined per chain.

Both must return the same report. The row also gives the peak RSS of the submitting process (its
own ``VmHWM``) and of the largest worker (``getrusage``), against the segment size: the job holds
one segment per element, so a worker's peak follows the segment size, not the archive's. A
worker's figure is an upper bound: Linux can count the memory of the process that started a
worker (by fork, or fork + exec) in the worker's high-water mark.

Target (issue): job ≥ 0.8× the local verify on 2 workers (the job adds only coordination).
Benchmarks report; the exit code is always 0.
"""

# Beam's annotations are partial, as for pipelines/ (pyproject's override for pipelines.*).
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peak import own_peak_kb
from _records import CHAIN_ID, iter_records

from coexarchive.archive_head import write_head_after
from coexarchive.errors import StorageError
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store.s3 import S3Store
from coexarchive.store.seaweed import EmbeddedS3

ARCHIVE = "bench.coexarchive"
TARGET = 0.8
STORE = "embedded S3 (SeaweedFS, loopback)"


def build(store: S3Store, records: int, per_segment: int, signer: Ed25519Signer) -> None:
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=5))  # from 2025 events
    writer = ChainWriter(
        store,
        CHAIN_ID,
        signer=signer,
        archive_name=ARCHIVE,
        policy=policy,
        max_segment_records=per_segment,
    )
    batch: list[Any] = []
    written = []
    for record in iter_records(records):
        batch.append(record)
        if len(batch) == per_segment:
            written += writer.append(batch)
            batch = []
    if batch:
        written += writer.append(batch)
    # One commit: the archive head stating the chain, as ingest writes it.
    write_head_after(store, [r.manifest for r in written], signer=signer, archive_name=ARCHIVE)


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """One verification in this fresh process; its time, report and peak memory."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from coexarchive.verify import verify_archive
    from pipelines.specs import StoreSpec
    from pipelines.verify import verify_with_beam

    spec = StoreSpec(request["bucket"], request["endpoint"], "us-east-1")
    trust = TrustStore.parse(request["trust"])
    started = time.perf_counter()
    if request["kind"] == "local":
        with ProcessPoolExecutor(2) as pool:
            report = verify_archive(spec.open(), trust, executor=pool)
    else:
        options = PipelineOptions(
            ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
        )
        report = verify_with_beam(spec, trust, options)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "report": report.to_json(),
        "self_kb": own_peak_kb(),
        "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def in_fresh_process(request: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--probe", json.dumps(request)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{request['kind']} probe failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--segment-records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    import logging

    logging.basicConfig(level=logging.ERROR)
    signer = Ed25519Signer.generate(ARCHIVE)
    trust_text = signer.verifier_key() + "\n"
    with (
        tempfile.TemporaryDirectory(prefix="bench-verify-job-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        os.environ.update(
            {k: v for k, v in server.environment().items() if k != "AWS_ENDPOINT_URL"}
        )
        store = server.store("bench-verify-job")
        for _ in range(50):  # a fresh server may not take writes at once
            try:
                store.put(f"bench/ready-{time.time_ns()}", b"")
                break
            except StorageError:
                time.sleep(0.2)
        started = time.perf_counter()
        build(store, args.records, args.segment_records, signer)
        segments = [k for k in store.list("archive/v1/") if k.endswith(".parquet")]
        size = sum(store.info(k).size for k in segments) / max(len(segments), 1)
        print(
            f"bench/verify_job.py: {args.records:,} records sealed in {len(segments)} segments "
            f"of ~{size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s; "
            f"{platform.python_version()}, {os.cpu_count()} CPUs, store: {STORE}",
            flush=True,
        )
        request = {"bucket": store.bucket, "endpoint": server.endpoint_url, "trust": trust_text}
        results: dict[str, list[dict[str, Any]]] = {"local": [], "job": []}
        for _ in range(args.repeat):
            for kind in results:
                results[kind].append(in_fresh_process(request | {"kind": kind}))
    reports = {json.dumps(r["report"], sort_keys=True) for rs in results.values() for r in rs}
    print(f"same report from every run: {'yes' if len(reports) == 1 else 'NO'}")
    best = {kind: min(rs, key=lambda r: r["seconds"]) for kind, rs in results.items()}
    labels = {
        "local": "local verify_archive, 2 worker processes",
        "job": "Beam job (FnApiRunner), 2 SDK workers",
    }
    print(
        f"{'verification':<44} {'seconds (range)':>16} {'records/s':>11} "
        f"{'peak RSS submitter / worker':>30}   store"
    )
    for kind, label in labels.items():
        times = [r["seconds"] for r in results[kind]]
        rss = f"{best[kind]['self_kb'] / 1024:,.0f} / {best[kind]['children_kb'] / 1024:,.0f} MiB"
        print(
            f"{label:<44} {min(times):>7.1f}–{max(times):<7.1f} "
            f"{args.records / min(times):>11,.0f} {rss:>30}   {STORE}"
        )
    ratio = best["local"]["seconds"] / best["job"]["seconds"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"job ÷ local (records/s, best of each) = {ratio:.2f}×; target ≥ {TARGET}×: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
