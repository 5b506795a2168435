"""Auditor query latency over a generated archive on the embedded S3, beside raw DuckDB.

Run from the repository root::

    .venv/bin/python bench/query.py                       # 10,000,000 records (built once)
    .venv/bin/python bench/query.py --records 1000000     # smaller, separate data dir

The archive is built once into ``--data-dir`` (SeaweedFS data and keys) and reused by later runs,
into one bucket per layout (``--layouts``), from the same records:

* ``current``:  segments exactly as ``coexarchive.segments`` writes them today (rows sorted by
  customer_id, event_time and seq, 8,192-row groups; manifests with customer filters);
* ``sorted``:   the same order in 2,048-row groups;
* ``sorted8k``: the same order in 8,192-row groups, written by the benchmark's own writer;
* ``encrypted``: ``current`` with personal content sealed encrypted (record version 2, one data
  key per customer in ``--data-dir``/data-keys); its transcript is compared with ``current``'s
  (target: ≤ 1.3x).

Everything else (manifests, checkpoints) is written by the same ``ChainWriter``, so every layout
verifies. Each layout is built once (a marker file per layout in the data dir); a data dir built
by an older version lacks customer filters, and the benchmark says so.

Measured per layout, each measurement in a fresh process (``--probe``): cold is that process's
first query with the session (or DuckDB connection) opened inside the timing, warm its second
query; each row is the best of ``--repeat`` processes. The S3 server's and the OS's caches are not
flushed between processes (that needs root): cold means no Parquet footer, catalogue or
connection cached in the process, not a cold disk. Every row names the store it read.

* transcript: one customer's messages over the whole archive (``report transcript``);
* transcript-week: the same customer over one week;
* compliance: the full compliance summary (``report compliance``), which sums the findings totals
  each manifest records and scans only segments a period cuts;
* raw DuckDB scan: the same SQL over the same files, discovered by listing ``archive/v1/`` with
  pyarrow's S3 filesystem (hive partitioning), as an auditor with plain DuckDB would; for the
  compliance summary this scans every record, so "ours ÷ raw scan" compares different work and
  is labelled so;
* raw DuckDB reading the same totals (compliance only): the manifests listed and fetched through
  pyarrow's S3 filesystem, their findings flattened and summed in DuckDB: the work our summary
  does, without catalogue, checks or access log;
* the access-log append alone (what every one of our queries adds).

Benchmarks report; the exit code is always 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from coexarchive import segments
from coexarchive.datakeys import DataKeyStore, open_store
from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import REPORTS, Params, build_sql
from coexarchive.query.session import AuditSession
from coexarchive.records import Record, stable_id
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import ChainWriter
from coexarchive.store.s3 import S3Store
from coexarchive.store.seaweed import EmbeddedS3

ARCHIVE = "coexarchive.bench"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
# Layout name → row-group size of the sorted proposal (None: segments.py as it is).
LAYOUTS: dict[str, int | None] = {
    "current": None,
    "sorted": 2_048,
    "sorted8k": 8_192,
    "encrypted": None,
}
# Layouts sealed with personal content encrypted (record version 2): the same records, the same
# writer, under one data key per customer; queries open only the rows they return.
ENCRYPTED = frozenset({"encrypted"})
TEXTS = (
    "Hi, is my order #{n} on its way?",
    "Olá! Gostaria de saber o preço do pacote família, por favor.",
    "¿Pueden enviarme la factura de diciembre? Gracias 🙏",
    "Здравствуйте! Когда будет доставка заказа {n}?",
    "مرحبا، أريد تغيير عنوان التوصيل من فضلك",
    "नमस्ते, मेरा रिफंड कब तक आएगा?",
    "你好，我想预约明天下午三点的服务。",
    "Thanks!! 👍👍",
    "Can you call me back at 3pm?",
    "ok",
)
TEMPLATES = (
    ("order_update", "en_US", "UTILITY"),
    ("promo_spring", "pt_BR", "MARKETING"),
    ("otp_login", "es", "AUTHENTICATION"),
)
FLAGS = (
    "freeform_outside_window",
    "marketing_without_consent",
    "sent_after_opt_out",
    "template_not_approved",
)


# --- the archive ----------------------------------------------------------------------------------


def chain_ids(chains: int) -> list[str]:
    return [f"10654035224{i:04d}" for i in range(chains)]


def customer_of(chain: int, number: int) -> str:
    return f"44{chain:02d}{number:08d}"


def day_records(
    rng: random.Random, chain: int, chain_id: str, day: int, count: int, customers: int
) -> list[Record]:
    """One chain's records of one day, shaped like the normaliser's output."""
    records = []
    base = START_MS + day * DAY_MS
    step = DAY_MS // count
    for i in range(count):
        now = base + i * step + rng.randrange(step)
        customer = customer_of(chain, rng.randrange(customers))
        wamid = f"wamid.{chain_id}.{day}.{i}"
        roll = rng.random()
        common: dict[str, Any] = {
            "chain_id": chain_id,
            "event_time": now,
            "received_time": now + 700,
            "waba_id": "102290129340398",
            "business_phone": "15550783881",
            "customer_id": customer,
            "customer_wa_id": customer,
            "wamid": wamid,
            "raw_key": f"raw/date={datetime.fromtimestamp(base / 1000, UTC):%Y-%m-%d}/"
            f"rx-{i // 500:08d}.jsonl.zst",
            "raw_line": i % 500,
        }
        text = TEXTS[i % len(TEXTS)].replace("{n}", str(i))
        if roll < 0.35:
            kind, origin, direction, extra = "message", "customer", "inbound", {"text": text}
        elif roll < 0.45:
            kind, origin, direction, extra = "echo", "business_app", "outbound", {"text": text}
        elif roll < 0.57:
            kind, origin, direction = "outbound", "cloud_api", "outbound"
            extra = {"text": text, "window_open": rng.random() < 0.9}
            if rng.random() < 0.5:
                name, language, category = TEMPLATES[i % len(TEMPLATES)]
                extra = {
                    "msg_type": "template",
                    "template_name": name,
                    "template_language": language,
                    "template_category": category,
                    "template_status": "APPROVED",
                    "consent_state": "opted_in",
                }
            if rng.random() < 0.04:
                extra["flags"] = (FLAGS[i % len(FLAGS)],)
        elif roll < 0.92:
            kind, origin, direction = "status", "cloud_api", "outbound"
            status = ("sent", "delivered", "read", "failed")[i % 4 if rng.random() < 0.1 else i % 3]
            extra = {"status": status, "error_code": 131047 if status == "failed" else None}
        elif roll < 0.97:
            kind, origin, direction, extra = (
                "history_message",
                "history_import",
                "inbound",
                {"text": text},
            )
        else:
            kind, origin, direction = "consent_event", "customer", "none"
            extra = {"status": "stop" if rng.random() < 0.5 else "resume", "wamid": None}
        fields = {**common, **extra}
        fields.setdefault("msg_type", "text" if kind != "status" else None)
        detail = {"v": 1, "field": kind, "n": i, "contact": {"wa_id": customer}}
        records.append(
            Record(
                record_id=stable_id(kind, chain_id, wamid),
                kind=kind,
                origin=origin,
                direction=direction,
                detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
                **fields,
            )
        )
    return records


def sorted_parquet_bytes(row_group: int) -> Callable[[pa.Table], bytes]:
    """The layout proposal, as a drop-in for ``segments.parquet_bytes``."""

    def write(table: pa.Table) -> bytes:
        table = table.sort_by([("customer_id", "ascending"), ("event_time", "ascending")])
        sink = pa.BufferOutputStream()
        pq.write_table(
            table,
            sink,
            compression="zstd",
            row_group_size=row_group,
            write_statistics=True,
            use_dictionary=["chain_id", "kind", "origin", "direction", "msg_type", "status"],
        )
        return bytes(sink.getvalue())

    return write


def data_keys(data_dir: Path) -> DataKeyStore:
    return open_store(data_dir / "data-keys", kms_key_id=None, create=True, clock=lambda: START_MS)


def build(
    key: Ed25519Signer, args: argparse.Namespace, stores: dict[str, S3Store], keys: DataKeyStore
) -> None:
    chains = chain_ids(args.chains)
    per_day = args.records // (args.chains * args.days)
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    writers = {
        layout: {
            chain: ChainWriter(
                store,
                chain,
                signer=key,
                archive_name=ARCHIVE,
                policy=policy,
                personal=PersonalSealer.for_store(keys) if layout in ENCRYPTED else None,
            )
            for chain in chains
        }
        for layout, store in stores.items()
    }
    original = segments.parquet_bytes
    writes = {
        layout: original if LAYOUTS[layout] is None else sorted_parquet_bytes(LAYOUTS[layout] or 0)
        for layout in stores
    }
    started = time.monotonic()
    written = 0
    for day in range(args.days):
        for index, chain in enumerate(chains):
            rng = random.Random(f"{args.seed}/{index}/{day}")
            records = day_records(rng, index, chain, day, per_day, args.customers)
            for layout in stores:
                segments.parquet_bytes = writes[layout]  # type: ignore[assignment]
                try:
                    writers[layout][chain].append(records)
                finally:
                    segments.parquet_bytes = original  # type: ignore[assignment]
            written += len(records)
        rate = written / (time.monotonic() - started)
        print(f"  built day {day + 1}/{args.days}: {written:,} records ({rate:,.0f}/s)", flush=True)


# --- measuring ------------------------------------------------------------------------------------

STORE = "embedded S3 (SeaweedFS, loopback)"


@dataclass
class Timing:
    label: str
    cold: float
    warm: float
    rows: int

    def line(self) -> str:
        return (
            f"  {self.label:<58} cold {self.cold * 1000:8.0f} ms   "
            f"warm {self.warm * 1000:8.0f} ms   rows {self.rows:>7}   store: {STORE}"
        )


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def in_fresh_processes(repeat: int, probe: dict[str, Any]) -> tuple[float, float, int, float]:
    """Best cold and warm of ``repeat`` fresh processes, each measuring once (see :func:`probe`).

    Cold is a new process's first query, session (or connection) open included, with no Parquet
    footer or catalogue cached in it; the S3 server's and the OS's caches are not flushed (that
    needs root), so "cold" here is a process cold, not a disk cold.
    """
    results = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, __file__, "--probe", orjson.dumps(probe).decode()],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{probe['kind']} probe failed:\n{done.stderr[-3000:]}")
        results.append(orjson.loads(done.stdout.strip().splitlines()[-1]))
    return (
        min(r["cold"] for r in results),
        min(r["warm"] for r in results),
        results[0]["rows"],
        min(r.get("log", 0.0) for r in results),
    )


def params_json(params: Params) -> dict[str, Any]:
    return {
        "customer": params.customer,
        "since": params.since.isoformat() if params.since else None,
        "until": params.until.isoformat() if params.until else None,
    }


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process: first query with the open, then again warm."""
    store = S3Store(spec["bucket"], endpoint_url=spec["endpoint"], region_name="us-east-1")
    name = spec["report"]
    p = spec["params"]
    params = Params(
        customer=p["customer"],
        since=datetime.fromisoformat(p["since"]) if p["since"] else None,
        until=datetime.fromisoformat(p["until"]) if p["until"] else None,
    )
    if spec["kind"] == "ours":
        key = Ed25519Signer.from_file(spec["key_file"])
        trust = TrustStore.parse(key.verifier_key() + "\n")
        log = AccessLog(store, signer=key, archive_name=ARCHIVE)
        # The data keys are read in the timing, as a reader opening the archive would.
        keys_dir = spec.get("data_keys")

        def open_session() -> AuditSession:
            keys = None
            if keys_dir:
                keys = open_store(Path(keys_dir), kms_key_id=None, create=False, clock=lambda: 0)
            return AuditSession(store, access_log=log, who="bench", trust=trust, keys=keys)

        def first_report() -> tuple[AuditSession, Any]:
            opened = open_session()
            return opened, opened.report(name, params)

        cold, (session, result) = timed(first_report)
        warm, _ = timed(lambda: session.report(name, params))
        log_time, _ = timed(lambda: log.append(_entry(), now_ms=time.time_ns() // 10**6))
        return {"cold": cold, "warm": warm, "rows": result.table.num_rows, "log": log_time}
    run = raw_totals if spec["kind"] == "raw-totals" else raw_scan
    first = run(store, name, params)
    cold, (con, rows) = timed(first)
    warm, _ = timed(lambda: run(store, name, params, con)())
    return {"cold": cold, "warm": warm, "rows": rows}


def _entry() -> Any:
    from coexarchive.query.access_log import AccessEntry

    return AccessEntry(who="bench", sql="-- timing", params={}, rows=0, result_sha256="0" * 64)


def raw_scan(
    store: S3Store, name: str, params: Params, con: duckdb.DuckDBPyConnection | None = None
) -> Callable[[], tuple[duckdb.DuckDBPyConnection, int]]:
    """The same SQL in plain DuckDB over the same files found by listing (no manifests)."""
    sql, values = build_sql(REPORTS[name], params)

    def fresh() -> duckdb.DuckDBPyConnection:
        dataset = ds.dataset(
            f"{store.bucket}/archive/v1/",
            filesystem=store.filesystem(),
            format="parquet",
            partitioning="hive",
        )
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("segments", dataset)
        # The reports read current flags beside sealed ones; with no reassessment in this archive
        # (the builder writes none) the current flags are the sealed ones, from no assessment.
        con.execute(
            "CREATE VIEW records AS SELECT *, flags AS sealed_flags, "
            "CAST(NULL AS BIGINT) AS flags_seq FROM segments"
        )
        con.execute(
            "CREATE VIEW messages AS SELECT * FROM records WHERE kind IN ('message', 'echo', "
            "'outbound', 'history_message', 'message_edit', 'message_revoke')"
        )
        return con

    def run() -> tuple[duckdb.DuckDBPyConnection, int]:
        c = con or fresh()
        return c, int(c.sql(sql, params=values or None).to_arrow_table().num_rows)

    return run


TOTALS_SQL = """
SELECT finding, chain_id, CAST(sum(records) AS BIGINT) AS records,
       min(first_time) AS first_time, max(last_time) AS last_time
FROM totals GROUP BY ALL ORDER BY finding, chain_id
"""


def raw_totals(
    store: S3Store, name: str, params: Params, con: duckdb.DuckDBPyConnection | None = None
) -> Callable[[], tuple[duckdb.DuckDBPyConnection, int]]:
    """What our compliance summary reads, by hand: every manifest's findings totals, summed.

    Plain DuckDB with the manifests fetched through pyarrow's S3 filesystem and their JSON
    flattened: the same totals our summary sums (whole archive, no period, nothing reassessed),
    without a catalogue, checks or the access log.
    """
    assert name == "compliance"
    assert params.since is None
    assert params.customer is None

    def run() -> tuple[duckdb.DuckDBPyConnection, int]:
        filesystem = store.filesystem()
        selector = pafs.FileSelector(f"{store.bucket}/manifests/", recursive=True)
        rows: dict[str, list[Any]] = {k: [] for k in ("finding", "chain_id", "records")}
        rows |= {"first_time": [], "last_time": []}
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or "chain=access-log" in info.path:
                continue
            with filesystem.open_input_stream(info.path) as handle:
                manifest = orjson.loads(handle.read())
            for finding, total in (manifest.get("findings") or {}).items():
                rows["finding"].append(finding)
                rows["chain_id"].append(manifest["chain_id"])
                rows["records"].append(total["records"])
                rows["first_time"].append(total["first_time"])
                rows["last_time"].append(total["last_time"])
        c = con or duckdb.connect()
        c.register("totals", pa.table(rows))
        return c, int(c.sql(TOTALS_SQL).to_arrow_table().num_rows)

    return run


def repeat_note(repeat: int) -> str:
    return (
        f"cold = best of {repeat} fresh processes, each timing its first query with the session "
        "or connection open included; warm = that process's second query"
    )


def pick_customer(store: S3Store, args: argparse.Namespace) -> str:
    return customer_of(min(3, args.chains - 1), args.customers // 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--customers", type=int, default=20_000, help="per chain")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help=f"comma-separated, of {', '.join(LAYOUTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if args.probe is not None:
        print(orjson.dumps(probe(orjson.loads(args.probe))).decode())
        return 0
    data_dir = (args.data_dir or Path(f"var/bench-query-{args.records}")).resolve()
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key_file = keys / "signing.key"
    if not key_file.exists():
        Ed25519Signer.generate("coexarchive.bench").to_file(key_file)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpu, "
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, pyarrow {pa.__version__}"
    )
    with EmbeddedS3(data_dir / "s3") as server:
        os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        chosen = [name for name in args.layouts.split(",") if name]
        unknown = set(chosen) - set(LAYOUTS)
        if unknown:
            parser.error(f"unknown layout(s): {', '.join(sorted(unknown))}")
        stores = {layout: server.store(f"bench-{layout}") for layout in chosen}
        missing = {
            layout: store
            for layout, store in stores.items()
            if not (data_dir / f"built-{layout}").exists()
        }
        if missing:
            print(f"building {args.records:,} records in layouts {', '.join(missing)} ({data_dir})")
            build(Ed25519Signer.from_file(key_file), args, missing, data_keys(data_dir))
            for layout in missing:
                (data_dir / f"built-{layout}").write_text(f"{args.records}\n")
        if args.build_only:
            return 0
        report_files(stores)
        warn_without_filters(stores, data_dir)
        customer = pick_customer(next(iter(stores.values())), args)
        week = datetime.fromtimestamp(START_MS / 1000, UTC) + timedelta(days=7)
        cases = [
            ("transcript", Params(customer=customer)),
            ("transcript", Params(customer=customer, since=week, until=week + timedelta(days=7))),
            ("compliance", Params()),
        ]
        transcripts: dict[str, float] = {}
        for layout in chosen:
            store = stores[layout]
            print(f"\nlayout {layout} (every row: {repeat_note(args.repeat)}):")
            for name, params in cases:
                label = name if params.since is None else f"{name} (one week)"
                common = {
                    "bucket": store.bucket,
                    "endpoint": server.endpoint_url,
                    "report": name,
                    "params": params_json(params),
                    "key_file": str(key_file),
                    "data_keys": str(data_dir / "data-keys") if layout in ENCRYPTED else None,
                }
                cold, warm, rows, log_time = in_fresh_processes(
                    args.repeat, common | {"kind": "ours"}
                )
                ours = Timing(f"ours: {label}, incl. opening the session", cold, warm, rows)
                if label == "transcript":
                    transcripts[layout] = cold
                raw = Timing(
                    f"raw DuckDB: {label}, listing + scan",
                    *in_fresh_processes(args.repeat, common | {"kind": "raw"})[:3],
                )
                print(ours.line())
                print(raw.line())
                if name != "compliance":
                    print(
                        f"  {'ours ÷ raw (cold)':<58} {ours.cold / raw.cold:8.2f}x   "
                        f"access-log append {log_time * 1000:.0f} ms"
                    )
                    continue
                totals = Timing(
                    f"raw DuckDB: {label}, same manifest totals summed",
                    *in_fresh_processes(args.repeat, common | {"kind": "raw-totals"})[:3],
                )
                print(totals.line())
                print(
                    f"  {'ours ÷ raw scan (cold; ours sums manifest totals, raw scans all)':<58} "
                    f"{ours.cold / raw.cold:8.2f}x"
                )
                print(
                    f"  {'ours ÷ raw reading the same totals (cold)':<58} "
                    f"{ours.cold / totals.cold:8.2f}x   access-log append {log_time * 1000:.0f} ms"
                )
        if "current" in transcripts and "encrypted" in transcripts:
            ratio = transcripts["encrypted"] / transcripts["current"]
            print(
                f"\ntranscript, cold incl. session open: encrypted / current = {ratio:.2f}x "
                f"(target ≤ 1.3x: {'met' if ratio <= 1.3 else 'NOT met'}; {args.records:,} records)"
            )
    return 0


def warn_without_filters(stores: dict[str, S3Store], data_dir: Path) -> None:
    """An archive built by an older version lacks customer filters or findings in its manifests:
    transcripts then open every segment and the compliance summary scans every record."""
    for layout, store in stores.items():
        keys = sorted(k for k in store.list("manifests/") if "chain=access-log" not in k)
        newest = segments.Manifest.from_bytes(store.get(keys[-1])) if keys else None
        if newest is not None and (newest.customers is None or newest.findings is None):
            print(
                f"WARNING: layout {layout} was built without customer filters or findings; "
                f"delete {data_dir} to rebuild it as coexarchive writes archives now"
            )


def report_files(stores: dict[str, S3Store]) -> None:
    for layout, store in stores.items():
        keys = [k for k in store.list("archive/v1/") if k.endswith(".parquet")]
        size = sum(store.info(k).size for k in keys[:20]) / max(1, min(20, len(keys)))
        print(f"layout {layout}: {len(keys)} segment files, ~{size / 1e6:.1f} MB each")


def _iter(values: Iterator[Any]) -> list[Any]:
    return list(values)


if __name__ == "__main__":
    sys.exit(main())
