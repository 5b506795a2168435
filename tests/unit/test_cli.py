from __future__ import annotations

import pytest

from coexarchive.cli import build_parser, main, parse_time


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    commands = (
        "keygen",
        "verify",
        "head",
        "simulate",
        "ingest",
        "redrive",
        "demo",
        "s3",
        "receive",
    )
    for command in (
        *commands,
        "consent",
        "templates",
        "reassess",
        "hold",
        "export",
        "verify-bundle",
    ):
        assert command in out


def test_parse_time_is_utc_unless_told() -> None:
    assert parse_time("2026-01-05") == 1_767_571_200_000
    assert parse_time("2026-01-05T01:00:00+01:00") == 1_767_571_200_000
    assert parse_time("2026-01-05T00:00:00Z") == 1_767_571_200_000


def test_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["verify", "--since", "yesterday"])
    assert exit_info.value.code == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_missing_trust_file_is_a_clear_error(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COEXARCHIVE_TRUST", "/nonexistent/trust.txt")
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["verify"]) == 2
    err = capsys.readouterr().err
    assert "trust file" in err and "Traceback" not in err


def test_keygen_writes_key_and_trust(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from coexarchive.seal.keys import Ed25519Signer, TrustStore

    base = Path(str(tmp_path))
    assert (
        main(
            [
                "keygen",
                "--name",
                "firm.example",
                "--key",
                str(base / "k"),
                "--trust",
                str(base / "t"),
            ]
        )
        == 0
    )
    signer = Ed25519Signer.from_file(base / "k")
    assert TrustStore.from_file(base / "t").find(signer.name, signer.key_id) is not None
    assert (base / "k").stat().st_mode & 0o077 == 0
    assert main(["keygen", "--key", str(base / "k"), "--trust", str(base / "t")]) == 2
