"""S3Store against a stubbed client: request shapes and error mapping, no server needed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from coexarchive.errors import (
    ObjectExistsError,
    ObjectMissingError,
    RetentionError,
    StorageError,
)
from coexarchive.store import Retention, S3Store, create_locked_bucket

SECRET = "stub-secret-never-printed"
UNTIL = datetime(2040, 1, 1, tzinfo=UTC)


@pytest.fixture
def client() -> Iterator[Any]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="stub-access",
        aws_secret_access_key=SECRET,
    )
    yield client
    client.close()


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def put_params(key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "Bucket": "b",
        "Key": key,
        "Body": data,
        "ContentType": "application/octet-stream",
        "IfNoneMatch": "*",
        **extra,
    }


def test_put_sends_conditional_create_lock_and_kms(client: Any, stub: Stubber) -> None:
    store = S3Store("b", client=client, sse_kms_key_id="alias/archive")
    stub.add_response(
        "put_object",
        {"VersionId": "v1"},
        put_params(
            "k",
            b"x",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=UNTIL,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId="alias/archive",
        ),
    )
    assert store.put("k", b"x", retention=Retention("COMPLIANCE", UNTIL)) is True


def test_put_without_kms_sends_no_encryption_headers(client: Any, stub: Stubber) -> None:
    stub.add_response("put_object", {}, put_params("k", b"x"))
    assert S3Store("b", client=client).put("k", b"x") is True


def test_precondition_failed_with_identical_bytes_is_a_no_op(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response("get_object", {"Body": body(b"x")}, {"Bucket": "b", "Key": "k"})
    assert S3Store("b", client=client).put("k", b"x") is False


def test_precondition_failed_with_other_bytes_is_a_conflict(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response("get_object", {"Body": body(b"other")}, {"Bucket": "b", "Key": "k"})
    with pytest.raises(ObjectExistsError, match="'k'"):
        S3Store("b", client=client).put("k", b"x")


def test_conditional_conflict_is_retried(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    stub.add_response("put_object", {}, put_params("k", b"x"))
    assert S3Store("b", client=client).put("k", b"x") is True


def test_endless_conditional_conflict_gives_up(client: Any, stub: Stubber) -> None:
    for _ in range(5):
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    with pytest.raises(StorageError, match="concurrent writers"):
        S3Store("b", client=client).put("k", b"x")


def test_access_denied_on_put_names_key_not_credentials(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object", "AccessDenied", "Access Denied", http_status_code=403)
    with pytest.raises(StorageError) as caught:
        S3Store("b", client=client).put("raw/k", b"x")
    message = str(caught.value)
    assert "raw/k" in message
    assert "AccessDenied" in message
    assert SECRET not in message
    assert "stub-access" not in message


def test_get_missing_key(client: Any, stub: Stubber) -> None:
    stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    with pytest.raises(ObjectMissingError, match="'k'"):
        S3Store("b", client=client).get("k")


def test_missing_bucket_is_a_storage_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("get_object", "NoSuchBucket", http_status_code=404)
    with pytest.raises(StorageError, match="bucket 'b' does not exist"):
        S3Store("b", client=client).get("k")


def test_exists_maps_404_to_false_and_403_to_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_client_error("head_object", "403", http_status_code=403)
    store = S3Store("b", client=client)
    assert store.exists("k") is False
    with pytest.raises(StorageError):
        store.exists("k")


def test_info_treats_missing_lock_configuration_as_none(client: Any, stub: Stubber) -> None:
    target = {"Bucket": "b", "Key": "k", "VersionId": "v1"}
    stub.add_response(
        "head_object", {"ContentLength": 3, "VersionId": "v1"}, {"Bucket": "b", "Key": "k"}
    )
    stub.add_client_error(
        "get_object_retention", "NoSuchObjectLockConfiguration", expected_params=target
    )
    stub.add_client_error("get_object_legal_hold", "NoSuchObjectLegalHold", expected_params=target)
    info = S3Store("b", client=client).info("k")
    assert (info.size, info.version_id, info.retention, info.legal_hold) == (3, "v1", None, False)


def test_info_surfaces_other_retention_errors(client: Any, stub: Stubber) -> None:
    stub.add_response("head_object", {"ContentLength": 3}, {"Bucket": "b", "Key": "k"})
    stub.add_client_error("get_object_retention", "AccessDenied", http_status_code=403)
    with pytest.raises(StorageError, match="retention"):
        S3Store("b", client=client).info("k")


def test_extend_retention_refused_is_a_retention_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object_retention", "AccessDenied", http_status_code=403)
    with pytest.raises(RetentionError, match="'k'"):
        S3Store("b", client=client).extend_retention("k", Retention("COMPLIANCE", UNTIL))


def test_connection_failure_is_a_storage_error() -> None:
    # Nothing listens on the discard port of loopback: the connection is refused at once.
    store = S3Store(
        "b",
        session=boto3.session.Session(
            aws_access_key_id="stub-access", aws_secret_access_key=SECRET, region_name="us-east-1"
        ),
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
    )
    with store, pytest.raises(StorageError, match="'k'") as caught:
        store.get("k")
    assert SECRET not in str(caught.value)


def test_list_sorts_pages_into_byte_order(client: Any, stub: Stubber) -> None:
    stub.add_response(
        "list_objects_v2",
        {
            "Contents": [{"Key": "p/a/b"}, {"Key": "p/a-c"}],
            "IsTruncated": True,
            "NextContinuationToken": "t",
        },
        {"Bucket": "b", "Prefix": "p/", "MaxKeys": 2},
    )
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "p/A"}], "IsTruncated": False},
        {"Bucket": "b", "Prefix": "p/", "MaxKeys": 2, "ContinuationToken": "t"},
    )
    assert list(S3Store("b", client=client, page_size=2).list("p/")) == ["p/A", "p/a-c", "p/a/b"]


def test_page_size_is_bounded(client: Any) -> None:
    with pytest.raises(ValueError, match="page_size"):
        S3Store("b", client=client, page_size=0)


def test_create_locked_bucket_refuses_unlocked_existing_bucket(client: Any, stub: Stubber) -> None:
    stub.add_client_error("create_bucket", "BucketAlreadyOwnedByYou", http_status_code=409)
    stub.add_client_error("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError")
    with pytest.raises(RetentionError, match="Object Lock"):
        create_locked_bucket(client, "b")


def test_create_locked_bucket_is_idempotent(client: Any, stub: Stubber) -> None:
    locked = {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}
    stub.add_response("create_bucket", {}, {"Bucket": "b", "ObjectLockEnabledForBucket": True})
    stub.add_response("get_object_lock_configuration", locked, {"Bucket": "b"})
    stub.add_client_error("create_bucket", "BucketAlreadyOwnedByYou", http_status_code=409)
    stub.add_response("get_object_lock_configuration", locked, {"Bucket": "b"})
    create_locked_bucket(client, "b")
    create_locked_bucket(client, "b")


def test_create_locked_bucket_of_someone_else(client: Any, stub: Stubber) -> None:
    stub.add_client_error("create_bucket", "BucketAlreadyExists", http_status_code=409)
    stub.add_client_error("get_object_lock_configuration", "AccessDenied", http_status_code=403)
    with pytest.raises(StorageError, match="AccessDenied"):
        create_locked_bucket(client, "b")


def test_put_lock_date_is_the_normalised_one(client: Any, stub: Stubber) -> None:
    retention = Retention("GOVERNANCE", datetime(2040, 1, 1, 0, 0, 0, 500, tzinfo=UTC))
    stub.add_response(
        "put_object",
        {},
        put_params(
            "k",
            b"x",
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=datetime(2040, 1, 1, 0, 0, 1, tzinfo=UTC),
        ),
    )
    assert S3Store("b", client=client).put("k", b"x", retention=retention) is True


def test_a_locked_put_refused_by_an_unlocked_bucket_says_why(client: Any, stub: Stubber) -> None:
    stub.add_client_error("put_object", "InvalidRequest", "Invalid Request", http_status_code=400)
    stub.add_client_error("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError")
    store = S3Store("b", client=client)
    with pytest.raises(RetentionError) as caught:
        store.put("raw/x", b"x", retention=Retention("COMPLIANCE", UNTIL))
    message = str(caught.value)
    assert "bucket 'b'" in message and "without Object Lock" in message
    assert "\n" not in message


def test_other_refusals_of_a_locked_put_keep_their_own_reason(client: Any, stub: Stubber) -> None:
    locked = {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}
    stub.add_client_error("put_object", "InvalidRequest", "bad date", http_status_code=400)
    stub.add_response("get_object_lock_configuration", locked, {"Bucket": "b"})
    store = S3Store("b", client=client)
    with pytest.raises(StorageError, match="InvalidRequest: bad date"):
        store.put("raw/x", b"x", retention=Retention("COMPLIANCE", UNTIL))


def test_a_refused_locked_put_keeps_its_reason_when_the_lock_cannot_be_read(
    client: Any, stub: Stubber
) -> None:
    stub.add_client_error("put_object", "InvalidRequest", "bad date", http_status_code=400)
    stub.add_client_error("get_object_lock_configuration", "AccessDenied", http_status_code=403)
    store = S3Store("b", client=client)
    with pytest.raises(StorageError, match="InvalidRequest: bad date"):
        store.put("raw/x", b"x", retention=Retention("COMPLIANCE", UNTIL))


def test_an_access_denied_locked_put_is_not_blamed_on_the_bucket(
    client: Any, stub: Stubber
) -> None:
    stub.add_client_error("put_object", "AccessDenied", "no", http_status_code=403)
    store = S3Store("b", client=client)  # no lock-configuration call is queued: none may be made
    with pytest.raises(StorageError, match="AccessDenied"):
        store.put("raw/x", b"x", retention=Retention("COMPLIANCE", UNTIL))
