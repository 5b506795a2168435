"""Media fetch throughput and memory, beside a plain httpx download loop over the same files.

    .venv/bin/python bench/media.py          # 300 images of 50 KB, 6 videos of 16 MB, 100 MB doc
    .venv/bin/python bench/media.py --quick  # 100 images, 2 videos, 30 MB document

The local Graph media server (``coexarchive.testing.graph``) runs in a process of its own so that
neither side shares its interpreter. Per pass and in the same run:

- floor: one ``httpx.Client``, sequential: resolve the id, download the URL, SHA-256 the bytes;
- ours: ``MediaFetcher`` (resolve, stream to a spool file while hashing, check Meta's sha256 and
  size, store content-addressed in an in-memory store, land a signed receipt) at concurrency 1
  and at the default 4.

Then the 100 MB document is fetched into SeaweedFS (multipart upload, 8 MB parts) in a child
process, whose peak RSS above its own baseline is reported (target: < 100 MB above baseline).
Timings are the best of ``--repeat`` passes, floor and ours interleaved. Exits 0; asserts only
that every variant got the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def _serve(conn: Any, items: list[tuple[str, str, int]]) -> None:
    from coexarchive._internal.clock import now_ms
    from coexarchive.testing.graph import GraphMediaServer

    server = GraphMediaServer().start()
    for media_id, mime, size in items:
        server.add(media_id, mime, created_ms=now_ms(), size=size)
    conn.send((server.base_url, server.token, server.version))
    conn.recv()  # until the parent is done
    server.stop()


def start_server(items: list[tuple[str, str, int]]) -> tuple[Any, Any, tuple[str, str, str]]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(child, items))
    process.start()
    return process, parent, parent.recv()


def floor(graph: tuple[str, str, str], ids: list[str]) -> tuple[float, dict[str, str]]:
    base, token, version = graph
    headers = {"Authorization": f"Bearer {token}"}
    digests = {}
    started = time.perf_counter()
    with httpx.Client(headers=headers) as client:
        for media_id in ids:
            url = client.get(f"{base}/{version}/{media_id}").json()["url"]
            digests[media_id] = hashlib.sha256(client.get(url).content).hexdigest()
    return time.perf_counter() - started, digests


def ours(
    graph: tuple[str, str, str], refs: list[Any], concurrency: int
) -> tuple[float, dict[str, str]]:
    from coexarchive.media.fetch import FetchOptions, MediaFetcher
    from coexarchive.media.graph import GraphClient, GraphConfig
    from coexarchive.retention import RetentionPolicy
    from coexarchive.store.memory import MemoryStore

    base, token, version = graph
    raw = MemoryStore()
    fetcher = MediaFetcher(
        MemoryStore(),
        raw,
        GraphClient(GraphConfig(base_url=base, token=token, version=version)),
        policy=RetentionPolicy.parse("GOVERNANCE:1"),
        receipt_secret=b"bench",
        options=FetchOptions(concurrency=concurrency, receipts_per_object=64),
    )
    started = time.perf_counter()
    summary = fetcher.run(refs)
    elapsed = time.perf_counter() - started
    assert summary.stored == len(refs), summary.lines()
    from coexarchive.raw import decode_landing

    digests = {}
    for key in raw.list("raw/"):
        for line in decode_landing(raw.get(key), key=key):
            import orjson

            assert line.delivery is not None
            receipt = orjson.loads(line.delivery.body)
            digests[receipt["media_id"]] = receipt["sha256"]
    return elapsed, digests


def refs_for(items: list[tuple[str, str, int]], msg_type: str) -> list[Any]:
    from coexarchive._internal.clock import now_ms
    from coexarchive.media.receipt import MediaRef

    return [
        MediaRef(
            chain_id="900000000000001",
            media_id=media_id,
            record_id=hashlib.sha256(media_id.encode()).hexdigest()[:32],
            wamid=None,
            kind="message",
            msg_type=msg_type,
            mime_type=mime,
            advertised_sha256=None,
            captured_time=now_ms(),
        )
        for media_id, mime, _size in items
    ]


def throughput(name: str, items: list[tuple[str, str, int]], msg_type: str, repeat: int) -> None:
    process, conn, graph = start_server(items)
    try:
        ids = [media_id for media_id, _, _ in items]
        refs = refs_for(items, msg_type)
        best: dict[str, float] = {}
        expected: dict[str, str] | None = None
        for _ in range(repeat):
            for label, run in (
                ("httpx loop (floor)", lambda: floor(graph, ids)),
                ("ours, concurrency 1", lambda: ours(graph, refs, 1)),
                ("ours, concurrency 4", lambda: ours(graph, refs, 4)),
            ):
                elapsed, digests = run()
                expected = expected or digests
                assert digests == expected, f"{label} got other bytes"
                best[label] = min(best.get(label, elapsed), elapsed)
        total = sum(size for _, _, size in items)
        print(f"\n{name}: {len(items)} files, {total / MB:,.1f} MB, best of {repeat}")
        base = best["httpx loop (floor)"]
        for label, elapsed in best.items():
            print(
                f"  {label:<22} {len(items) / elapsed:8.1f} files/s  {total / MB / elapsed:8.1f} "
                f"MB/s  {base / elapsed:5.2f}× floor"
            )
    finally:
        conn.send("done")
        process.join(timeout=10)


_CHILD = r"""
import sys, resource
from pathlib import Path

def hwm_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

base, token, version, endpoint, bucket, access, secret, media_id, size = sys.argv[1:]
import os
os.environ.update(
    AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1"
)
from coexarchive._internal.clock import now_ms
from coexarchive.media.fetch import FetchOptions, MediaFetcher
from coexarchive.media.graph import GraphClient, GraphConfig
from coexarchive.media.receipt import MediaRef
from coexarchive.retention import RetentionPolicy
from coexarchive.store.s3 import S3Store
store = S3Store(bucket, endpoint_url=endpoint, region_name="us-east-1")
store.exists("warm-up")
client = GraphClient(GraphConfig(base_url=base, token=token, version=version))
fetcher = MediaFetcher(
    store, store, client, policy=RetentionPolicy.parse("GOVERNANCE:1"), receipt_secret=b"bench",
    options=FetchOptions(concurrency=1),
)
ref = MediaRef(
    "900000000000001", media_id, "r" * 32, None, "message", "document", "application/pdf",
    None, now_ms(),
)
baseline = hwm_kb()
summary = fetcher.run([ref])
assert summary.stored == 1, summary.lines()
print(baseline, hwm_kb(), int(size))
"""


def peak_rss(doc_mb: int) -> None:
    from coexarchive.store.seaweed import EmbeddedS3

    size = doc_mb * MB
    items = [("doc-1", "application/pdf", size)]
    process, conn, graph = start_server(items)
    try:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedS3(Path(tmp)) as s3:
            s3.store("bench-media")
            answer = subprocess.run(
                [sys.executable, "-c", _CHILD, *graph, s3.endpoint_url, "bench-media",
                 s3.access_key, s3.secret_key, "doc-1", str(size)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
        baseline, peak, _ = map(int, answer.stdout.split())
        above = (peak - baseline) / 1024
        print(
            f"\npeak RSS fetching a {doc_mb} MB document into SeaweedFS: {above:.1f} MB above a "
            f"baseline of {baseline / 1024:.1f} MB (target < 100 MB)"
        )
    finally:
        conn.send("done")
        process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--doc-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.videos, args.doc_mb, args.repeat = 100, 2, 30, 2
    images = [(f"img-{i}", "image/jpeg", 50_000) for i in range(args.images)]
    videos = [(f"vid-{i}", "video/mp4", 16 * MB - 1024) for i in range(args.videos)]
    throughput("50 KB images", images, "image", args.repeat)
    throughput("16 MB videos", videos, "video", args.repeat)
    if not args.skip_rss:
        peak_rss(args.doc_mb)


if __name__ == "__main__":
    main()
