"""Evidence-bundle export and offline verification of 100,000 records with proofs.

Run from the repository root::

    .venv/bin/python bench/export.py                    # 100,000 records, in-memory store
    .venv/bin/python bench/export.py --records 20000 --repeat 1
    .venv/bin/python bench/export.py --s3               # the archive on the embedded SeaweedFS

The records come from ``bench/_records.py`` (one chain, ~5,000 customers, realistic text), sealed
by ``ChainWriter`` into an in-memory store (or the embedded S3 with ``--s3``). The export selects
every record (the result of ``SELECT chain_id, seq FROM records``, given directly so DuckDB is not
timed) and measures, best of ``--repeat``:

* export: select rows, re-hash them against their sealed leaves, rebuild the chain's tree and
  check it against the signed checkpoint, one C2SP tlog-proof per record, Parquet + JSONL + CSV,
  HTML transcripts, RSMF files, MANIFEST, custody sealed in the access log, written to a
  directory (and, separately, to a zip);
* verify-bundle: read the directory, then every step of ``verify_bundle``;
* floors, in the same run on the same bundle: writing its files to a fresh directory and
  hashing each (SHA-256, as the bundle's MANIFEST does), and reading them back and hashing each.

The archive's store is named in every row: only export reads it (verify-bundle reads the bundle
directory, on local disk either way). The targets are ratios to the floors of the same run, since
this machine's speed drifts by up to 1.8x between days: export <= EXPORT_TARGET x the write floor,
verify-bundle <= VERIFY_TARGET x the read floor. No floor was measured on the days the absolute
targets of issue 7 (export < 10 s, verify-bundle < 5 s) were met, so the ratios are not derived
from them: they are proposed here, and the first quiet run should confirm or tighten them.
Benchmarks report; the exit code is 0.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _records import CHAIN_ID, generate

from coexarchive.export.bundle import (
    ExportRequest,
    Selection,
    export_bundle,
    read_bundle,
    zip_bytes,
)
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.access_log import AccessLog
from coexarchive.query.views import ArchiveCatalog
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore, ObjectStore

ARCHIVE = "bench.coexarchive"
# Ratios to the same run's floors (see the module docstring).
EXPORT_TARGET = 10.0
VERIFY_TARGET = 10.0
AS_OF = 1_767_571_200_000


def best(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    timings, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        timings.append(time.perf_counter() - start)
    return min(timings), result


def write_floor(files: dict[str, bytes], out: Path) -> int:
    """Write every file of the bundle under ``out`` and hash it: what any export must do."""
    digests = 0
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digests += len(hashlib.sha256(data).digest())
    return digests


def read_floor(out: Path) -> int:
    """Read every file under ``out`` back and hash it: what any bundle check must do."""
    digests = 0
    for path in sorted(out.rglob("*")):
        if path.is_file():
            digests += len(hashlib.sha256(path.read_bytes()).digest())
    return digests


def build_archive(store: ObjectStore, records: int, signer: Ed25519Signer) -> None:
    policy = RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1))
    writer = ChainWriter(store, CHAIN_ID, signer=signer, archive_name=ARCHIVE, policy=policy)
    writer.append(generate(records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tz", default="Europe/London")
    parser.add_argument("--s3", action="store_true", help="archive on the embedded SeaweedFS")
    args = parser.parse_args()

    signer = Ed25519Signer.from_seed("bench.coexarchive", b"\x07" * 32)
    trust = TrustStore([signer.verifier()])
    work = Path(tempfile.mkdtemp(prefix="coexarchive-bench-export-"))
    server = None
    try:
        if args.s3:
            from coexarchive.store import EmbeddedS3

            server = EmbeddedS3(work / "seaweed")
            server.start()
            store: ObjectStore = server.store("bench-export")
        else:
            store = MemoryStore()
        started = time.perf_counter()
        build_archive(store, args.records, signer)
        print(f"sealed {args.records:,} records in {time.perf_counter() - started:.1f} s")
        selection = pa.table(
            {"chain_id": [CHAIN_ID] * args.records, "seq": list(range(args.records))}
        )
        request = ExportRequest(
            matter="BENCH-1",
            selection=Selection(query="SELECT chain_id, seq FROM records"),
            who="bench",
            as_of=AS_OF,
            zone=args.tz,
        )
        log = AccessLog(store, signer=signer, archive_name=ARCHIVE)
        counter = iter(range(10**6))

        def export_to_dir() -> Any:
            out = work / f"bundle-{next(counter)}"
            return export_bundle(
                ArchiveCatalog(store),
                trust,
                request,
                access_log=log,
                sealed_at_ms=AS_OF,
                out=out,
                query_result=selection,
            ), out

        export_time, (result, out) = best(args.repeat, export_to_dir)
        bundle = result.bundle
        zip_time, archive = best(args.repeat, lambda: zip_bytes(bundle.files))
        read_time, files = best(args.repeat, lambda: read_bundle(out))
        verify_time, report = best(
            args.repeat, lambda: verify_bundle(read_bundle(out), trust=trust, workers=2)
        )
        verify_one_time, _ = best(
            args.repeat, lambda: verify_bundle(read_bundle(out), trust=trust, workers=1)
        )
        floors = iter(range(10**6))
        write_time, _ = best(
            args.repeat, lambda: write_floor(bundle.files, work / f"floor-{next(floors)}")
        )
        read_floor_time, _ = best(args.repeat, lambda: read_floor(out))
        size = sum(len(v) for v in bundle.files.values())
        print(
            f"machine: {platform.machine()} {platform.processor() or ''}, "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}"
        )
        where = "embedded S3 (SeaweedFS)" if args.s3 else "in memory (no S3)"
        print(
            f"bundle: {bundle.record_count:,} records, {len(bundle.files):,} files, "
            f"{size / 1e6:.1f} MB ({len(archive) / 1e6:.1f} MB zipped), "
            f"{bundle.custody['counts']['rsmf_files']:,} RSMF files, "
            f"{bundle.custody['counts']['transcripts']:,} transcripts"
        )
        export_ratio = export_time / write_time
        verify_ratio = verify_time / read_floor_time
        rows = [
            ("floor: write + SHA-256 the bundle's files", where, write_time, "1.00x", ""),
            (
                "export to a directory (with proofs)",
                f"archive {where}",
                export_time,
                f"{export_ratio:.1f}x write floor",
                f"<= {EXPORT_TARGET:.0f}x: {'met' if export_ratio <= EXPORT_TARGET else 'NOT met'}",
            ),
            ("zip of the same files", "memory", zip_time, "", ""),
            (
                "floor: read + SHA-256 the bundle's files",
                "bundle on local disk",
                read_floor_time,
                "1.00x",
                "",
            ),
            (
                "verify-bundle (read directory + verify, 2 processes)",
                "bundle on local disk",
                verify_time,
                f"{verify_ratio:.1f}x read floor",
                f"<= {VERIFY_TARGET:.0f}x: {'met' if verify_ratio <= VERIFY_TARGET else 'NOT met'}",
            ),
            (
                "verify-bundle in one process",
                "bundle on local disk",
                verify_one_time,
                f"{verify_one_time / read_floor_time:.1f}x read floor",
                "",
            ),
            ("of which reading the directory", "bundle on local disk", read_time, "", ""),
        ]
        print("| step | store | seconds | vs floor | target |")
        print("| --- | --- | ---: | ---: | --- |")
        for step, store_name, seconds, ratio, target in rows:
            print(f"| {step} | {store_name} | {seconds:.2f} | {ratio} | {target} |")
        print(f"records proven: {sum(1 for r in report.records if r.ok):,}; files: {len(files):,}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
