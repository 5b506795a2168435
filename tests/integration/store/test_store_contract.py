"""The ObjectStore contract, checked identically on MemoryStore and on SeaweedFS S3."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from coexarchive.errors import ObjectExistsError, ObjectMissingError, RetentionError
from coexarchive.store import EmbeddedS3, MemoryStore, ObjectStore, Retention, S3Store


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore()
    s3: S3Store = request.getfixturevalue("s3_store")
    return s3


def fresh_bucket_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def far(days: int = 3650) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def test_put_then_get(store: ObjectStore) -> None:
    assert store.put("k", b"bytes") is True
    assert store.get("k") == b"bytes"
    assert store.exists("k")


def test_identical_rerun_is_a_no_op(store: ObjectStore) -> None:
    assert store.put("k", b"bytes") is True
    assert store.put("k", b"bytes") is False
    assert store.get("k") == b"bytes"


def test_different_bytes_are_refused(store: ObjectStore) -> None:
    store.put("k", b"original")
    with pytest.raises(ObjectExistsError, match="'k'"):
        store.put("k", b"replacement")
    assert store.get("k") == b"original"


def test_different_bytes_are_refused_under_retention(store: ObjectStore) -> None:
    store.put("k", b"original", retention=Retention("COMPLIANCE", far()))
    with pytest.raises(ObjectExistsError):
        store.put("k", b"replacement", retention=Retention("COMPLIANCE", far()))
    assert store.get("k") == b"original"


def test_empty_object_is_create_only_too(store: ObjectStore) -> None:
    assert store.put("empty", b"") is True
    with pytest.raises(ObjectExistsError):
        store.put("empty", b"not empty")


def test_concurrent_writers_exactly_one_wins(store: ObjectStore) -> None:
    writers = 12
    barrier = threading.Barrier(writers)
    won: list[bytes] = []
    refused: list[int] = []

    def write(writer: int) -> None:
        data = f"writer-{writer}".encode() * 50
        barrier.wait()
        try:
            if store.put("race", data):
                won.append(data)
        except ObjectExistsError:
            refused.append(writer)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert len(refused) == writers - 1
    assert store.get("race") == won[0]


def test_get_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissingError, match="'missing'"):
        store.get("missing")


def test_exists_missing(store: ObjectStore) -> None:
    assert store.exists("missing") is False


def test_info_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissingError):
        store.info("missing")


def test_legal_hold_on_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissingError):
        store.set_legal_hold("missing", True)


def test_extend_retention_on_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissingError):
        store.extend_retention("missing", Retention("COMPLIANCE", far()))


def test_retention_is_readable_via_info(store: ObjectStore) -> None:
    retention = Retention("COMPLIANCE", far() + timedelta(microseconds=1))
    store.put("k", b"12345", retention=retention)
    info = store.info("k")
    assert info.retention == retention
    assert (info.key, info.size, info.legal_hold) == ("k", 5, False)
    assert info.version_id


def test_no_retention_reads_as_none(store: ObjectStore) -> None:
    store.put("k", b"x")
    assert store.info("k").retention is None


def test_compliance_retention_cannot_be_shortened(store: ObjectStore) -> None:
    until = far()
    store.put("k", b"x", retention=Retention("COMPLIANCE", until))
    with pytest.raises(RetentionError, match="'k'"):
        store.extend_retention("k", Retention("COMPLIANCE", until - timedelta(days=1)))
    assert store.info("k").retention == Retention("COMPLIANCE", until)


def test_compliance_cannot_be_downgraded_to_governance(store: ObjectStore) -> None:
    until = far()
    store.put("k", b"x", retention=Retention("COMPLIANCE", until))
    with pytest.raises(RetentionError):
        store.extend_retention("k", Retention("GOVERNANCE", until + timedelta(days=1)))
    assert store.info("k").retention == Retention("COMPLIANCE", until)


def test_governance_cannot_be_shortened_without_bypass(store: ObjectStore) -> None:
    until = far()
    store.put("k", b"x", retention=Retention("GOVERNANCE", until))
    with pytest.raises(RetentionError):
        store.extend_retention("k", Retention("GOVERNANCE", until - timedelta(days=1)))


def test_retention_can_be_extended(store: ObjectStore) -> None:
    store.put("k", b"x", retention=Retention("COMPLIANCE", far()))
    longer = Retention("COMPLIANCE", far(days=4000))
    store.extend_retention("k", longer)
    assert store.info("k").retention == longer


def test_retention_can_be_added_to_an_unlocked_object(store: ObjectStore) -> None:
    store.put("k", b"x")
    retention = Retention("COMPLIANCE", far())
    store.extend_retention("k", retention)
    assert store.info("k").retention == retention


def test_legal_hold_on_and_off(store: ObjectStore) -> None:
    store.put("k", b"x")
    assert store.info("k").legal_hold is False
    store.set_legal_hold("k", True)
    assert store.info("k").legal_hold is True
    store.set_legal_hold("k", False)
    assert store.info("k").legal_hold is False


def test_list_is_in_byte_order_and_bounded_by_prefix(store: ObjectStore) -> None:
    # SeaweedFS lists in directory-tree order; the store must still give byte order.
    keys = ["p/a/b", "p/a-c", "p/a.d", "p/a0", "p/A", "p/é", "p/a~", "p/b/c/d", "q/x", "o/z"]
    for key in keys:
        store.put(key, b"x")
    assert list(store.list("p/")) == sorted(k for k in keys if k.startswith("p/"))
    assert list(store.list("p/a")) == sorted(k for k in keys if k.startswith("p/a"))
    assert list(store.list("nothing/")) == []


def test_list_padded_sequence_keys_in_numeric_order(store: ObjectStore) -> None:
    numbers = [0, 9, 10, 99, 100, 12345]
    for number in reversed(numbers):
        store.put(f"checkpoints/chain=c1/{number:020d}", b"x")
    listed = list(store.list("checkpoints/chain=c1/"))
    assert [int(key.rsplit("/", 1)[1]) for key in listed] == numbers


@pytest.mark.integration
def test_listing_paginates(seaweed: EmbeddedS3) -> None:
    store = seaweed.store(fresh_bucket_name(), page_size=3)
    keys = [f"pages/{n:04d}" for n in range(11)]
    for key in reversed(keys):
        store.put(key, b"x")
    assert list(store.list("pages/")) == keys
