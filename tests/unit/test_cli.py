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


def test_simulate_adds_traffic_with_another_seed_beside_existing_traffic(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from moto import mock_aws

    from coexarchive.store.s3 import S3Store, create_locked_bucket

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "COEXARCHIVE_BUCKET": "simulate-seeds",
        "COEXARCHIVE_RETENTION": "GOVERNANCE:1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("COEXARCHIVE_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    small = ["simulate", "--customers", "2", "--days", "1"]
    with mock_aws():
        create_locked_bucket(boto3.client("s3", region_name="us-east-1"), "simulate-seeds")
        store = S3Store("simulate-seeds", region_name="us-east-1")
        assert main(small) == 0
        first = set(store.list("raw/"))
        assert main([*small, "--seed", "1"]) == 0
        both = set(store.list("raw/"))
        assert first < both
        # The same seed again lands the same objects: nothing new, nothing refused.
        assert main([*small, "--seed", "1"]) == 0
        assert set(store.list("raw/")) == both
    assert "error" not in capsys.readouterr().err


def test_no_runtime_module_imports_the_test_tooling() -> None:
    """The simulator (and its published demo secret) stays out of everything but `simulate`."""
    import ast
    from pathlib import Path

    import coexarchive

    root = Path(coexarchive.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("testing/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                # The simulate and demo commands, and the demo's helpers, use it on purpose.
                allowed = (relative == "commands.py" and node.name == "cmd_simulate") or (
                    relative in ("commands.py", "demo.py")
                    and (
                        node.name == "register"
                        or "demo" in node.name
                        or node.name == "environment"  # DemoPaths.environment: the demo's shell
                    )
                )
                for inner in ast.walk(node):
                    if _imports_testing(inner) and not allowed:
                        offenders.append(f"{relative}:{inner.lineno}")
        for node in tree.body:
            if _imports_testing(node):
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders, offenders


def _imports_testing(node: object) -> bool:
    import ast

    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("coexarchive.testing")
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("coexarchive.testing") for alias in node.names)
    return False
