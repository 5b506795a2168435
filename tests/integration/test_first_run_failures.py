"""A first run that goes wrong says, in one line, what went wrong and what to run next."""

from __future__ import annotations

from pathlib import Path

import pytest

from coexarchive.cli import main
from coexarchive.store import EmbeddedS3

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty directory and no archive settings, as on a machine that never ran coexarchive."""
    import os

    for name in list(os.environ):
        if name.startswith(("COEXARCHIVE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # no keys from a real config home
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("coexarchive: error: "), err
    assert err.count("\n") == 1, err
    return err


def test_simulate_before_any_server(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, "simulate", "--days", "1", "--customers", "2")
    assert "no S3 credentials" in err and "coexarchive s3 --env" in err


def test_commands_after_the_server_stopped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = EmbeddedS3(tmp_path / "s3")
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)  # what `eval "$(coexarchive s3 ...)"` left behind
    monkeypatch.setenv("COEXARCHIVE_S3_MAX_ATTEMPTS", "1")
    err = one_line_error(capsys, "chains")
    assert f"cannot reach S3 at {server.endpoint_url}" in err
    assert "coexarchive s3 --background" in err


def test_a_bucket_nobody_created(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seaweed: EmbeddedS3
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    err = one_line_error(capsys, "simulate", "--days", "1", "--bucket", "never-created")
    assert "bucket 'never-created' does not exist" in err
    assert "coexarchive s3 --bucket never-created" in err
    names = {b["Name"] for b in seaweed.client().list_buckets().get("Buckets", [])}
    assert "never-created" not in names, "a failed put must not leave an unlocked bucket"


def test_wrong_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seaweed: EmbeddedS3
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    err = one_line_error(capsys, "chains")
    assert "does not accept these credentials" in err and seaweed.endpoint_url in err


def test_ingest_and_head_say_what_to_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seaweed: EmbeddedS3
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    seaweed.store("first-run")
    monkeypatch.setenv("COEXARCHIVE_BUCKET", "first-run")
    assert "COEXARCHIVE_APP_SECRETS" in one_line_error(capsys, "ingest")
    monkeypatch.setenv("COEXARCHIVE_APP_SECRETS", "an-app-secret")
    assert "coexarchive keygen" in one_line_error(capsys, "ingest")
    assert "coexarchive chains" in one_line_error(capsys, "head", "--chain", "900000000000001")


def test_an_unlocked_bucket_made_by_hand(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seaweed: EmbeddedS3
) -> None:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    seaweed.client().create_bucket(Bucket="made-by-hand")
    err = one_line_error(capsys, "simulate", "--days", "1", "--bucket", "made-by-hand")
    assert "bucket 'made-by-hand'" in err and "without Object Lock" in err
    assert "--bucket NAME" in err
