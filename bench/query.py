"""Auditor query latency over a generated archive on the embedded S3, beside raw DuckDB.

Run from the repository root::

    .venv/bin/python bench/query.py                       # 10,000,000 records (built once)
    .venv/bin/python bench/query.py --records 1000000     # smaller, separate data dir

The archive is built once into ``--data-dir`` (SeaweedFS data and keys) and reused by later runs,
into one bucket per layout (``--layouts``), from the same records:

* ``current``:  segments exactly as ``coexarchive.segments`` writes them today (rows sorted by
  customer_id, event_time and seq, 8,192-row groups; manifests with customer filters);
* ``sorted``:   the same order in 2,048-row groups;
* ``sorted8k``: the same order in 8,192-row groups, written by the benchmark's own writer.

Everything else (manifests, checkpoints) is written by the same ``ChainWriter``, so every layout
verifies. Each layout is built once (a marker file per layout in the data dir); a data dir built
by an older version lacks customer filters, and the benchmark says so.

Measured per layout, cold (a fresh session, no Parquet footer cached) and warm
(the same session again), best of ``--repeat``:

* transcript: one customer's messages over the whole archive (``report transcript``);
* transcript-week: the same customer over one week;
* compliance: the full compliance summary (``report compliance``);
* raw DuckDB: the same SQL over the same files, discovered by listing ``archive/v1/`` with
  pyarrow's S3 filesystem (hive partitioning), as an auditor with plain DuckDB would;
* the access-log append alone (what every one of our queries adds).

Benchmarks report; the exit code is always 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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
import pyarrow.parquet as pq

from coexarchive import segments
from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import REPORTS, Params, build_sql
from coexarchive.query.session import AuditSession
from coexarchive.records import Record, stable_id
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store.s3 import S3Store
from coexarchive.store.seaweed import EmbeddedS3

ARCHIVE = "coexarchive.bench"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
# Layout name → row-group size of the sorted proposal (None: segments.py as it is).
LAYOUTS: dict[str, int | None] = {"current": None, "sorted": 2_048, "sorted8k": 8_192}
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


def build(key: Ed25519Signer, args: argparse.Namespace, stores: dict[str, S3Store]) -> None:
    chains = chain_ids(args.chains)
    per_day = args.records // (args.chains * args.days)
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    writers = {
        layout: {
            chain: ChainWriter(store, chain, signer=key, archive_name=ARCHIVE, policy=policy)
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


@dataclass
class Timing:
    label: str
    cold: float
    warm: float
    rows: int

    def line(self) -> str:
        return (
            f"  {self.label:<44} cold {self.cold * 1000:8.0f} ms   "
            f"warm {self.warm * 1000:8.0f} ms   rows {self.rows}"
        )


def best(repeat: int, run: Callable[[], tuple[float, float, int]]) -> tuple[float, float, int]:
    results = [run() for _ in range(repeat)]
    return min(r[0] for r in results), min(r[1] for r in results), results[0][2]


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def measure_ours(
    store: S3Store, key: Ed25519Signer, trust: TrustStore, name: str, params: Params, repeat: int
) -> tuple[Timing, Timing, float]:
    """(session open + report) cold, the report alone cold and warm, and the access-log append."""
    opens: list[float] = []
    log_times: list[float] = []

    def run() -> tuple[float, float, int]:
        log = AccessLog(store, signer=key, archive_name=ARCHIVE)
        opened, session = timed(
            lambda: AuditSession(store, access_log=log, who="bench", trust=trust)
        )
        opens.append(opened)
        cold, result = timed(lambda: session.report(name, params))
        warm, _ = timed(lambda: session.report(name, params))
        log_time, _ = timed(lambda: log.append(_entry(), now_ms=time.time_ns() // 10**6))
        log_times.append(log_time)
        return cold, warm, result.table.num_rows

    cold, warm, rows = best(repeat, run)
    return (
        Timing(f"ours: {name} (session already open)", cold, warm, rows),
        Timing(f"ours: {name} incl. opening the session", cold + min(opens), warm, rows),
        min(log_times),
    )


def _entry() -> Any:
    from coexarchive.query.access_log import AccessEntry

    return AccessEntry(who="bench", sql="-- timing", params={}, rows=0, result_sha256="0" * 64)


def measure_raw(store: S3Store, name: str, params: Params, repeat: int) -> Timing:
    """The same SQL in plain DuckDB over the same files found by listing (no manifests)."""
    sql, values = build_sql(REPORTS[name], params)
    filesystem = store.filesystem()

    def run() -> tuple[float, float, int]:
        def fresh() -> duckdb.DuckDBPyConnection:
            dataset = ds.dataset(
                f"{store.bucket}/archive/v1/",
                filesystem=filesystem,
                format="parquet",
                partitioning="hive",
            )
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            con.register("records", dataset)
            con.execute(
                "CREATE VIEW messages AS SELECT * FROM records WHERE kind IN ('message', 'echo', "
                "'outbound', 'history_message', 'message_edit', 'message_revoke')"
            )
            return con

        def query(con: duckdb.DuckDBPyConnection) -> int:
            return int(con.sql(sql, params=values or None).to_arrow_table().num_rows)

        cold, (con, rows) = timed(lambda: (lambda c: (c, query(c)))(fresh()))
        warm, _ = timed(lambda: query(con))
        return cold, warm, rows

    cold, warm, rows = best(repeat, run)
    return Timing(f"raw DuckDB: {name} (listing + query)", cold, warm, rows)


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
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help=f"comma-separated, of {', '.join(LAYOUTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or Path(f"var/bench-query-{args.records}")).resolve()
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key_file = keys / "signing.key"
    if not key_file.exists():
        Ed25519Signer.generate("coexarchive.bench").to_file(key_file)
    key = Ed25519Signer.from_file(key_file)
    trust = TrustStore.parse(key.verifier_key() + "\n")
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
            build(key, args, missing)
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
        for layout in chosen:
            store = stores[layout]
            print(f"\nlayout {layout}:")
            for name, params in cases:
                label = name if params.since is None else f"{name} (one week)"
                ours, with_open, log_time = measure_ours(
                    store, key, trust, name, params, args.repeat
                )
                raw = measure_raw(store, name, params, args.repeat)
                for timing in (ours, with_open, raw):
                    timing.label = timing.label.replace(name, label, 1)
                    print(timing.line())
                print(
                    f"  {'ratio ours/raw (cold, incl. session open)':<44} "
                    f"{with_open.cold / raw.cold:8.2f}x   "
                    f"access-log append {log_time * 1000:.0f} ms"
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
