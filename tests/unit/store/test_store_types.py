"""Retention normalisation and the small helpers of the store seam."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from coexarchive.store import ObjectStore, Retention, sha256_hex
from coexarchive.store.memory import MemoryStore


def test_retention_rounds_up_to_whole_seconds() -> None:
    retention = Retention("COMPLIANCE", datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    assert retention.retain_until == datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_retention_keeps_whole_seconds() -> None:
    moment = datetime(2030, 1, 1, 12, 30, 5, tzinfo=UTC)
    assert Retention("GOVERNANCE", moment).retain_until == moment


def test_retention_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    retention = Retention("COMPLIANCE", datetime(2030, 1, 1, 2, 0, tzinfo=plus_two))
    assert retention.retain_until == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert retention.retain_until.tzinfo is UTC


def test_retention_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Retention("COMPLIANCE", datetime(2030, 1, 1))


def test_retention_refuses_unknown_mode() -> None:
    with pytest.raises(ValueError, match="lock mode"):
        Retention("WORM", datetime(2030, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


def test_retention_is_frozen() -> None:
    retention = Retention("COMPLIANCE", datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(AttributeError):
        retention.mode = "GOVERNANCE"  # type: ignore[misc]


def test_sha256_hex_matches_hashlib() -> None:
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()
    assert sha256_hex(b"abc").startswith("ba7816bf8f01cfea")


def test_memory_store_satisfies_protocol() -> None:
    assert isinstance(MemoryStore(), ObjectStore)
