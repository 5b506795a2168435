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
* verify-bundle: read the directory, then every step of ``verify_bundle``.

Targets (issue 7): export < 10 s, verify-bundle < 5 s. Benchmarks report; the exit code is 0.
"""

from __future__ import annotations

import argparse
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
AS_OF = 1_767_571_200_000


def best(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    timings, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        timings.append(time.perf_counter() - start)
    return min(timings), result


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
        size = sum(len(v) for v in bundle.files.values())
        print(
            f"machine: {platform.machine()} {platform.processor() or ''}, "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}"
        )
        print(f"store: {'SeaweedFS (embedded S3)' if args.s3 else 'in memory'}")
        print(
            f"bundle: {bundle.record_count:,} records, {len(bundle.files):,} files, "
            f"{size / 1e6:.1f} MB ({len(archive) / 1e6:.1f} MB zipped), "
            f"{bundle.custody['counts']['rsmf_files']:,} RSMF files, "
            f"{bundle.custody['counts']['transcripts']:,} transcripts"
        )
        print("| step | seconds | target |\n| --- | ---: | ---: |")
        print(f"| export to a directory (with proofs) | {export_time:.2f} | < 10 |")
        print(f"| zip of the same files | {zip_time:.2f} | |")
        print(f"| verify-bundle (read directory + verify, 2 processes) | {verify_time:.2f} | < 5 |")
        print(f"| verify-bundle in one process | {verify_one_time:.2f} | |")
        print(f"| of which reading the directory | {read_time:.2f} | |")
        print(f"records proven: {sum(1 for r in report.records if r.ok):,}; files: {len(files):,}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
