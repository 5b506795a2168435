"""A restarting receiver's port listens before the slow part of start: senders wait, not refused.

After a crash, every sender refused while the port is shut backs off (Meta for minutes). The port
is bound once the receiver's own checks pass, before the imports, the archive's settings and spool
recovery; nothing is answered until the spool is recovered, and a start that fails closes it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coexarchive.errors import ConfigError
from coexarchive.receive import server
from coexarchive.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_port_listens_before_settings_and_spool_and_closes_when_start_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    listening_when_settings_read: list[bool] = []

    def from_env(env: object) -> Settings:
        listening_when_settings_read.append(not refused(port))
        raise ConfigError("settings refused")

    monkeypatch.setattr(Settings, "from_env", staticmethod(from_env))
    monkeypatch.setattr(server, "_configure_logging", lambda level: None)
    args = server.build_parser().parse_args(
        ["--port", str(port), "--spool-dir", str(tmp_path / "spool"), "--receiver-id", "rcv-a"]
    )
    with pytest.raises(ConfigError, match="settings refused"):
        server.run(args, env={"COEXARCHIVE_APP_SECRETS": "secret"})
    assert listening_when_settings_read == [True]
    assert refused(port), "a start that failed must not leave the port open"
    assert not (tmp_path / "spool" / "segments").exists(), "the spool is opened only after"


def test_receiver_checks_come_before_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(server, "_configure_logging", lambda level: None)
    monkeypatch.setattr(server, "listen", lambda host, port: pytest.fail("port bound"))
    args = server.build_parser().parse_args(
        ["--port", str(port), "--spool-dir", str(tmp_path / "spool"), "--receiver-id", "RCV"]
    )
    with pytest.raises(ConfigError, match="--receiver-id"):
        server.run(args, env={"COEXARCHIVE_APP_SECRETS": "secret"})


def test_a_port_in_use_is_refused_with_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            server.listen("127.0.0.1", port)


def test_listen_accepts_connections_before_anything_serves() -> None:
    sock = server.listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        # The kernel completes the handshake and queues it: the sender is not refused.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        sock.close()


# --- `coexarchive receive` imports only the receiver ----------------------------------------------


def test_receive_parser_is_the_full_parsers_receive_command() -> None:
    from coexarchive import cli

    full = next(p for p in cli.subcommands(cli.build_parser()) if p.prog == "coexarchive receive")
    alone = cli.receive_parser()
    assert alone.format_help() == full.format_help()
    argv = ["--port", "9", "--spool-dir", "s", "--receiver-id", "rcv-a", "--segment-age", "2"]
    assert vars(alone.parse_args(argv)) == {
        k: v for k, v in vars(full.parse_args(argv)).items() if k != "handler"
    }


def test_receive_command_imports_neither_the_archive_nor_the_pipelines() -> None:
    # A fresh interpreter: what `coexarchive receive` has imported when it calls the receiver.
    probe = (
        "import sys\n"
        "from coexarchive import cli\n"
        "from coexarchive.receive import server\n"
        "seen = []\n"
        "server.run = lambda args: seen.append(sorted(sys.modules)) or 0\n"
        "assert cli.main(['receive', '--port', '9']) == 0\n"
        "print('\\n'.join(seen[0]))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "coexarchive.receive.server" in loaded
    heavy = {"apache_beam", "pyarrow", "duckdb", "coexarchive.settings", "coexarchive.seal",
             "coexarchive.commands", "coexarchive.verify", "cryptography"}  # fmt: skip
    assert heavy & loaded == set()
