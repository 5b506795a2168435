"""Shared fixtures: the embedded S3 server (one per session) and stores on it or in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from coexarchive.store import EmbeddedS3, MemoryStore, S3Store


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A running SeaweedFS S3 on loopback. If it cannot start, the tests using it fail."""
    server = EmbeddedS3(tmp_path_factory.mktemp("seaweed"))
    with server:
        yield server


def fresh_bucket_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def s3_store(seaweed: EmbeddedS3) -> Iterator[S3Store]:
    """An :class:`S3Store` on a new Object Lock bucket of its own."""
    store = seaweed.store(fresh_bucket_name())
    yield store
    store.client.close()


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()
