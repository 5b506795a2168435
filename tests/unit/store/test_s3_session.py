"""Sessions share botocore's data loader, never credentials or configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from coexarchive.store.s3 import S3Store
from coexarchive.store.s3client import new_session


def test_sessions_share_the_loader_of_packaged_files() -> None:
    first, second = new_session(), new_session()
    loader = first._session.get_component("data_loader")
    assert loader is second._session.get_component("data_loader")
    # A second client reads the S3 model from the loader's cache, not from disk.
    first.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:1")
    assert any("s3" in repr(key) for key in loader._cache)


def test_each_session_resolves_its_own_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    first = S3Store("bucket", endpoint_url="http://127.0.0.1:1", region_name="us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
    second = S3Store("bucket", endpoint_url="http://127.0.0.1:1", region_name="us-east-1")
    assert first.client._request_signer._credentials.access_key == "first-key"
    assert second.client._request_signer._credentials.access_key == "second-key"


def test_a_different_data_path_gets_its_own_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = new_session()._session.get_component("data_loader")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    custom = new_session()._session.get_component("data_loader")
    assert custom is not default
    assert str(tmp_path) in custom.search_paths


def test_options_reach_the_session() -> None:
    session = new_session(region_name="eu-central-1", profile_name=None)
    assert session.region_name == "eu-central-1"
