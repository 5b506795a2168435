"""The receiver as a process against SeaweedFS: SIGKILL under load, S3 down, continuous ingest.

Every delivery answered 200 must be in ``raw/`` exactly once after recovery, and in the sealed
archive exactly once after ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive.raw import Delivery, DeliveryAuth, decode_landing, signature_header
from coexarchive.receive.continuous import ContinuousIngest, pipeline_runner
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store.s3 import S3Store
from coexarchive.verify import chains_in
from pipelines.ingest import SealSpec, StoreSpec, run_pipeline
from support.archive import signer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = b"crash-test-app-secret"
CHAIN = "900000000000001"
T0 = 1_767_607_200


def message_body(wamid: str) -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"800000000000001","changes":[{'
        '"field":"messages","value":{"messaging_product":"whatsapp","metadata":{'
        f'"display_phone_number":"15550001111","phone_number_id":"{CHAIN}"}},'
        '"contacts":[{"profile":{"name":"A"},"wa_id":"447700900123"}],"messages":[{'
        f'"from":"447700900123","id":"{wamid}","timestamp":"{T0}","type":"text",'
        '"text":{"body":"héllo ✓"}}]}}]}]}'
    ).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ReceiverProcess:
    """``python -m coexarchive.receive.server`` on loopback, killable and restartable."""

    def __init__(self, spool_dir: Path, endpoint_url: str, bucket: str, seaweed: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spool_dir = spool_dir
        self.env = os.environ | {
            "COEXARCHIVE_APP_SECRETS": "old-secret," + SECRET.decode(),
            "COEXARCHIVE_BUCKET": bucket,
            "COEXARCHIVE_ENDPOINT_URL": endpoint_url,
            "COEXARCHIVE_RETENTION": "GOVERNANCE:1",
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.env.pop("AWS_ENDPOINT_URL", None)
        self.log = spool_dir.parent / "receiver.log"
        self.process: subprocess.Popen[bytes] | None = None
        # (spawned, first answer on the port, ready), monotonic seconds, one per start.
        self.starts: list[tuple[float, float, float]] = []

    def start(self) -> None:
        command = [
            sys.executable, "-m", "coexarchive.receive.server", "--port", str(self.port),
            "--spool-dir", str(self.spool_dir), "--receiver-id", "rcv-crash",
            "--segment-age", "0.5", "--segment-bytes", "65536", "--ship-max-backoff", "1",
        ]  # fmt: skip
        spawned = time.monotonic()
        answered = 0.0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stderr=log, stdout=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                status = httpx.get(self.url + "/readyz", timeout=1).status_code
                answered = answered or time.monotonic()
                if status == 200:
                    self.starts.append((spawned, answered, time.monotonic()))
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("receiver did not become ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def spooled(self) -> int:
        return len(list((self.spool_dir / "segments").glob("*.seg")))


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "signing.key"
    signer().to_file(path)
    return str(path)


@pytest.fixture
def aws_env(seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def receiver(tmp_path: Path, s3_store: S3Store, seaweed: Any) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path / "spool", seaweed.endpoint_url, s3_store.bucket, seaweed)
    process.start()
    yield process
    process.stop()


async def post_all(
    url: str,
    bodies: list[bytes],
    on_progress: Any = None,
    concurrency: int = 32,
    trace: list[tuple[float, float, int, str]] | None = None,
) -> dict[bytes, int]:
    """Post each body once (no retry: a retried body would land twice by design).

    ``trace`` gets ``(sent, answered, status, error class)`` per post, monotonic seconds.
    """
    outcome: dict[bytes, int] = {}
    queue = list(reversed(bodies))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            headers = {"x-hub-signature-256": signature_header(SECRET, body)}
            sent = time.monotonic()
            error = ""
            try:
                reply = await client.post(url + "/webhook", content=body, headers=headers)
                outcome[body] = reply.status_code
            except httpx.TransportError as exc:
                outcome[body] = 0
                error = type(exc).__name__
            if trace is not None:
                trace.append((sent, time.monotonic(), outcome[body], error))
            if error:
                await asyncio.sleep(0.5)  # the receiver is down: pause, as a sender backs off
            if on_progress is not None:
                await on_progress(len(outcome))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return outcome


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def landed(store: S3Store) -> list[Delivery]:
    deliveries: list[Delivery] = []
    for key in store.list("raw/"):
        for line in decode_landing(store.get(key), key=key):
            assert line.delivery is not None, line.error
            deliveries.append(line.delivery)
    return deliveries


def sealed_wamids(store: S3Store) -> Counter[str]:
    wamids: Counter[str] = Counter()
    for chain in chains_in(store):
        for key in list_manifests(store, chain):
            manifest = Manifest.from_bytes(store.get(key))
            table = read_segment(store.get(manifest.segment.key))
            wamids.update(w for w in table.column("wamid").to_pylist() if w)
    return wamids


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def restart_report(
    kills: list[float],
    starts: list[tuple[float, float, float]],
    trace: list[tuple[float, float, int, str]],
    origin: float,
) -> str:
    """Per kill: how long the port stayed shut and how many posts failed in and around it."""
    lines = [f"load average {' '.join(f'{n:.1f}' for n in os.getloadavg())}"]
    down = []
    for killed, (spawned, answered, ready) in zip(kills, starts, strict=True):
        down.append((killed, ready))
        failed = Counter(
            error or str(status)
            for sent, _, status, error in trace
            if status != 200 and killed - 2 <= sent <= ready
        )
        lines.append(
            f"kill at {killed - origin:.2f}s: respawned +{spawned - killed:.2f}s, port answers "
            f"+{answered - killed:.2f}s, ready +{ready - killed:.2f}s; failed around it: "
            + ", ".join(f"{n} {what}" for what, n in failed.most_common())
        )
    outside = [
        (sent, error or str(status))
        for sent, _, status, error in trace
        if status != 200 and not any(k - 2 <= sent <= r for k, r in down)
    ]
    elsewhere = Counter(what for _, what in outside)
    slow = sorted(answered - sent for sent, answered, status, _ in trace if status == 200)
    lines.append(
        f"failed elsewhere: {dict(elsewhere) or 'none'}"
        + "".join(f", one sent at {sent - origin:.2f}s" for sent, _ in outside[:6])
        + "; "
        f"200s: {len(slow)}, slowest {slow[-1] if slow else 0:.2f}s"
    )
    return "\n".join(lines)


def test_sigkill_under_load_loses_and_duplicates_nothing(
    receiver: ReceiverProcess, s3_store: S3Store, seaweed: Any, key_file: str, aws_env: None
) -> None:
    bodies = [message_body(f"wamid.crash.{n:05d}") for n in range(2_000)]
    kill_at = [500, 1_000, 1_500]
    kills: list[float] = []
    restarting = False
    trace: list[tuple[float, float, int, str]] = []

    async def maybe_kill(done: int) -> None:
        nonlocal restarting
        if kill_at and done >= kill_at[0] and not restarting:
            kill_at.pop(0)
            restarting = True
            receiver.kill()
            kills.append(time.monotonic())
            await asyncio.sleep(0.2)  # some requests fail while it is down, as in real life
            await asyncio.to_thread(receiver.start)
            restarting = False

    started = time.monotonic()
    outcome = asyncio.run(post_all(receiver.url, bodies, maybe_kill, trace=trace))
    elapsed = time.monotonic() - started
    accepted = {digest(b) for b, status in outcome.items() if status == 200}
    refused = {digest(b) for b, status in outcome.items() if status != 200}
    report = restart_report(kills, receiver.starts[1:], trace, started)
    print("\n" + report)
    assert len(kills) == 3
    assert len(accepted) >= 1_500, f"only {len(accepted)} of 2000 answered 200\n{report}"

    # Everything spooled is shipped; nothing waits in the spool.
    wait_until(lambda: receiver.spooled() == 0, 60, "the spool to drain")
    deliveries = landed(s3_store)
    counts = Counter(hashlib.sha256(d.body).hexdigest() for d in deliveries)
    assert all(counts[d] == 1 for d in accepted), "a 200'd delivery is missing or duplicated"
    assert all(counts[d] <= 1 for d in refused)
    assert set(counts) <= accepted | refused
    seqs = sorted(d.seq for d in deliveries)
    assert seqs == list(range(len(seqs))), "seqs must be unique and contiguous across restarts"
    print(
        f"\ncrash test: {len(bodies)} deliveries, {len(kills)} SIGKILLs, "
        f"{len(accepted)} answered 200, {len(refused)} refused or cut off "
        f"({len(deliveries) - len(accepted)} of those landed), "
        f"{len(list(s3_store.list('raw/')))} raw objects, {elapsed:.1f}s"
    )

    spec = StoreSpec(s3_store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    seal = SealSpec(key_file, "coexarchive.test", "GOVERNANCE:1")
    keys = sorted(s3_store.list("raw/"))
    auth = DeliveryAuth((b"old-secret", SECRET))
    run_pipeline(keys, spec, seal, PipelineOptions(["--runner=FnApiRunner"]), auth=auth)
    wamids = sealed_wamids(s3_store)
    wamid_of = {
        digest(message_body(f"wamid.crash.{n:05d}")): f"wamid.crash.{n:05d}" for n in range(2_000)
    }
    for body_digest in accepted:
        assert wamids[wamid_of[body_digest]] == 1, wamid_of[body_digest]
    assert max(wamids.values()) == 1


class Switch:
    """A TCP forwarder to S3 that can be cut, as a network partition would."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.up = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.open += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for sock in self.open:
                sock.close()
            self.open.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_s3_down_spool_holds_everything_and_shipping_resumes(
    tmp_path: Path, s3_store: S3Store, seaweed: Any
) -> None:
    host, port = seaweed.endpoint_url.removeprefix("http://").split(":")
    switch = Switch((host, int(port)))
    process = ReceiverProcess(tmp_path / "spool", switch.url, s3_store.bucket, seaweed)
    try:
        switch.cut()
        process.start()  # starts fine with S3 unreachable: the spool is what a 200 needs
        bodies = [message_body(f"wamid.down.{n}") for n in range(300)]
        outcome = asyncio.run(post_all(process.url, bodies[:200]))
        assert set(outcome.values()) == {200}
        time.sleep(1.5)
        assert list(s3_store.list("raw/")) == []
        assert process.spooled() >= 1
        metrics = httpx.get(process.url + "/metrics").text
        assert "coexarchive_ship_failures 0\n" not in metrics
        # A crash while S3 is down loses nothing either.
        process.kill()
        process.start()
        outcome |= asyncio.run(post_all(process.url, bodies[200:]))
        assert set(outcome.values()) == {200}
        switch.up = True
        wait_until(lambda: process.spooled() == 0, 60, "shipping to resume")
        counts = Counter(d.body for d in landed(s3_store))
        assert counts == Counter(bodies)
    finally:
        process.stop()
        switch.close()


def test_continuous_ingest_seals_within_a_bounded_delay_and_never_reprocesses(
    receiver: ReceiverProcess, s3_store: S3Store, seaweed: Any, key_file: str, aws_env: None
) -> None:
    spec = StoreSpec(s3_store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1")
    seal = SealSpec(key_file, "coexarchive.test", "GOVERNANCE:1")
    follower = ContinuousIngest(
        s3_store, pipeline_runner(spec, seal, auth=DeliveryAuth((b"old-secret", SECRET))), poll=1.0
    )
    stop = threading.Event()
    thread = threading.Thread(target=follower.follow, args=(stop,), daemon=True)
    thread.start()
    bodies = [message_body(f"wamid.follow.{n}") for n in range(600)]
    for wave in range(3):  # traffic arriving while the follower runs
        outcome = asyncio.run(post_all(receiver.url, bodies[wave * 200 : (wave + 1) * 200]))
        assert set(outcome.values()) == {200}
        time.sleep(2)
    wait_until(lambda: sum(sealed_wamids(s3_store).values()) >= 600, 90, "sealing")
    stop.set()
    thread.join(60)
    assert sealed_wamids(s3_store) == Counter(f"wamid.follow.{n}" for n in range(600))
    p95 = follower.p95_ms()
    assert p95 is not None and p95 < 60_000
    print(f"\ncontinuous ingest: {len(follower.latencies)} deliveries, p95 200→sealed {p95} ms")

    # A restart reads the ledger: nothing old is processed again.
    again = ContinuousIngest(s3_store, lambda keys: pytest.fail(f"re-processed {keys}"))
    assert again.pending() == []
    assert again.step().keys == []
