"""Receiver benchmark: durable POSTs/s and latency percentiles on loopback, with a same-run floor.

The floor is a plain Starlette + uvicorn endpoint that reads the body, checks the HMAC, appends it
to a file with group commit (one fsync per batch) and answers 200 — DESIGN §7's reference. The
receiver under test is coexarchive's app with its spool and a shipper (to a store that discards),
so the figures include landing-format encoding and zstd in the shipper's encoder process.

    .venv/bin/python bench/receiver.py [--passes 3] [--duration 10] [--connections 64]

Needs ``wrk`` (Debian: ``apt-get install wrk``). Servers run one uvicorn worker each, in turn, on
127.0.0.1; the load generator shares the machine's cores, as in DESIGN's floor measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

SECRET = b"bench-app-secret"
BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"800000000000001","changes":[{"field":'
    b'"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":'
    b'"15550001111","phone_number_id":"900000000000001"},"messages":[{"from":"447700900123",'
    b'"id":"wamid.BENCH","timestamp":"1767607200","type":"text","text":{"body":"'
    + b"x" * 1700
    + b'"}}]}}]}]}'
)
SIGNATURE = "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()


# --- servers (run in a subprocess each) ----------------------------------------------------------


def floor_app(directory: Path) -> Any:
    """The same-run floor: HMAC check + group-commit fsync + 200, nothing else."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    fd = os.open(directory / "floor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    cond = threading.Condition()
    pending: list[tuple[bytes, Any, Any]] = []

    def writer() -> None:
        while True:
            with cond:
                while not pending:
                    cond.wait()
                batch = pending[:]
                pending.clear()
            os.write(fd, b"".join(item[0] for item in batch))
            os.fdatasync(fd)
            for _, loop, future in batch:
                loop.call_soon_threadsafe(future.set_result, None)

    threading.Thread(target=writer, daemon=True).start()

    async def webhook(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return Response(status_code=403)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with cond:
            pending.append((len(body).to_bytes(4, "little") + body, loop, future))
            cond.notify()
        await future
        return Response(b"", status_code=200)

    async def healthz(request: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz)]
    )


class DiscardStore:
    """An object store that accepts every put (the shipper still encodes and compresses)."""

    def put(self, key: str, data: bytes, **options: Any) -> bool:
        return True


def ours_running(directory: Path) -> Any:
    from coexarchive.receive.app import ReceiverConfig
    from coexarchive.receive.server import start
    from coexarchive.receive.spool import Spool

    spool = Spool(directory / "spool", "rcv-bench", max_bytes=8 << 30)
    config = ReceiverConfig(app_secrets=(b"rotated-out-secret", SECRET))
    return start(config, spool, DiscardStore(), lambda key: None)  # type: ignore[arg-type]


class Diagnosis:
    """Where a server's tail comes from: event-loop lag and the cyclic collector's pauses."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_started = 0.0

    def install_gc(self) -> None:
        import gc

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_started = time.perf_counter()
            else:
                self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_started))

        gc.callbacks.append(callback)

    async def watch_loop(self, server: Any, kind: str) -> None:
        # A 1 ms sleep that wakes late measures how long the loop could not run a callback.
        while not server.should_exit:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append(time.perf_counter() - started - 0.001)
        # uvicorn re-raises the SIGTERM once it has stopped: report before that.
        print(self.report(kind), file=sys.stderr, flush=True)

    def report(self, kind: str) -> str:
        lags = sorted(self.lags) or [0.0]
        pct = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000  # noqa: E731
        by_gen: dict[int, list[float]] = {}
        for generation, seconds in self.gc_pauses:
            by_gen.setdefault(generation, []).append(seconds * 1000)
        gcs = "  ".join(
            f"gen{g} {len(v)}× max {max(v):.1f} ms total {sum(v):.0f} ms"
            for g, v in sorted(by_gen.items())
        )
        return (
            f"  [{kind}] loop lag p50 {pct(0.5):.2f} p99 {pct(0.99):.2f} p99.9 {pct(0.999):.2f}"
            f" max {lags[-1] * 1000:.1f} ms over {len(lags)} ticks; gc {gcs or 'none'}"
        )


def serve(kind: str, port: int, directory: Path, diagnose: bool = False) -> None:
    import uvicorn

    if kind == "floor":
        # The floor imports nothing of coexarchive: the collector walks only what a plain
        # Starlette + uvicorn server holds (with coexarchive's imports, boto3's among them, each
        # full collection walked ~40,000 objects more). The settings are the receiver's.
        config = uvicorn.Config(
            floor_app(directory), host="127.0.0.1", port=port, access_log=False,
            log_config=None, server_header=False, proxy_headers=False, lifespan="off",
            ws="none", timeout_keep_alive=30,
        )  # fmt: skip
        running = None
    else:
        from coexarchive.receive.server import uvicorn_config

        running = ours_running(directory)
        config = uvicorn_config(running.app, port=port)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    # As the receiver's server does: uvicorn re-raises SIGTERM once stopped; exit through
    # ``finally`` so that the receiver's shipper (and its encoder process) stop cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        if not diagnose:
            server.run()
            return
        diagnosis = Diagnosis()
        diagnosis.install_gc()

        async def run() -> None:
            watcher = asyncio.ensure_future(diagnosis.watch_loop(server, kind))
            await server.serve()
            await watcher

        asyncio.run(run())
    finally:
        if running is not None:
            running.stop(drain_for=0)


# --- load ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wrk_script(directory: Path) -> Path:
    path = directory / "post.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{BODY.decode()}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Hub-Signature-256"] = "{SIGNATURE}"\n'
    )
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}  # type: ignore[index]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        result[f"p{pct}"] = float(match[1]) * _UNITS[match[2]]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non2xx"] = float(bad[1]) if bad else 0.0
    errors = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = 0.0 if errors is None else 1.0
    return result


def measure(kind: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", kind, "--port", str(port), "--dir", str(directory)]
        + (["--diagnose"] if args.diagnose else []),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)  # noqa: S310 (loopback)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        output = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
             "--latency", "-s", str(wrk_script(directory)), url + "/webhook"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return parse_wrk(output)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("kind", choices=["floor", "ours"])
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--dir", type=Path, required=True)
    serve_parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="servers print event-loop lag and cyclic-GC pauses when they stop (adds a 1 ms timer)",
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.kind, args.port, args.dir, args.diagnose)
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {"floor": [], "ours": []}
    print(f"body {len(BODY)} B, wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"{args.passes} passes, {os.cpu_count()} cores")  # fmt: skip
    for n in range(args.passes):
        # Alternate the order so that drift in the machine's speed hits both alike.
        for kind in ("floor", "ours") if n % 2 == 0 else ("ours", "floor"):
            figures = measure(kind, args, args.work_dir)
            results[kind].append(figures)
            print(f"pass {n + 1} {kind:<5} {figures['rps']:>8.0f}/s  p50 {figures['p50']:6.2f} ms"
                  f"  p90 {figures['p90']:6.2f} ms  p99 {figures['p99']:6.2f} ms"
                  f"  non-2xx {figures['non2xx']:.0f}", flush=True)  # fmt: skip
    print()
    for kind in ("floor", "ours"):
        rps = [r["rps"] for r in results[kind]]
        p99 = [r["p99"] for r in results[kind]]
        print(
            f"{kind:<5} median {statistics.median(rps):>8.0f}/s"
            f" (range {min(rps):.0f}–{max(rps):.0f})  p99 median {statistics.median(p99):.2f} ms"
            f" (range {min(p99):.2f}–{max(p99):.2f})"
        )
    ratios = [o["rps"] / f["rps"] for o, f in zip(results["ours"], results["floor"], strict=True)]
    print(f"ratio ours/floor per pass: {', '.join(f'{r:.2f}' for r in ratios)}"
          f"  (median {statistics.median(ratios):.2f}; target ≥ 0.70)")  # fmt: skip
    tails = [o["p99"] / f["p99"] for o, f in zip(results["ours"], results["floor"], strict=True)]
    print(f"p99 ours/floor per pass: {', '.join(f'{r:.2f}' for r in tails)}"
          f"  (median {statistics.median(tails):.2f}; target ≤ 1.50)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
