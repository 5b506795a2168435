"""A dead S3 endpoint fails in seconds, in one line that names it; timeouts are settable."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import boto3
import pytest

from coexarchive.cli import main
from coexarchive.errors import ConfigError, StorageError
from coexarchive.store.s3 import S3Store, S3Timeouts

ENV_NAMES = tuple(S3Timeouts.ENV.values())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.setenv(name, "")  # restored afterwards, whatever a command sets
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port whose kernel completes every TCP handshake, but nobody ever reads or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # bound, then closed: connections are refused


def store_at(endpoint: str, timeouts: S3Timeouts) -> S3Store:
    session = boto3.session.Session(
        aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1"
    )
    return S3Store("bucket", endpoint_url=endpoint, session=session, timeouts=timeouts)


def test_defaults_are_bounded() -> None:
    timeouts = S3Timeouts.from_env({})
    assert (timeouts.connect, timeouts.read, timeouts.max_attempts) == (5.0, 10.0, 3)


def test_environment_overrides_the_defaults() -> None:
    env = {
        "COEXARCHIVE_S3_CONNECT_TIMEOUT": "1.5",
        "COEXARCHIVE_S3_READ_TIMEOUT": "20",
        "COEXARCHIVE_S3_MAX_ATTEMPTS": "5",
    }
    assert S3Timeouts.from_env(env) == S3Timeouts(connect=1.5, read=20.0, max_attempts=5)


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("COEXARCHIVE_S3_READ_TIMEOUT", "soon", "not a number"),
        ("COEXARCHIVE_S3_READ_TIMEOUT", "0", "positive"),
        ("COEXARCHIVE_S3_CONNECT_TIMEOUT", "-2", "positive"),
        ("COEXARCHIVE_S3_CONNECT_TIMEOUT", "inf", "positive"),
        ("COEXARCHIVE_S3_MAX_ATTEMPTS", "0", "1..20"),
        ("COEXARCHIVE_S3_MAX_ATTEMPTS", "2.5", "not a number"),
    ],
)
def test_bad_values_are_refused_by_name(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        S3Timeouts.from_env({variable: value})
    assert variable in str(caught.value)


def test_the_store_client_carries_the_timeouts_and_retry_policy() -> None:
    store = store_at("http://127.0.0.1:9", S3Timeouts(connect=2, read=7, max_attempts=4))
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 7)
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}  # tries, first included
    store.close()


def test_a_silent_endpoint_fails_within_the_read_timeout(silent_endpoint: str) -> None:
    store = store_at(silent_endpoint, S3Timeouts(connect=1, read=0.5, max_attempts=2))
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.get("archive/x")
    elapsed = time.monotonic() - started
    store.close()
    # Two attempts of 0.5 s and standard back-off (at most a second or so) between them.
    assert elapsed < 5, f"took {elapsed:.1f}s"
    message = str(caught.value)
    assert silent_endpoint in message
    assert "did not answer in time" in message
    assert "COEXARCHIVE_S3_READ_TIMEOUT" in message
    assert "\n" not in message


def test_a_closed_port_fails_fast_and_says_what_to_start(closed_endpoint: str) -> None:
    store = store_at(closed_endpoint, S3Timeouts(connect=1, read=1, max_attempts=3))
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.put("raw/x", b"evidence")
    elapsed = time.monotonic() - started
    store.close()
    assert elapsed < 5, f"took {elapsed:.1f}s"
    message = str(caught.value)
    assert f"cannot reach S3 at {closed_endpoint}" in message
    assert "coexarchive s3 --background" in message
    assert "\n" not in message


def test_the_cli_options_bound_a_silent_endpoint(
    silent_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["chains", "--endpoint-url", silent_endpoint]
    started = time.monotonic()
    code = main([*args, "--s3-read-timeout", "0.5", "--s3-max-attempts", "1"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 4, f"took {elapsed:.1f}s"
    assert err.startswith("coexarchive: error: ") and err.count("\n") == 1
    assert silent_endpoint in err


def test_the_cli_refuses_a_bad_timeout_option(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chains", "--endpoint-url", "http://127.0.0.1:9", "--s3-read-timeout", "-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--s3-read-timeout" in err and err.count("\n") == 1
