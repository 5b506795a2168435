"""``ingest --follow`` as an operator runs it: a real process, a real S3, a real signal."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from coexarchive.commands import upload_raw
from coexarchive.raw import Delivery, encode_landing, landing_key, signature_header
from coexarchive.retention import RetentionPolicy
from coexarchive.store.s3 import S3Store
from support.archive import signer

T0 = 1_767_607_200  # 2026-01-05T10:00:00Z


def body(wamid: str) -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"800000000000001","changes":[{'
        '"field":"messages","value":{"messaging_product":"whatsapp","metadata":{'
        '"display_phone_number":"15550001111","phone_number_id":"900000000000001"},'
        '"contacts":[{"profile":{"name":"A"},"wa_id":"447700900123"}],"messages":[{'
        f'"from":"447700900123","id":"{wamid}","timestamp":"{T0}","type":"text",'
        '"text":{"body":"hello"}}]}}]}]}'
    ).encode()


def landing(seq: int, *bodies: bytes) -> tuple[str, bytes]:
    deliveries = [
        Delivery(
            "follow",
            seq + i,
            T0 * 1000,
            "webhook",
            {"x-hub-signature-256": signature_header(b"follow-secret", b)},
            b,
        )
        for i, b in enumerate(bodies)
    ]
    return landing_key("follow", seq, T0 * 1000), encode_landing(deliveries)


def lines_of(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return found, thread


def wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout}s; output so far: {''.join(seen)!r}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_follow_prints_a_line_per_pass_and_its_summary_when_signalled(
    signum: int, s3_store: S3Store, seaweed: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    objects = [landing(0, body("wamid.F1"), body("wamid.F2"), body("wamid.F1"))]
    upload_raw(s3_store, objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "COEXARCHIVE_BUCKET": s3_store.bucket,
        "COEXARCHIVE_ENDPOINT_URL": seaweed.endpoint_url,
        "COEXARCHIVE_APP_SECRETS": "follow-secret",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "coexarchive.cli",
        "ingest",
        "--follow",
        "--poll=0.5",
        f"--key={key_file}",
        "--retention=GOVERNANCE:1",
        "--no-progress",
    ]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        lines, pump = lines_of(process.stdout)
        seen: list[str] = []
        try:
            wait_for(lines, "pass 1:", seen, timeout=120)
            process.send_signal(signum)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        err = process.stderr.read()
        pump.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    pass_line = next(line for line in seen if "pass 1:" in line)
    assert "1 object(s)" in pass_line and "2 sealed" in pass_line
    assert "1 duplicate" in pass_line
    assert code == 0, err
    out = "".join(seen)
    assert "stopped: 1 pass(es), 0 failed; 1 object(s), 3 event(s): 2 sealed" in out, out
    assert "p95 200→sealed" in out
    assert "Traceback" not in err, err
    assert signal.Signals(signum).name in err
