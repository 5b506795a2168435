"""The embedded SeaweedFS server: loopback only, loud failures, a foreground command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from coexarchive.errors import ConfigError, StorageError
from coexarchive.store import EmbeddedS3, S3Store
from coexarchive.store.seaweed import free_port_block, port_layout

pytestmark = pytest.mark.integration


def fresh_bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A is LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def test_every_listener_is_on_loopback_with_an_assigned_port(seaweed: EmbeddedS3) -> None:
    assert seaweed._process is not None
    listeners = listening_addresses(seaweed._process.pid)
    loopback = "0100007F"  # 127.0.0.1 as /proc prints it
    assert listeners
    assert {address for address, _ in listeners} == {loopback}
    assigned = {*seaweed.ports.values(), seaweed.s3_port}
    assert {port for _, port in listeners} <= assigned


def test_logs_go_to_a_file(seaweed: EmbeddedS3) -> None:
    assert seaweed.log_path.parent == seaweed.data_dir
    assert seaweed.log_path.stat().st_size > 0


def test_every_listener_is_one_of_the_documented_ports(seaweed: EmbeddedS3) -> None:
    assert seaweed._process is not None
    wanted = set(port_layout(seaweed.s3_port).values())
    deadline = time.monotonic() + 10  # the admin server opens its ports after S3 answers
    while True:
        ports = {port for _, port in listening_addresses(seaweed._process.pid)}
        if ports == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ports == wanted


def test_no_helper_keeps_retrying_a_port_nobody_serves(seaweed: EmbeddedS3) -> None:
    # SeaweedFS's admin worker dials admin port + 10000; a layout that put the admin gRPC port
    # anywhere else left it retrying (and logging) forever.
    time.sleep(2)
    log = seaweed.log_path.read_text(errors="replace")
    assert "connection refused" not in log
    assert "Reconnection attempt" not in log


def test_start_fails_in_one_line_when_a_port_is_taken(tmp_path: Path) -> None:
    base = free_port_block()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 3))  # the filer's port
        squatter.listen()
        server = EmbeddedS3(tmp_path, s3_port=base)
        with pytest.raises(ConfigError) as caught:
            server.start(timeout=8)
    message = str(caught.value)
    assert f"port {base + 3} on 127.0.0.1 is in use" in message
    assert "--port" in message
    assert "\n" not in message
    assert not server.running


def test_a_put_to_a_missing_bucket_fails_and_creates_nothing(seaweed: EmbeddedS3) -> None:
    bucket = fresh_bucket_name("missing")
    store = S3Store(bucket, client=seaweed.client())
    with pytest.raises(StorageError) as caught:
        store.put("raw/x", b"evidence")
    assert f"bucket {bucket!r} does not exist" in str(caught.value)
    assert f"coexarchive s3 --bucket {bucket}" in str(caught.value)
    names = {b["Name"] for b in seaweed.client().list_buckets().get("Buckets", [])}
    assert bucket not in names


def test_foreground_command_prints_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port_block()
    code = (
        "import sys; from coexarchive.store.seaweed_cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = [sys.executable, "-c", code, "--data-dir", str(tmp_path), "--port", str(port)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    output = "".join(lines)
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in output
    assert "export AWS_ACCESS_KEY_ID=" in output
    assert (tmp_path / "weed.log").exists()


def run_s3(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coexarchive.cli", "s3", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_background_server_creates_its_locked_bucket_and_stops(tmp_path: Path) -> None:
    port = str(free_port_block())
    data = str(tmp_path / "s3")
    started = run_s3("--background", "--data-dir", data, "--port", port, "--bucket", "arch")
    try:
        assert started.returncode == 0, started.stderr
        assert "export COEXARCHIVE_BUCKET=arch" in started.stdout
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in started.stdout
        assert "with Object Lock and versioning" in started.stderr
        server = EmbeddedS3.attach(Path(data))
        assert server is not None and server.running
        client = server.client(track=False)
        lock = client.get_object_lock_configuration(Bucket="arch")["ObjectLockConfiguration"]
        assert lock["ObjectLockEnabled"] == "Enabled"
        assert client.get_bucket_versioning(Bucket="arch")["Status"] == "Enabled"
        client.close()
        # Asking again is harmless: it finds the running server and prints the same settings.
        again = run_s3("--background", "--data-dir", data, "--bucket", "arch")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert run_s3("--env", "--data-dir", data, "--bucket", "arch").stdout == started.stdout
        # A foreground server on the same data cannot start beside it.
        clash = run_s3("--data-dir", data, "--port", port)
        assert clash.returncode == 2
        assert clash.stderr.count("\n") == 1
        assert "already runs" in clash.stderr and "--stop" in clash.stderr
        assert server.running, "a refused second start must not disturb the first server"
    finally:
        stopped = run_s3("--stop", "--data-dir", data)
    assert stopped.returncode == 0, stopped.stderr
    assert EmbeddedS3.attach(Path(data)) is None
    assert run_s3("--stop", "--data-dir", data).returncode == 1


def test_an_unlocked_bucket_is_refused_in_one_line(seaweed: EmbeddedS3, tmp_path: Path) -> None:
    bucket = fresh_bucket_name("unlocked")
    client = seaweed.client()
    client.create_bucket(Bucket=bucket)  # what an older SeaweedFS auto-create left behind
    with pytest.raises(StorageError) as caught:
        seaweed.store(bucket)
    message = str(caught.value)
    assert f"bucket {bucket!r}" in message and "without Object Lock" in message
    assert "--bucket NAME" in message and "COEXARCHIVE_BUCKET" in message
    assert "\n" not in message


def test_a_stopped_server_can_start_again_at_once_on_its_ports(tmp_path: Path) -> None:
    # Its closed connections linger in TIME_WAIT; they must not count as "port in use".
    port = free_port_block()
    with EmbeddedS3(tmp_path / "one", s3_port=port) as server:
        server.store(fresh_bucket_name("tw")).put("k", b"v")
    with EmbeddedS3(tmp_path / "two", s3_port=port) as again:
        assert again.running
