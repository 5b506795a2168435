"""A receiver that could not work refuses to start: one clear line, exit 2, no port opened.

Each test starts the real receiver process (``python -m coexarchive.receive.server``) with one
thing wrong. A bad receiver id used to be accepted: the receiver answered 200, every shipping
pass failed, and it retried until the spool was full.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

SECRET = "receiver-start-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(**changes: str | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COEXARCHIVE_", "AWS_"))
    }
    env |= {
        "COEXARCHIVE_APP_SECRETS": SECRET,
        "COEXARCHIVE_BUCKET": "receiver-start",
        # Nothing listens here: a receiver that starts only fails its uploads, in the background.
        "COEXARCHIVE_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start(args: list[str], env: dict[str, str], spool: Path) -> tuple[int, str, int]:
    """Run the receiver to its exit; (exit code, stderr, port it was told to use)."""
    port = free_port()
    command = [sys.executable, "-m", "coexarchive.receive.server", "--port", str(port)]
    if "--spool-dir" not in args:
        command += ["--spool-dir", str(spool)]
    result = subprocess.run(
        command + args, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stderr, port


def assert_refused(code: int, stderr: str, port: int, *expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("coexarchive receive: "), stderr
    assert "Traceback" not in stderr
    for part in expected:
        assert part in lines[0], lines[0]
    assert "receiver listening" not in stderr
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


@pytest.mark.parametrize(
    "receiver_id",
    ["RCV-A", "rcv_a", "-rcv", "rcv/../../x", "", "r" * 64, "rcv a"],
    ids=["upper", "underscore", "leading_dash", "path", "empty", "too_long", "space"],
)
def test_bad_receiver_id_is_refused_at_start(tmp_path: Path, receiver_id: str) -> None:
    code, stderr, port = start([f"--receiver-id={receiver_id}"], environment(), tmp_path / "spool")
    assert_refused(code, stderr, port, "--receiver-id", "a-z, 0-9 and '-'")
    assert not (tmp_path / "spool").exists(), "nothing may be created before the checks pass"


@pytest.mark.parametrize(
    "secrets", [None, "", " , ", "\n"], ids=["unset", "empty", "only_separators", "blank_line"]
)
def test_missing_or_empty_app_secret_is_refused_at_start(
    tmp_path: Path, secrets: str | None
) -> None:
    env = environment(COEXARCHIVE_APP_SECRETS=secrets)
    code, stderr, port = start(["--receiver-id", "rcv-a"], env, tmp_path / "spool")
    assert_refused(code, stderr, port, "no app secret", "COEXARCHIVE_APP_SECRETS")


def test_unreadable_secret_file_is_refused_at_start(tmp_path: Path) -> None:
    env = environment(COEXARCHIVE_APP_SECRETS=None)
    args = ["--receiver-id", "rcv-a", "--app-secret-file", str(tmp_path / "absent")]
    code, stderr, port = start(args, env, tmp_path / "spool")
    assert_refused(code, stderr, port, "cannot read app secret file")


def test_spool_under_a_file_is_refused_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    args = ["--receiver-id", "rcv-a", "--spool-dir", str(blocker / "spool")]
    code, stderr, port = start(args, environment(), tmp_path / "unused")
    assert_refused(code, stderr, port, "spool directory", "is not usable", "--spool-dir")


def test_spool_that_is_a_file_is_refused_at_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool-file"
    spool.write_text("x")
    args = ["--receiver-id", "rcv-a", "--spool-dir", str(spool)]
    code, stderr, port = start(args, environment(), tmp_path / "unused")
    assert_refused(code, stderr, port, "spool directory", "is not usable")


@pytest.mark.parametrize(
    "args",
    [["--segment-bytes", "0"], ["--spool-max-bytes", "-1"], ["--segment-age", "0"],
     ["--segment-bytes", "2048", "--spool-max-bytes", "1024"]],
    ids=["segment_bytes_zero", "negative_spool", "segment_age_zero", "segment_over_spool"],
)  # fmt: skip
def test_unworkable_spool_limits_are_refused_at_start(tmp_path: Path, args: list[str]) -> None:
    code, stderr, port = start(["--receiver-id", "rcv-a", *args], environment(), tmp_path / "s")
    assert_refused(code, stderr, port, args[0])


def test_a_good_configuration_starts_and_is_ready(tmp_path: Path) -> None:
    """The control: the same harness sees a receiver that does start."""
    port = free_port()
    command = [
        sys.executable, "-m", "coexarchive.receive.server", "--port", str(port),
        "--spool-dir", str(tmp_path / "spool"), "--receiver-id", "rcv-a",
    ]  # fmt: skip
    log = (tmp_path / "receiver.log").open("wb")
    process = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "receiver.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "receiver did not become ready"
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
