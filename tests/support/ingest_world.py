"""What an ingest test on the real S3 server needs: credentials, a signing key and the specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coexarchive.store.s3 import S3Store
from pipelines.ingest import SealSpec, StoreSpec
from support.archive import signer


def s3_ingest_world(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The store, its ``StoreSpec`` and a ``SealSpec`` with a fresh key file (GOVERNANCE:1)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    return {
        "store": s3_store,
        "spec": StoreSpec(
            s3_store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1"
        ),
        "seal": SealSpec(str(key_file), "coexarchive.test", "GOVERNANCE:1"),
    }
