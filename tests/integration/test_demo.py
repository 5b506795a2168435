"""``coexarchive demo --keep`` leaves a usable archive, and a second run still verifies it.

Runs the CLI as a user would (subprocesses), on a small simulation and a port block of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coexarchive.store.seaweed import EmbeddedS3, free_port_block

pytestmark = pytest.mark.integration


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coexarchive.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "demo"
    yield data
    cli("demo", "--stop", "--data-dir", str(data), cwd=tmp_path)


def test_kept_demo_prints_its_settings_and_survives_reports(demo_dir: Path) -> None:
    port = free_port_block()
    small = ["--data-dir", str(demo_dir), "--days", "2", "--customers", "5"]
    first = cli("demo", "--keep", "--port", str(port), *small, cwd=demo_dir.parent)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "bucket:    coexarchive-demo" in out
    assert f"endpoint:  http://127.0.0.1:{port}" in out
    keys = demo_dir.resolve() / "keys"
    for name in ("signing.key", "audit.key", "trust.txt"):
        assert str(keys / name) in out
    for variable in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "COEXARCHIVE_BUCKET",
        "COEXARCHIVE_SIGNING_KEY",
        "COEXARCHIVE_AUDIT_KEY",
        "COEXARCHIVE_TRUST",
        "COEXARCHIVE_APP_SECRETS",
    ):
        assert f"export {variable}=" in out
    tries = re.findall(r"^  (coexarchive (?:report|export) .*?)\s+#", out, re.MULTILINE)
    assert [t.split()[1] for t in tries] == ["report", "report", "export"]
    server = EmbeddedS3.attach(demo_dir / "s3")
    assert server is not None and server.running, "--keep must leave the server running"

    # The user exports what the demo printed and runs the three commands it suggested.
    exported = cli("demo", "--env", *small[:2], cwd=demo_dir.parent)
    assert exported.returncode == 0, exported.stderr
    env = dict(os.environ)
    for line in exported.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    for command in tries:
        args = command.split()[1:]
        ran = cli(*args, env=env, cwd=demo_dir.parent)
        assert ran.returncode == 0, f"{command}: {ran.stderr}"
    assert (demo_dir / "bundle.zip").exists()

    # A second demo reuses the running server and verifies everything, access log included.
    second = cli("demo", "--keep", *small, cwd=demo_dir.parent)
    assert second.returncode == 0, second.stderr
    assert "using the demo's S3 server" in second.stdout
    assert re.search(r"OK: 4 chain\(s\), [\d,]+ rows re-hashed, every check held", second.stdout)

    stopped = cli("demo", "--stop", *small[:2], cwd=demo_dir.parent)
    assert stopped.returncode == 0, stopped.stderr
    assert not server.running
    assert EmbeddedS3.attach(demo_dir / "s3") is None


def test_demo_without_keep_stops_its_server(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    port = free_port_block()
    args = ["--data-dir", str(data), "--port", str(port), "--days", "1", "--customers", "3"]
    ran = cli("demo", *args, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "--keep" in ran.stdout
    assert EmbeddedS3.attach(data / "s3") is None


def test_demo_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    import socket

    port = free_port_block()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        ran = cli("demo", "--data-dir", str(tmp_path / "d"), "--port", str(port), cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and f"port {port}" in ran.stderr
    assert "--port" in ran.stderr
