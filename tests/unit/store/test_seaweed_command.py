"""The weed mini command line: loopback only, explicit ports, no secrets in argv."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from coexarchive.errors import ConfigError
from coexarchive.store.seaweed import (
    EmbeddedS3,
    find_weed,
    free_port_block,
    port_layout,
    ports_in_use,
)
from coexarchive.store.seaweed_cli import default_buckets, default_port


def test_weed_binary_is_found() -> None:
    assert find_weed().name == "weed"


def test_port_layout_is_the_documented_one() -> None:
    layout = port_layout(8333)
    assert layout == {
        "s3.port": 8333,
        "s3.port.grpc": 18333,
        "master.port": 8334,
        "master.port.grpc": 18334,
        "volume.port": 8335,
        "volume.port.grpc": 18335,
        "filer.port": 8336,
        "filer.port.grpc": 18336,
        "admin.port": 8337,
        # SeaweedFS's worker dials admin port + 10000 whatever -admin.port.grpc says.
        "admin.port.grpc": 18337,
    }


@pytest.mark.parametrize("port", [80, 1023, 55532, 65535])
def test_ports_whose_layout_does_not_fit_are_refused(port: int) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        port_layout(port)


def test_free_port_block_is_wholly_free() -> None:
    base = free_port_block()
    assert ports_in_use(port_layout(base).values()) == []


def test_ports_in_use_sees_a_bound_port() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        assert ports_in_use([port]) == [port]


def test_default_port_and_buckets_come_from_the_environment() -> None:
    assert default_port({}) == 8333
    assert default_port({"COEXARCHIVE_S3_PORT": "9100"}) == 9100
    with pytest.raises(ConfigError, match="COEXARCHIVE_S3_PORT"):
        default_port({"COEXARCHIVE_S3_PORT": "eighty"})
    assert default_buckets({}) == ["coexarchive"]
    env = {"COEXARCHIVE_BUCKET": "arch", "COEXARCHIVE_RAW_BUCKET": "raw"}
    assert default_buckets(env) == ["arch", "raw"]


def test_a_put_to_a_missing_bucket_never_creates_it(tmp_path: Path) -> None:
    # SeaweedFS would create it without Object Lock; nothing could be locked in it.
    assert "-s3.autoCreateBucket=false" in EmbeddedS3(tmp_path).command()


def test_command_binds_loopback_with_telemetry_off(tmp_path: Path) -> None:
    args = EmbeddedS3(tmp_path).command()
    for flag in (
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ):
        assert flag in args
    assert f"-dir={tmp_path.resolve()}" in args


def test_every_listener_gets_an_explicit_distinct_port(tmp_path: Path) -> None:
    server = EmbeddedS3(tmp_path)
    args = server.command()
    wanted = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ]
    ports = {}
    for flag in wanted:
        [value] = [a.split("=", 1)[1] for a in args if a.startswith(f"-{flag}=")]
        ports[flag] = int(value)
    assert len(set(ports.values())) == len(wanted)
    assert ports["s3.port"] == server.s3_port
    assert server.endpoint_url == f"http://127.0.0.1:{server.s3_port}"


def test_secrets_stay_out_of_the_command_line(tmp_path: Path) -> None:
    server = EmbeddedS3(tmp_path, access_key="ak-visible-nowhere", secret_key="sk-visible-nowhere")
    joined = " ".join(server.command())
    assert "ak-visible-nowhere" not in joined
    assert "sk-visible-nowhere" not in joined
