"""MemoryStore: the in-memory twin behaves like an Object Lock bucket."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from coexarchive.errors import ObjectExistsError, ObjectMissingError, RetentionError
from coexarchive.store import MemoryStore, Retention

FAR = datetime(2040, 1, 1, tzinfo=UTC)


def test_put_creates_then_identical_put_is_a_no_op(memory_store: MemoryStore) -> None:
    assert memory_store.put("a", b"one") is True
    assert memory_store.put("a", b"one") is False
    assert memory_store.get("a") == b"one"


def test_put_of_different_bytes_is_refused(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"one")
    with pytest.raises(ObjectExistsError, match="'a'") as caught:
        memory_store.put("a", b"two")
    assert caught.value.key == "a"
    assert memory_store.get("a") == b"one"


def test_identical_put_does_not_change_retention(memory_store: MemoryStore) -> None:
    first = Retention("COMPLIANCE", FAR)
    memory_store.put("a", b"one", retention=first)
    memory_store.put("a", b"one", retention=Retention("GOVERNANCE", FAR - timedelta(days=1)))
    assert memory_store.info("a").retention == first


def test_concurrent_writers_exactly_one_wins(memory_store: MemoryStore) -> None:
    barrier = threading.Barrier(16)
    outcomes: list[str] = []

    def write(writer: int) -> None:
        barrier.wait()
        try:
            memory_store.put("race", f"writer-{writer}".encode())
            outcomes.append("won")
        except ObjectExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 15 + ["won"]


def test_get_missing_key(memory_store: MemoryStore) -> None:
    with pytest.raises(ObjectMissingError, match="'nope'"):
        memory_store.get("nope")


def test_info_missing_key(memory_store: MemoryStore) -> None:
    with pytest.raises(ObjectMissingError):
        memory_store.info("nope")


def test_compliance_retention_cannot_be_shortened(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"x", retention=Retention("COMPLIANCE", FAR))
    with pytest.raises(RetentionError, match="'a'"):
        memory_store.extend_retention("a", Retention("COMPLIANCE", FAR - timedelta(seconds=1)))
    assert memory_store.info("a").retention == Retention("COMPLIANCE", FAR)


def test_compliance_retention_cannot_become_governance(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"x", retention=Retention("COMPLIANCE", FAR))
    with pytest.raises(RetentionError):
        memory_store.extend_retention("a", Retention("GOVERNANCE", FAR + timedelta(days=1)))


def test_governance_retention_cannot_be_shortened_without_bypass(
    memory_store: MemoryStore,
) -> None:
    memory_store.put("a", b"x", retention=Retention("GOVERNANCE", FAR))
    with pytest.raises(RetentionError):
        memory_store.extend_retention("a", Retention("GOVERNANCE", FAR - timedelta(days=1)))


def test_retention_can_be_extended_and_added(memory_store: MemoryStore) -> None:
    memory_store.put("locked", b"x", retention=Retention("COMPLIANCE", FAR))
    memory_store.put("plain", b"y")
    later = Retention("COMPLIANCE", FAR + timedelta(days=365))
    memory_store.extend_retention("locked", later)
    memory_store.extend_retention("plain", later)
    assert memory_store.info("locked").retention == later
    assert memory_store.info("plain").retention == later


def test_extend_retention_of_missing_key(memory_store: MemoryStore) -> None:
    with pytest.raises(ObjectMissingError):
        memory_store.extend_retention("nope", Retention("COMPLIANCE", FAR))


def test_legal_hold_on_missing_key(memory_store: MemoryStore) -> None:
    with pytest.raises(ObjectMissingError):
        memory_store.set_legal_hold("nope", True)


def test_legal_hold_toggles(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"x")
    assert memory_store.info("a").legal_hold is False
    memory_store.set_legal_hold("a", True)
    assert memory_store.info("a").legal_hold is True
    memory_store.set_legal_hold("a", False)
    assert memory_store.info("a").legal_hold is False


def test_list_is_prefix_bounded_and_in_byte_order(memory_store: MemoryStore) -> None:
    keys = ["p/a/b", "p/a-c", "p/a.d", "p/a0", "p/a", "p/A", "p/é", "p/a~", "q/x", "o/z"]
    for key in keys:
        memory_store.put(key, b"x")
    listed = list(memory_store.list("p/"))
    assert listed == sorted(k for k in keys if k.startswith("p/"))
    assert listed == sorted(listed, key=lambda k: k.encode())


def test_list_of_empty_prefix_returns_nothing(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"x")
    assert list(memory_store.list("b")) == []


def test_unsafe_tampering_is_visible_to_readers(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"original", retention=Retention("COMPLIANCE", FAR))
    memory_store.unsafe_objects["a"] = b"tampered"
    assert memory_store.get("a") == b"tampered"
    memory_store.unsafe_delete("a")
    assert not memory_store.exists("a")
    assert memory_store.put("a", b"replacement") is True


def test_info_reports_size_and_version(memory_store: MemoryStore) -> None:
    memory_store.put("a", b"12345")
    info = memory_store.info("a")
    assert (info.key, info.size, info.retention, info.legal_hold) == ("a", 5, None, False)
    assert info.version_id
