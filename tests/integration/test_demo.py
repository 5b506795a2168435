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
    # The demo archive seals personal content encrypted, yet every attachment is re-hashed.
    ok = re.search(
        r"OK: 4 chain\(s\), [\d,]+ rows re-hashed, ([\d,]+) attachments re-hashed, "
        r"every check held",
        second.stdout,
    )
    assert ok is not None and int(ok.group(1).replace(",", "")) > 0, second.stdout
    assert "personal content is sealed encrypted" in first.stdout

    # Someone with write access puts altered bytes over one attachment (a new object version
    # under Object Lock): verify, run as the user would without data keys, names it.
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    bucket = env["COEXARCHIVE_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="media/v1/")
    key = sorted(item["Key"] for item in listed["Contents"])[0]
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))
    no_keys = {k: v for k, v in env.items() if k != "COEXARCHIVE_DATA_KEYS"}
    tampered = cli("verify", env=no_keys, cwd=demo_dir.parent)
    assert tampered.returncode != 0
    assert (
        key in tampered.stdout + tampered.stderr and "altered" in tampered.stdout + tampered.stderr
    )

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
