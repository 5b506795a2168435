"""The embedded SeaweedFS server: loopback only, loud failures, a foreground command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coexarchive.errors import StorageError
from coexarchive.store import EmbeddedS3

pytestmark = pytest.mark.integration


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


def test_start_fails_loudly_when_the_s3_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedS3(tmp_path, s3_port=squatter.getsockname()[1])
        with pytest.raises(StorageError, match="weed"):
            server.start(timeout=8)
    assert not server.running


def test_foreground_command_prints_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "import sys; from coexarchive.store.seaweed import main; sys.exit(main(sys.argv[1:]))"
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
