"""Shared fixtures: the embedded S3 server (one per session) and stores on it or in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from coexarchive.store import EmbeddedS3, MemoryStore, S3Store
from coexarchive.testing.graph import GraphMediaServer


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


class ManualClock:
    """A clock a test moves by hand (ms since the epoch)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def graph_clock() -> ManualClock:
    return ManualClock(1_767_607_200_000)  # 2026-01-05T10:00:00Z


@pytest.fixture
def graph_server(graph_clock: ManualClock) -> Iterator[GraphMediaServer]:
    """The local Graph API media server on a free loopback port, on the test's clock."""
    with GraphMediaServer(clock=graph_clock) as server:
        yield server
