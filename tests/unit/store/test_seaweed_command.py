"""The weed mini command line: loopback only, explicit ports, no secrets in argv."""

from __future__ import annotations

from pathlib import Path

from coexarchive.store.seaweed import EmbeddedS3, find_weed, free_ports


def test_weed_binary_is_found() -> None:
    assert find_weed().name == "weed"


def test_free_ports_are_distinct() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12


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
