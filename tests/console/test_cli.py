"""``coexarchive console-user`` and the refusals of ``coexarchive console`` before it serves."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from coexarchive.cli import main
from coexarchive.console.accounts import AccountFile
from support.archive import signer


def add(path: Path, name: str, password: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(
        [
            "console-user",
            "add",
            name,
            "--role",
            "reviewer",
            "--role",
            "legal",
            "--password-stdin",
            "--accounts",
            str(path),
        ]
    )


def test_an_account_is_added_hashed_with_a_totp_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "accounts.json"
    assert add(path, "rita", "a long enough password", monkeypatch) == 0
    out = capsys.readouterr().out
    assert "otpauth://totp/coexarchive:rita?secret=" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"a long enough password" not in path.read_bytes()
    account = AccountFile(path).load()["rita"]
    assert account.password_hash.startswith("$argon2id$")
    assert account.roles == {"reviewer", "legal"}
    assert main(["console-user", "list", "--accounts", str(path)]) == 0
    assert "rita  legal, reviewer" in capsys.readouterr().out
    assert main(["console-user", "remove", "rita", "--accounts", str(path)]) == 0
    assert AccountFile(path).load() == {}


def test_short_passwords_and_duplicate_names_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "accounts.json"
    assert add(path, "rita", "short", monkeypatch) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert add(path, "rita", "a long enough password", monkeypatch) == 0
    assert add(path, "rita", "another long password", monkeypatch) == 2
    assert add(path, "bad name", "a long enough password", monkeypatch) == 2


def test_the_console_refuses_a_public_address_without_a_tls_proxy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["console", "--host", "0.0.0.0"]) == 2  # noqa: S104 - the refused case
    assert "TLS-terminating proxy" in capsys.readouterr().err


def test_the_console_refuses_to_start_without_a_trusted_service_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.txt"
    trust.write_text(signer().verifier_key() + "\n")
    monkeypatch.setenv("COEXARCHIVE_TRUST", str(trust))
    monkeypatch.delenv("COEXARCHIVE_CONSOLE_KEY", raising=False)
    assert main(["console"]) == 2
    assert "its own service key" in capsys.readouterr().err
    key = tmp_path / "console.key"
    signer("coexarchive.console", seed=b"console").to_file(key)
    assert main(["console", "--console-key", str(key)]) == 2
    assert "not in trust file" in capsys.readouterr().err
