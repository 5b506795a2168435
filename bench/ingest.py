"""Ingest throughput end to end (raw objects on the embedded S3 → sealed Parquet on it), beside
the floor and a naive Beam pipeline, all measured in one run.

Run from the repository root::

    .venv/bin/python bench/ingest.py                 # 1,000,000 events
    .venv/bin/python bench/ingest.py --quick         # 200,000 events
    .venv/bin/python bench/ingest.py --events 500000 --repeat 3 --skip-naive
    .venv/bin/python bench/ingest.py --quick --only one --skip-naive --skip-memory --spread-above 0

What is measured, on the same raw objects (``coexarchive.testing.bulk_objects``: 70% text
messages, 30% statuses, ``--per-object`` events per landing object) uploaded to ``raw/`` of an
embedded SeaweedFS, for two workloads: one business number (one chain: sealing is serial by
design) and ``--chains`` numbers (sealing spreads over the workers):

* floor: get each object from S3, zstd + landing lines + orjson bodies, pick the typed columns of
  every event, build a pyarrow table and put it back as Parquet; no Beam, no pydantic, no sealing,
  no de-duplication. In this process (one core), and over two processes;
* ours: ``pipelines.ingest.run_pipeline`` into a fresh archive bucket, with one worker in this
  process (FnApiRunner's default, the target's baseline), with one SDK worker process, and with
  two (``--direct_num_workers=2 --direct_running_mode=multi_processing``), timed from submission
  to the last checkpoint. A worker process starts Beam and the job's steps itself and exchanges
  every element with the runner over gRPC, so "1 worker process" shows what the second worker
  adds apart from that; ``verify_archive`` then proves the archive (every event sealed exactly
  once, chains, roots and signatures) and its time is reported separately;
* naive: a Beam pipeline with one element per landing line and then per event (per-line
  expansion → per-event parse → ``WriteToParquet`` to a local directory), two workers;
* empty: two elements through one step on two workers: what starting the workers costs alone;
* ours, no Beam: the job's own step functions called in turn in this process (get and normalise
  every object, then per chain plan, encode and commit to a fresh bucket, then the archive head),
  each stage timed: the work the job does without any runner, which every Beam run of it
  includes. Its CPU is a lower bound for any runner and its stage times bound what a second
  worker can gain on one chain (printed under the CPU budget);
* CPU: the CPU seconds each timed run used, in this process and in every process it started and
  waited for (SDK workers, pool processes), and separately the S3 server's (from ``/proc``): what
  a run costs, apart from how well its processes overlapped on this machine's cores;
* CPU budget: a run that must end within a target's time on this machine's cores can use at most
  cores × that time of CPU, the S3 server's included, and only with every core busy throughout.
  Each target's allowance is printed beside what the 2-worker run used, so a target that no
  overlap or scheduling could meet shows as such (only less CPU can meet it), with the per-event
  CPU it leaves beyond the idle workers' start;
* memory: peak RSS of the runner process and of its SDK workers (``getrusage``) when a fixed batch
  is ingested into an empty archive and into one already holding the ``--events`` archive, each in
  a fresh process, to show the peak does not follow the archive's size.

Each timed pipeline runs ``--repeat`` times, interleaved; the table shows best and worst. Other
jobs on the machine move the figures: compare within one run. The exit code is always 0.
"""

# Beam's annotations are partial, as for pipelines/ (pyproject's override for pipelines.*).
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from apache_beam.options.pipeline_options import PipelineOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peak import own_peak_kb

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.archive_head import write_head_after
from coexarchive.commands import upload_raw
from coexarchive.enrich import collect_side_events
from coexarchive.errors import StorageError
from coexarchive.export.holds import NewDataHolds
from coexarchive.raw import DeliveryAuth
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import encode_records
from coexarchive.store.seaweed import EmbeddedS3
from coexarchive.supervision.at_ingest import load_active_policies
from coexarchive.testing import DEMO_APP_SECRET, SimulationConfig, bulk_objects
from coexarchive.verify import verify_archive
from pipelines.ingest import IngestSummary, SealSpec, StoreSpec, run_pipeline
from pipelines.normalize_step import normalize_object
from pipelines.seal_step import commit_chain, plan_chain

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
ARCHIVE_NAME = "bench.coexarchive"
# The bulk objects are signed with the demo app secret; ingest checks every signature.
AUTH = DeliveryAuth((DEMO_APP_SECRET,))
# The targets, per workload, all against figures of the same run.
TARGET_FLOOR_RATIO = 0.3  # many chains, 2 workers: ≥ 0.3× the floor (2 processes)
TARGET_NAIVE_RATIO = 1.0  # many chains, 2 workers: ≥ the naive Beam pipeline
TARGET_SPREAD = 1.6  # one chain: 2 workers ≥ 1.6× one worker
SEED = 17
EMPTY = "empty Beam (2 workers)"  # no events: what starting two workers costs
NO_BEAM = "ours, no Beam (1 process)"  # the job's steps called in turn: its work, no runner
STAGES = ("normalise", "plan", "encode", "commit")
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
ONE_WORKER_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=multi_processing"]

FLOOR_SCHEMA = pa.schema(
    [
        ("chain_id", pa.string()),
        ("kind", pa.string()),
        ("wamid", pa.string()),
        ("customer_id", pa.string()),
        ("event_time", pa.int64()),
        ("msg_type", pa.string()),
        ("text", pa.string()),
        ("status", pa.string()),
        ("detail", pa.string()),
        ("raw_key", pa.string()),
        ("raw_line", pa.int64()),
    ]
)


# --- results ---


@dataclass
class Row:
    workload: str
    name: str
    events: int
    seconds: list[float] = field(default_factory=list)
    # CPU seconds of each run, this process and every process it started and reaped (SDK
    # workers, pool processes), in the order of ``seconds``; the S3 server is not counted.
    cpu: list[float] = field(default_factory=list)
    # CPU seconds the S3 server spent during each run, in the same order.
    server_cpu: list[float] = field(default_factory=list)
    note: str = ""
    # Wall seconds per stage of each run (only the run without Beam has stages).
    stages: list[dict[str, float]] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def best_cpu(self) -> float:
        return self.cpu[self.seconds.index(self.best)]

    @property
    def best_server_cpu(self) -> float:
        return self.server_cpu[self.seconds.index(self.best)]

    @property
    def best_total_cpu(self) -> float:
        """CPU seconds of the best run on the machine: ours and the S3 server's."""
        return self.best_cpu + self.best_server_cpu

    def add(self, seconds: float, cpu: float, server_cpu: float) -> None:
        self.seconds.append(seconds)
        self.cpu.append(cpu)
        self.server_cpu.append(server_cpu)

    def rate(self, seconds: float | None = None) -> float:
        return self.events / (seconds if seconds is not None else self.best)


def rates(row: Row) -> str:
    if not row.seconds:
        return "—"
    best, worst = row.rate(), row.rate(max(row.seconds))
    if len(row.seconds) == 1:
        return f"{best:>10,.0f}"
    return f"{worst:>9,.0f}–{best:,.0f}"


# --- workloads ---


def workload_objects(events: int, chains: int, per_object: int, days_later: int = 0) -> Any:
    """Raw objects for ``chains`` business numbers sharing ``events`` events."""
    base = SimulationConfig(seed=SEED, receiver_id="bulk")
    start = base.start + timedelta(days=days_later)
    objects: list[tuple[str, bytes]] = []
    for index in range(chains):
        config = dataclasses.replace(
            base,
            start=start,
            receiver_id=f"bulk{index:02d}-d{days_later}",
            phone_number_id=f"9000000000{index:05d}",
            display_phone_number=f"1555000{index:04d}",
        )
        share = events // chains + (1 if index < events % chains else 0)
        objects += bulk_objects(share, SEED + index, per_object, config=config)
    return objects


# --- floor: no Beam, no pydantic, no sealing ---


def floor_columns(key: str, data: bytes) -> dict[str, list[Any]]:
    """Columns of every event in one landing object, in the tightest plain loop."""
    columns: dict[str, list[Any]] = {name: [] for name in FLOOR_SCHEMA.names}
    text = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
    for number, line in enumerate(text.splitlines()):
        delivery = orjson.loads(line)
        body = orjson.loads(delivery["body"])
        for entry in body["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                chain_id = value["metadata"]["phone_number_id"]
                for kind, items in (
                    ("message", value.get("messages")),
                    ("status", value.get("statuses")),
                ):
                    for item in items or ():
                        message = kind == "message"
                        columns["chain_id"].append(chain_id)
                        columns["kind"].append(kind)
                        columns["wamid"].append(item["id"])
                        columns["customer_id"].append(
                            item["from"] if message else item["recipient_id"]
                        )
                        columns["event_time"].append(int(item["timestamp"]) * 1000)
                        columns["msg_type"].append(item["type"] if message else None)
                        columns["text"].append(item["text"]["body"] if message else None)
                        columns["status"].append(None if message else item["status"])
                        columns["detail"].append(
                            orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()
                        )
                        columns["raw_key"].append(key)
                        columns["raw_line"].append(number)
    return columns


def floor_object(spec: StoreSpec, out_bucket: str, keys: Sequence[str]) -> int:
    """Floor work on ``keys``: S3 get → columns → Parquet → S3 put. Returns the event count."""
    source = spec.open()
    sink = dataclasses.replace(spec, bucket=out_bucket).open()
    events = 0
    for key in keys:
        columns = floor_columns(key, source.get(key))
        table = pa.Table.from_pydict(columns, schema=FLOOR_SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        sink.put(f"floor/{key}.parquet", buffer.getvalue())
        events += table.num_rows
    return events


def run_floor(spec: StoreSpec, server: EmbeddedS3, keys: Sequence[str], workers: int) -> int:
    bucket = fresh_bucket(server, "floor")
    if workers == 1:
        return floor_object(spec, bucket, keys)
    shares = [keys[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(floor_object, [spec] * workers, [bucket] * workers, shares))


# --- naive: one Beam element per event ---


class ReadLines(beam.DoFn):
    """A raw object → one element per landing line (what ReadFromText does for a file)."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec

    def setup(self) -> None:
        self.store = self.spec.open()

    def process(self, key: str) -> Iterator[tuple[str, int, bytes]]:
        text = zstandard.ZstdDecompressor().decompress(self.store.get(key), max_output_size=1 << 30)
        for number, line in enumerate(text.splitlines()):
            yield key, number, line


def naive_events(element: tuple[str, int, bytes]) -> Iterator[dict[str, Any]]:
    """One landing line → one element per event."""
    key, number, line = element
    body = orjson.loads(orjson.loads(line)["body"])
    for entry in body["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            chain_id = value["metadata"]["phone_number_id"]
            for kind in ("messages", "statuses"):
                for item in value.get(kind) or ():
                    yield {
                        "chain_id": chain_id,
                        "kind": kind,
                        "item": item,
                        "key": key,
                        "line": number,
                    }


def naive_row(event: dict[str, Any]) -> dict[str, Any]:
    """One event → one row (per-event parse of the item)."""
    item, message = event["item"], event["kind"] == "messages"
    return {
        "chain_id": event["chain_id"],
        "kind": "message" if message else "status",
        "wamid": item["id"],
        "customer_id": item["from"] if message else item["recipient_id"],
        "event_time": int(item["timestamp"]) * 1000,
        "msg_type": item["type"] if message else None,
        "text": item["text"]["body"] if message else None,
        "status": None if message else item["status"],
        "detail": orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode(),
        "raw_key": event["key"],
        "raw_line": event["line"],
    }


def run_naive(spec: StoreSpec, keys: Sequence[str], out_dir: Path) -> int:
    """The naive pipeline; the rows it wrote."""
    pipeline = beam.Pipeline(options=PipelineOptions(TWO_WORKERS))
    _ = (
        pipeline
        | "RawObjects" >> beam.Create(list(keys))
        | "ReadLines" >> beam.ParDo(ReadLines(spec))
        | "ParseEvents" >> beam.FlatMap(naive_events)
        | "ToRow" >> beam.Map(naive_row)
        | "WriteToParquet"
        >> beam.io.WriteToParquet(
            str(out_dir / "events"), FLOOR_SCHEMA, file_name_suffix=".parquet"
        )
    )
    pipeline.run().wait_until_finish()
    return parquet_rows(out_dir)


def run_empty() -> None:
    """Two elements through one step on two workers: what starting the workers costs alone."""
    pipeline = beam.Pipeline(options=PipelineOptions(TWO_WORKERS))
    _ = pipeline | "Two" >> beam.Create(["a", "b"]) | "Upper" >> beam.Map(str.upper)
    pipeline.run().wait_until_finish()


@dataclass
class Direct:
    """What a run of the job's steps without Beam sealed, and each stage's wall seconds."""

    events: int = 0
    quarantined: int = 0
    duplicates: int = 0
    sealed: int = 0
    derived: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def run_direct(raw: StoreSpec, bucket: str, keys: Sequence[str], key_file: Path) -> Direct:
    """The job's steps, called in turn in this process on the same objects (no runner), with
    the cyclic collector paused throughout (the steps pause it over their records)."""
    with cyclic_gc_paused():
        return _direct(raw, bucket, keys, key_file)


def _direct(raw: StoreSpec, bucket: str, keys: Sequence[str], key_file: Path) -> Direct:
    raw_store = raw.open()
    store = dataclasses.replace(raw, bucket=bucket).open()
    signer = Ed25519Signer.from_file(key_file)
    spec = SealSpec(str(key_file), ARCHIVE_NAME, "GOVERNANCE:1")
    policy = RetentionPolicy.parse(spec.retention)
    done = Direct()
    clock = time.perf_counter
    started = clock()
    by_chain: dict[str, list[Any]] = {}
    side: list[Any] = []
    for key in keys:
        chains, bad = normalize_object(key, raw_store.get(key), auth=AUTH)
        done.quarantined += len(bad)
        for chain_id, records in chains.items():
            done.events += len(records)
            by_chain.setdefault(chain_id, []).extend(records)
            side += collect_side_events(records)
    done.stages["normalise"] = clock() - started
    holds = NewDataHolds.load(store, TrustStore([signer.verifier()]))
    supervision = load_active_policies(
        store, TrustStore([signer.verifier()]), archive_name=ARCHIVE_NAME
    )
    manifests = []
    for chain_id in sorted(by_chain):
        started = clock()
        plan, stored = plan_chain(
            store,
            chain_id,
            by_chain.pop(chain_id),
            signer=signer,
            spec=spec,
            policy=policy,
            side_events=side,
            supervision=supervision,
            holds=holds,
        )
        planned = clock()
        parts = [
            [encode_records(records, segment.first_seq, segment.record_version)]
            for segment, records in zip(plan.segments, stored, strict=True)
        ]
        encoded = clock()
        summary = commit_chain(store, plan, parts, signer=signer, spec=spec)
        done.stages["plan"] += planned - started
        done.stages["encode"] += encoded - planned
        done.stages["commit"] += clock() - encoded
        done.sealed += summary["sealed"]
        done.duplicates += summary["duplicates"]
        for kind, count in summary["derived"].items():
            done.derived[kind] = done.derived.get(kind, 0) + count
        if summary.get("manifest") is not None:
            manifests.append(summary["manifest"])
    started = clock()
    write_head_after(store, manifests, signer=signer, archive_name=ARCHIVE_NAME)
    done.stages["commit"] += clock() - started
    return done


def parquet_rows(directory: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in directory.glob("*.parquet"))


# --- ours ---


def fresh_bucket(server: EmbeddedS3, prefix: str) -> str:
    """A new Object Lock bucket; waits until it takes writes (a fresh server may not yet)."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
    store = server.store(bucket)
    for _ in range(50):
        try:
            store.put(f"bench/ready-{uuid.uuid4().hex}", b"")
            break
        except StorageError:
            time.sleep(0.2)
    return bucket


def ingest(
    server: EmbeddedS3,
    raw: StoreSpec,
    bucket: str,
    keys: Sequence[str],
    key_file: Path,
    workers: int,
    *,
    worker_process: bool = False,
    spread_above: int = SealSpec.spread_above,
) -> IngestSummary:
    """One run; one worker runs in this process unless ``worker_process`` (an SDK worker process
    as each of the two workers is, with the same data plane between it and the runner)."""
    if workers == 2:
        options = PipelineOptions(TWO_WORKERS)
    elif worker_process:
        options = PipelineOptions(ONE_WORKER_PROCESS)
    else:
        options = PipelineOptions(["--runner=FnApiRunner"])
    spec = dataclasses.replace(raw, bucket=bucket)
    seal = SealSpec(str(key_file), ARCHIVE_NAME, "GOVERNANCE:1", spread_above=spread_above)
    return run_pipeline(keys, spec, seal, options, auth=AUTH, raw_spec=raw)


def verify(
    server: EmbeddedS3,
    bucket: str,
    trust: TrustStore,
    events: int,
    summary: IngestSummary | Direct,
) -> tuple[float, str]:
    """Verify the archive; every event normalised once, nothing quarantined or dropped."""
    store = server.store(bucket)
    started = time.perf_counter()
    report = verify_archive(store, trust)
    seconds = time.perf_counter() - started
    sealed = sum(chain.records for chain in report.chains)
    problems = []
    if summary.events != events or summary.quarantined or summary.duplicates:
        problems.append(
            f"{summary.events:,} events normalised of {events:,}, "
            f"{summary.quarantined:,} quarantined, {summary.duplicates:,} duplicates"
        )
    written = summary.sealed + sum(summary.derived.values())
    if sealed != written:
        problems.append(f"archive holds {sealed:,} records, the run sealed {written:,}")
    if problems:
        return seconds, "VERIFY: " + "; ".join(problems)
    derived = sealed - events
    return seconds, (
        f"verified {sealed:,} records in {len(report.chains)} chain(s) "
        f"({events:,} events + {derived:,} consent events derived from keywords)"
    )


# --- memory probe (runs in a fresh process) ---


def probe(argv: Sequence[str]) -> None:
    """Ingest one batch with two workers; print peak RSS of this process and its children."""
    request = json.loads(argv[0])
    raw = StoreSpec(**request["raw"])
    started = time.perf_counter()
    summary = run_pipeline(
        request["keys"],
        dataclasses.replace(raw, bucket=request["bucket"]),
        SealSpec(request["key_file"], ARCHIVE_NAME, "GOVERNANCE:1"),
        PipelineOptions(TWO_WORKERS),
        auth=AUTH,
        raw_spec=raw,
    )
    seconds = time.perf_counter() - started
    own = own_peak_kb()
    # An upper bound: a worker's ru_maxrss starts at this process's peak (see own_peak_kb).
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {"self_kb": own, "children_kb": children, "sealed": summary.sealed, "s": seconds}
        )
    )


def run_probe(raw: StoreSpec, bucket: str, keys: Sequence[str], key_file: Path) -> dict[str, Any]:
    request = {"raw": dataclasses.asdict(raw), "bucket": bucket, "keys": list(keys)}
    request["key_file"] = str(key_file)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(request, handle)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--probe", handle.name],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"memory probe printed nothing; its stderr ends:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- profile ---


def profile(args: argparse.Namespace) -> None:
    """One workload (one chain, or ``--chains`` with ``--only many``), one worker, under
    cProfile: where an event's time goes."""
    import cProfile
    import pstats

    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-profile-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        os.environ.update(
            {k: v for k, v in server.environment().items() if k != "AWS_ENDPOINT_URL"}
        )
        key_file = Path(tmp) / "signing.key"
        Ed25519Signer.generate(ARCHIVE_NAME).to_file(key_file)
        raw = StoreSpec("unset", endpoint_url=server.endpoint_url, region_name="us-east-1")
        chains = args.chains if args.only == "many" else 1
        objects = workload_objects(args.events, chains, args.per_object)
        raw = dataclasses.replace(raw, bucket=fresh_bucket(server, "raw"))
        upload_raw(server.store(raw.bucket), objects, policy=POLICY)
        keys = sorted(key for key, _ in objects)
        bucket = fresh_bucket(server, "archive")
        profiler = cProfile.Profile()
        profiler.enable()
        seconds, summary = timed(
            partial(ingest, server, raw, bucket, keys, key_file, 1, spread_above=args.spread_above)
        )
        profiler.disable()
    out = io.StringIO()
    out.write(
        f"bench/ingest.py --profile: {args.events:,} events, "
        f"{'one chain' if chains == 1 else f'{chains} chains'}, one worker "
        f"(FnApiRunner in process), sealed {summary.sealed:,} in {seconds:.1f} s under cProfile "
        f"({args.events / seconds:,.0f} events/s; cProfile slows Python code ~1.5-2x)\n\n"
    )
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(90)
    args.profile.write_text(out.getvalue())
    print(f"profile written to {args.profile}")


# --- driver ---


def cpu_now() -> float:
    """CPU seconds used so far by this process and by its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_now(server: EmbeddedS3) -> float:
    """CPU seconds the S3 server process (and children it reaped) has used so far."""
    try:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3, so utime..cstime (14-17) sit at 11..14.
    return sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def attempt(label: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a benchmark reports; one failing leg must not hide the others
        print(f"  {label} FAILED:\n{traceback.format_exc()}", flush=True)
        return None


def measure_workload(
    args: argparse.Namespace,
    server: EmbeddedS3,
    raw: StoreSpec,
    key_file: Path,
    trust: TrustStore,
    workload: str,
    chains: int,
) -> tuple[list[Row], list[str]]:
    objects = workload_objects(args.events, chains, args.per_object)
    raw_bucket = fresh_bucket(server, "raw")
    raw = dataclasses.replace(raw, bucket=raw_bucket)
    upload_raw(server.store(raw_bucket), objects, policy=POLICY)
    keys = sorted(key for key, _ in objects)
    del objects
    rows = {
        "floor1": Row(workload, "floor (1 process)", args.events),
        "floor2": Row(workload, "floor (2 processes)", args.events),
        "ours1": Row(workload, "ours (1 worker)", args.events),
        "ours1p": Row(workload, "ours (1 worker process)", args.events),
        "ours2": Row(workload, "ours (2 workers)", args.events),
        "naive": Row(workload, "naive Beam (2 workers)", args.events),
        "empty": Row(workload, EMPTY, args.events),
        "direct": Row(workload, NO_BEAM, args.events),
    }
    notes: list[str] = []

    def run(row: Row, label: str, fn: Callable[[], Any]) -> Any:
        """Time ``fn`` into ``row`` with the CPU it and the S3 server used; its value or None."""
        cpu, server_cpu = cpu_now(), server_cpu_now(server)
        result = attempt(label, partial(timed, fn))
        if result is None:
            return None
        row.add(result[0], cpu_now() - cpu, server_cpu_now(server) - server_cpu)
        return result[1]

    for attempt_no in range(args.repeat):
        for floor_workers in (1, 2):
            written = run(
                rows[f"floor{floor_workers}"],
                "floor",
                partial(run_floor, raw, server, keys, floor_workers),
            )
            if written is not None and written != args.events:
                notes.append(f"floor wrote {written:,} rows, expected {args.events:,}")
        bucket = fresh_bucket(server, "direct")
        direct = run(
            rows["direct"], "ours, no Beam", partial(run_direct, raw, bucket, keys, key_file)
        )
        if direct is not None:
            rows["direct"].stages.append(direct.stages)
            verified = attempt(
                "verify", partial(verify, server, bucket, trust, args.events, direct)
            )
            if verified is not None:
                notes.append(
                    f"{workload}, no Beam, pass {attempt_no + 1}: sealed {direct.sealed:,}; "
                    f"{verified[1]}"
                )
        for workers, row_key in ((1, "ours1"), (1, "ours1p"), (2, "ours2")):
            bucket = fresh_bucket(server, "archive")
            summary = run(
                rows[row_key],
                f"ours {workers}",
                partial(
                    ingest,
                    server,
                    raw,
                    bucket,
                    keys,
                    key_file,
                    workers,
                    worker_process=row_key == "ours1p",
                    spread_above=args.spread_above,
                ),
            )
            if summary is None:
                continue
            verified = attempt(
                "verify", partial(verify, server, bucket, trust, args.events, summary)
            )
            if verified is not None:
                notes.append(
                    f"{workload}, {rows[row_key].name[6:-1]}, pass {attempt_no + 1}: sealed "
                    f"{summary.sealed:,}, {summary.segments} segments; {verified[1]}; "
                    f"verify {verified[0]:.1f} s ({args.events / verified[0]:,.0f}/s, 1 process)"
                )
            if workers == 2:
                rows["ours2"].note = bucket
        if not args.skip_naive:
            with tempfile.TemporaryDirectory(prefix="naive-") as out:
                written = run(rows["naive"], "naive", partial(run_naive, raw, keys, Path(out)))
                if written is not None and written != args.events:
                    notes.append(f"naive wrote {written:,} rows, expected {args.events:,}")
        run(rows["empty"], "empty", run_empty)
    return list(rows.values()), notes


def measure_memory(
    args: argparse.Namespace, server: EmbeddedS3, raw: StoreSpec, key_file: Path, full_bucket: str
) -> list[str]:
    """A fixed batch (later dates) into an empty archive and into the full one, fresh processes."""
    batch = max(args.events // 5, 1)
    objects = workload_objects(batch, 1, args.per_object, days_later=10)
    raw_bucket = fresh_bucket(server, "raw-later")
    upload_raw(server.store(raw_bucket), objects, policy=POLICY)
    keys = sorted(key for key, _ in objects)
    raw = dataclasses.replace(raw, bucket=raw_bucket)
    lines = []
    for label, bucket in (
        ("empty archive", fresh_bucket(server, "archive-empty")),
        (f"archive holding {args.events:,}", full_bucket),
    ):
        found = attempt("memory probe", partial(run_probe, raw, bucket, keys, key_file))
        if found is None:
            continue
        lines.append(
            f"  {batch:,} new events into {label:<26} runner peak RSS "
            f"{found['self_kb'] / 1024:>6,.0f} MiB, worker peak RSS "
            f"{found['children_kb'] / 1024:>6,.0f} MiB  (sealed {found['sealed']:,}, "
            f"{batch / found['s']:,.0f} events/s)"
        )
    return lines


def report(rows: Sequence[Row]) -> list[str]:
    lines = [
        f"{'workload':<12} {'pipeline':<24} {'events/s (range)':>22} {'best s':>8} "
        f"{'÷ floor(2p)':>11} {'ours(2w) ÷':>10} {'CPU s':>7} {'CPU µs/event':>12} {'S3 CPU s':>8}"
    ]
    by = {(row.workload, row.name): row for row in rows}
    for row in rows:
        if not row.seconds:
            lines.append(f"{row.workload:<12} {row.name:<24} {'—':>22}")
            continue
        if row.name == EMPTY:  # no events: only its time and CPU mean anything
            lines.append(
                f"{row.workload:<12} {row.name:<24} {'(no events)':>22} {row.best:>8.2f} "
                f"{'':>11} {'':>10} {row.best_cpu:>7.1f} {'':>12} {row.best_server_cpu:>8.1f}"
            )
            continue
        floor = by.get((row.workload, "floor (2 processes)"))
        ours = by.get((row.workload, "ours (2 workers)"))
        vs_floor = f"{row.rate() / floor.rate():.2f}×" if floor and floor.seconds else "—"
        vs_ours = f"{ours.rate() / row.rate():.2f}×" if ours and ours.seconds else "—"
        lines.append(
            f"{row.workload:<12} {row.name:<24} {rates(row):>22} {row.best:>8.2f} "
            f"{vs_floor:>11} {vs_ours:>10} {row.best_cpu:>7.1f} "
            f"{row.best_cpu / row.events * 1e6:>12.1f} {row.best_server_cpu:>8.1f}"
        )
    return lines


def budget(rows: Sequence[Row], cores: int) -> list[str]:
    """What each target leaves the 2-worker run in CPU, against what it used (same run).

    A run that ends in ``t`` seconds on ``cores`` cores can use at most ``cores * t`` CPU
    seconds, the S3 server's included, and only if every core is busy from start to end. So if
    the 2-worker run used more than the target's time allows, no overlap, split or scheduling
    can meet it: only less CPU can.
    """
    lines = []
    for workload in dict.fromkeys(row.workload for row in rows):
        by = {row.name: row for row in rows if row.workload == workload}
        ours, empty = by["ours (2 workers)"], by[EMPTY]
        if not ours.seconds:
            continue
        used = ours.best_total_cpu
        start = (
            f"; {empty.best_total_cpu:.1f} of them start two idle workers" if empty.seconds else ""
        )
        lines.append(
            f"  {workload}: ours (2 workers) used {used:.1f} CPU s (S3 server "
            f"{ours.best_server_cpu:.1f}) in {ours.best:.2f} s{start}"
        )
        if workload == "one chain":
            one = by["ours (1 worker)"]
            if not one.seconds:
                continue
            deadline = one.best / TARGET_SPREAD
            allowed = cores * deadline
            extra = used - one.best_total_cpu
            # Work both runs do moves both sides: saving x CPU s of it shortens 1 worker's
            # run by about x (it is serial) and lowers the allowance by cores*x/1.6.
            headroom = allowed - one.best_total_cpu
            lines.append(
                f"    target {TARGET_SPREAD}× of 1 worker ({one.best:.2f} s) = {deadline:.2f} s: "
                f"{cores} cores allow {allowed:.1f} CPU s, {allowed / used:.2f}× of what it used"
            )
            lines.append(
                f"    beyond 1 worker's {one.best_total_cpu:.1f} CPU s, 2 workers used {extra:.1f} "
                f"(worker starts, records between processes) where the target leaves {headroom:.1f}"
                f"; each CPU s saved of the work both runs do lowers what it leaves by "
                f"{cores / TARGET_SPREAD - 1:.2f} s"
            )
            lines += spread_bound(by[NO_BEAM], one, empty)
            continue
        for name, ratio, label in (
            ("naive Beam (2 workers)", TARGET_NAIVE_RATIO, "naive"),
            ("floor (2 processes)", TARGET_FLOOR_RATIO, "floor"),
        ):
            row = by[name]
            if not row.seconds:
                continue
            deadline = row.best / ratio
            allowed = cores * deadline
            fixed = empty.best_total_cpu if empty.seconds else 0.0
            lines.append(
                f"    target {ratio}× {label} ({row.best:.2f} s) = {deadline:.2f} s: {cores} cores "
                f"allow {allowed:.1f} CPU s, {allowed / used:.2f}× of what it used; per event "
                f"beyond the idle workers' start: {(allowed - fixed) / ours.events * 1e6:.1f} µs "
                f"allowed, {(used - fixed) / ours.events * 1e6:.1f} µs used"
            )
            direct = by[NO_BEAM]
            if direct.seconds:
                work = direct.best_total_cpu
                lines.append(
                    f"      the job's steps without Beam used {work:.1f} CPU s "
                    f"({work / direct.events * 1e6:.1f} µs per event, S3 server included): "
                    + (
                        f"more than the {allowed - fixed:.1f} left after the workers' start, so "
                        f"no runner can meet it unless the steps themselves take "
                        f"{work / (allowed - fixed):.2f}× less CPU"
                        if work > allowed - fixed
                        else f"within the {allowed - fixed:.1f} left after the workers' start"
                    )
                )
    return lines


def spread_bound(direct: Row, one: Row, empty: Row) -> list[str]:
    """The most a second worker can gain on one chain, from the stages of the run without Beam.

    By the job's design a chain's plan and commit run on one worker; its normalising and (when
    spread) its encoding can split over two. So a 2-worker run takes at least what starting two
    idle workers takes, plus half of those two stages and all of the others, however cheap the
    runner.
    """
    if not (direct.seconds and one.seconds and empty.seconds):
        return []
    stages = direct.stages[direct.seconds.index(direct.best)]
    split = stages["normalise"] + stages["encode"]
    serial = stages["plan"] + stages["commit"]
    fastest = empty.best + split / 2 + serial
    shown = ", ".join(f"{name} {stages[name]:.2f}" for name in STAGES)
    return [
        f"    stages without Beam, s: {shown}; with normalise and encode split in two, the "
        f"rest serial and nothing else beyond the idle workers' start ({empty.best:.2f} s), "
        f"2 workers need at least {fastest:.2f} s: at most {one.best / fastest:.2f}× of 1 "
        f"worker's {one.best:.2f} s (target {TARGET_SPREAD}×)"
    ]


def targets(rows: Sequence[Row]) -> list[str]:
    lines = []
    for workload in dict.fromkeys(row.workload for row in rows):
        by = {row.name: row for row in rows if row.workload == workload}
        ours, one = by["ours (2 workers)"], by["ours (1 worker)"]
        one_process = by["ours (1 worker process)"]
        naive, floor = by["naive Beam (2 workers)"], by["floor (2 processes)"]
        if not ours.seconds:
            continue
        rate = ours.rate()
        if workload == "one chain":
            if one.seconds:
                spread = rate / one.rate()
                verdict = "met" if spread >= TARGET_SPREAD else "NOT met"
                lines.append(
                    f"  {workload}: ours 2 workers ÷ 1 worker = {spread:.2f}× "
                    f"vs target ≥ {TARGET_SPREAD}×: {verdict}"
                )
            if one_process.seconds:
                lines.append(
                    f"  {workload}: ours 2 workers ÷ 1 worker process = "
                    f"{rate / one_process.rate():.2f}× (the same kind of worker; not the target's "
                    "baseline)"
                )
            continue
        if floor.seconds:
            ratio = rate / floor.rate()
            verdict = "met" if ratio >= TARGET_FLOOR_RATIO else "NOT met"
            lines.append(
                f"  {workload}: ours (2 workers) ÷ floor (2 processes) = {ratio:.2f}× "
                f"vs target ≥ {TARGET_FLOOR_RATIO}×: {verdict}"
            )
        if naive.seconds:
            ratio = rate / naive.rate()
            verdict = "met" if ratio >= TARGET_NAIVE_RATIO else "NOT met"
            lines.append(
                f"  {workload}: ours ÷ naive = {ratio:.2f}× vs target ≥ {TARGET_NAIVE_RATIO}×: "
                f"{verdict}"
            )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 events")
    parser.add_argument("--per-object", type=int, default=5_000, help="events per raw object")
    parser.add_argument("--chains", type=int, default=20, help="numbers in the many-chain workload")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--spread-above",
        type=int,
        default=SealSpec.spread_above,
        help="the job's --spread_above: chains with more new records are encoded in units on "
        "every worker (default: %(default)s; 0 spreads every chain)",
    )
    parser.add_argument("--only", choices=("one", "many"), default=None)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="instead of the benchmark: ingest the one-chain workload (--only many: the "
        "--chains workload) once with one worker (FnApiRunner in this process) under cProfile "
        "and write the top functions to this file",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 200_000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    if args.probe:
        probe([Path(args.probe).read_text()])
        return 0
    if args.profile:
        profile(args)
        return 0
    print(
        f"bench/ingest.py: {args.events:,} events, {args.per_object:,} per raw object, "
        f"{os.cpu_count()} CPUs, repeat {args.repeat}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        os.environ.update(
            {k: v for k, v in server.environment().items() if k != "AWS_ENDPOINT_URL"}
        )
        key_file = Path(tmp) / "signing.key"
        signer = Ed25519Signer.generate(ARCHIVE_NAME)
        signer.to_file(key_file)
        trust = TrustStore.parse(signer.verifier_key() + "\n")
        raw = StoreSpec("unset", endpoint_url=server.endpoint_url, region_name="us-east-1")
        rows: list[Row] = []
        notes: list[str] = []
        workloads = [("one chain", 1), (f"{args.chains} chains", args.chains)]
        if args.only:
            workloads = workloads[:1] if args.only == "one" else workloads[1:]
        for workload, chains in workloads:
            print(f"[{workload}] measuring …", flush=True)
            found, more = measure_workload(args, server, raw, key_file, trust, workload, chains)
            rows += found
            notes += more
        print()
        print("\n".join(report(rows)))
        print("\ntargets (same run):")
        print("\n".join(targets(rows)))
        print(f"\nCPU budget ({os.cpu_count()} cores; CPU = ours + the S3 server's, best runs):")
        print("\n".join(budget(rows, os.cpu_count() or 1)))
        print("\nchecks:")
        print("\n".join(f"  {note}" for note in notes))
        full = next((row.note for row in rows if row.name == "ours (2 workers)" and row.note), None)
        if not args.skip_memory and full is not None:
            print("\nmemory (fresh process each; runner = the pipeline's own process):")
            print("\n".join(measure_memory(args, server, raw, key_file, full)))
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
    sys.exit(0)
