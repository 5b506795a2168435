"""The README's "Using it" block runs as printed, line by line, on a fresh directory.

The block is taken from README.md and run by bash with ``set -e`` in an empty directory, with the
installed ``coexarchive`` first on the PATH and no COEXARCHIVE_/AWS_ settings inherited. Two things
are adjusted for a shared test machine, and only through documented knobs: COEXARCHIVE_S3_PORT
moves the S3 server off 8333, and the receiver's ``--port 8080`` becomes a free port.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coexarchive.store.seaweed import free_port_block

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT = 420  # seconds for the whole block; it takes well under a minute on an idle machine


def using_it_block() -> str:
    text = README.read_text()
    section = text[text.index("\n## Using it\n") :]
    section = section[: section.index("\n## ", 1)]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README's Using it section has no ```sh block"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_block_uses_only_real_commands() -> None:
    block = using_it_block()
    assert "[" not in block.replace('"$(', ""), "placeholders like [--flag] cannot run as printed"
    for line in block.splitlines():
        command = line.split("#", 1)[0].strip()
        if command and not command.startswith("export "):
            assert "coexarchive" in command, line


def test_readme_using_it_runs_as_printed(tmp_path: Path) -> None:
    block = using_it_block()
    assert "--port 8080" in block
    receiver_port = free_port()
    script = "set -e\ntrap 'echo \"README line failed: $BASH_COMMAND\" >&2' ERR\n" + block.replace(
        "--port 8080", f"--port {receiver_port}"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COEXARCHIVE_", "AWS_")) and k != "PYTEST_CURRENT_TEST"
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # A fresh user: nothing the block does may reach the real home directory's keys.
    env["HOME"] = str(tmp_path / "user")
    env.pop("XDG_CONFIG_HOME", None)
    env["COEXARCHIVE_S3_PORT"] = str(free_port_block())
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the README block did not finish in {TIMEOUT}s:\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        # Whatever happened, leave no server behind.
        subprocess.run(
            [sys.executable, "-m", "coexarchive.cli", "s3", "--data-dir", "var/s3", "--stop"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}"
    assert "Traceback" not in err, err
    # Each step did what its comment says.
    assert (tmp_path / "home" / "signing.key").exists()
    assert not (tmp_path / "user/.config/coexarchive").exists(), "keys outside COEXARCHIVE_HOME"
    assert '"receiver listening"' in err
    assert "landed them in s3://coexarchive/raw/" in out
    assert re.search(r"^900000000000001\s+\d+\s+[\d,]+\s", out, re.MULTILINE), "chains"
    assert out.count("every check held") == 2  # verify, and verify --expect-head
    assert (tmp_path / "head.note").exists()
    assert "logged as access-log" in out
    assert "legal hold placed" in out
    assert (tmp_path / "bundle.zip").exists()
    assert "OK: every file, record, proof and checkpoint verified" in out
    assert "stopped the embedded S3 server" in err
