"""The S3 implementation of :class:`~coexarchive.store.base.ObjectStore` (AWS, SeaweedFS, others).

Create-only writes use S3 conditional create (``If-None-Match: *``), which AWS S3 and SeaweedFS
both honour atomically: of concurrent writers to one key exactly one gets 200, the rest 412.

For a server that ignores the header, ``conditional_create=False`` switches to a fallback: put the
object *without* a lock, list the key's versions, and win only if ours is the sole version; a
loser deletes its own (still unlocked) version and retries, finding the winner's object. The winner
then applies the retention. Two writers cannot both win on a server with consistent listings, but
both may lose a round. Residual windows: until a loser removes its version, readers may see the
loser's bytes; a writer that dies between its put and its retention call leaves an unlocked object
(a re-run with the same bytes locks it); a loser that dies before cleaning up leaves a newer version
on top (visible in ``list_object_versions``). It needs ``s3:DeleteObjectVersion`` and a bucket
without default retention.
"""

from __future__ import annotations

import builtins
import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from coexarchive.errors import (
    ObjectExistsError,
    ObjectMissingError,
    RetentionError,
    StorageError,
)
from coexarchive.store.base import LockMode, ObjectInfo, Retention, sha256_hex
from coexarchive.store.s3client import (
    BAD_CREDENTIALS,
    CONDITIONAL_CONFLICT,
    INVALID,
    MISSING,
    NO_LEGAL_HOLD,
    NO_LOCK_CONFIG,
    PRECONDITION_FAILED,
    S3Timeouts,
    connection_problem,
    create_locked_bucket,
    describe,
    endpoint_of,
    error_code,
    missing_bucket,
    new_session,
    require_object_lock,
)

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

# Defined in s3client, importable from here as before.
__all__ = [
    "S3Store",
    "S3Timeouts",
    "connection_problem",
    "create_locked_bucket",
    "endpoint_of",
    "missing_bucket",
    "require_object_lock",
]


class S3Store:
    """An :class:`ObjectStore` on one S3 bucket with Object Lock.

    ``client=None`` builds a client from boto3's standard credential chain (or from ``session``).
    ``page_size`` bounds each listing request; ``conditional_create=False`` selects the
    version-listing fallback described in this module's docstring.
    """

    def __init__(
        self,
        bucket: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        sse_kms_key_id: str | None = None,
        session: boto3.session.Session | None = None,
        page_size: int = 1000,
        conditional_create: bool = True,
        timeouts: S3Timeouts | None = None,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be within 1..1000, got {page_size}")
        self.bucket = bucket
        self.timeouts = timeouts or S3Timeouts.from_env()
        self._session = session or new_session(region_name=region_name)
        self._owns_client = client is None
        self._client: Any = client or self._session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            config=self.timeouts.botocore_config(),
        )
        self._sse_kms_key_id = sse_kms_key_id
        self._page_size = page_size
        self._conditional_create = conditional_create

    @property
    def client(self) -> Any:
        """The boto3 S3 client in use (for callers that need raw S3, e.g. tests)."""
        return self._client

    def require_object_lock(self) -> None:
        """Raise :class:`RetentionError` unless the bucket has Object Lock enabled."""
        require_object_lock(self._client, self.bucket)

    def close(self) -> None:
        """Close the HTTP connections of a client this store created."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention | None = None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Create ``key``; False if identical bytes are there, ObjectExistsError if others are."""
        data = bytes(data)
        if not self._conditional_create:
            return self._put_by_version_check(key, data, retention, content_type)
        args = self._put_args(key, data, content_type) | _lock_args(retention)
        # AWS answers 409 when conditional writes to one key overlap; retrying then settles
        # into a 200 or a 412.
        for _attempt in range(5):
            try:
                self._client.put_object(IfNoneMatch="*", **args)
                return True
            except ClientError as error:
                code = error_code(error)
                if code in PRECONDITION_FAILED:
                    return self._settle_existing(key, data)
                if code in INVALID and retention is not None:
                    self._explain_unlocked_bucket()
                if code not in CONDITIONAL_CONFLICT:
                    self._raise(error, "put", key)
            except BotoCoreError as error:
                self._raise(error, "put", key)
        raise StorageError(f"put of {key!r} kept conflicting with concurrent writers; retry")

    def _explain_unlocked_bucket(self) -> None:
        """After a put with a retention was refused as invalid: RetentionError if the reason is a
        bucket without Object Lock; otherwise return and let the put's own error speak."""
        try:
            require_object_lock(self._client, self.bucket)
        except RetentionError:
            raise
        except StorageError:
            return  # e.g. no permission to read the lock configuration: not evidence either way

    def _put_args(self, key: str, data: bytes, content_type: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
        }
        if self._sse_kms_key_id:
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = self._sse_kms_key_id
        return args

    def _settle_existing(self, key: str, data: bytes) -> bool:
        """After a 412: identical bytes make the put an idempotent no-op, others a conflict."""
        # A winner's object can take a moment to become readable after its 412 to us.
        for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
            time.sleep(delay)
            try:
                existing = self.get(key)
            except ObjectMissingError:
                continue
            return self._compare(key, existing, data)
        raise ObjectExistsError(key, "another writer holds the key but its object is not readable")

    @staticmethod
    def _compare(key: str, existing: bytes, data: bytes) -> bool:
        if existing == data:
            return False
        raise ObjectExistsError(
            key, f"stored sha256 {sha256_hex(existing)}, new sha256 {sha256_hex(data)}"
        )

    def _put_by_version_check(
        self, key: str, data: bytes, retention: Retention | None, content_type: str
    ) -> bool:
        for attempt in range(8):
            if self.exists(key):
                return self._settle_and_lock(key, data, retention)
            try:
                response = self._client.put_object(**self._put_args(key, data, content_type))
            except (ClientError, BotoCoreError) as error:
                self._raise(error, "put", key)
            mine = response.get("VersionId")
            if mine is None:
                raise RetentionError(f"bucket {self.bucket!r} is unversioned; cannot write {key!r}")
            versions, delete_markers = self._versions(key)
            # Only a writer whose version is alone wins: version ids order by request start, not
            # by when they became visible, so "oldest id wins" would let two writers win.
            if versions == [mine]:
                if retention is not None:
                    self._put_retention(key, retention, version_id=mine)
                return True
            # Ours is still unlocked, so it can and must go, uncovering the other version.
            self._delete_version(key, mine)
            if delete_markers:
                raise ObjectExistsError(key, "earlier versions are hidden by a delete marker")
            time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 (jitter, not crypto)
        raise ObjectExistsError(key, "concurrent writers kept colliding; retry")

    def _settle_and_lock(self, key: str, data: bytes, retention: Retention | None) -> bool:
        created = self._compare(key, self.get(key), data)
        if retention is not None:
            current = self.info(key).retention
            # A writer that died between put and retention left the object unlocked.
            if current is None or current.retain_until < retention.retain_until:
                self._put_retention(key, retention)
        return created

    def _versions(self, key: str) -> tuple[list[str], list[str]]:
        """Version ids and delete-marker ids of exactly ``key``."""
        paginator = self._client.get_paginator("list_object_versions")
        versions: list[str] = []
        markers: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                versions += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]
                markers += [
                    m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key
                ]
        except (ClientError, BotoCoreError) as error:
            self._raise(error, "list versions of", key)
        return versions, markers

    def dispose(self, key: str) -> None:
        """Delete every version and delete marker of ``key``; RetentionError if S3 refuses."""
        versions, markers = self._versions(key)
        if not versions and not markers:
            raise ObjectMissingError(key)
        for version_id in versions + markers:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            except ClientError as error:
                if error_code(error) in MISSING:
                    continue
                raise RetentionError(
                    f"S3 refused to delete {key!r} version {version_id} ({describe(error)}): "
                    "its retention has not ended or it is under legal hold"
                ) from None
            except BotoCoreError as error:
                self._raise(error, "delete", key)

    def _delete_version(self, key: str, version_id: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        except (ClientError, BotoCoreError) as error:
            raise ObjectExistsError(
                key,
                f"lost a create race and could not remove version {version_id}: {describe(error)}",
            ) from None

    def _get_version(self, key: str, version_id: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            return _read_body(response)
        except (ClientError, BotoCoreError) as error:
            self._raise(error, "get", key)

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return _read_body(response)
        except (ClientError, BotoCoreError) as error:
            self._raise(error, "get", key)

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error_code(error) in MISSING:
                return False
            self._raise(error, "head", key)
        except BotoCoreError as error:
            self._raise(error, "head", key)
        return True

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` in UTF-8 byte order.

        The whole listing is read before the first key is yielded: SeaweedFS lists in its
        directory-tree order, not S3's byte order, so the keys are sorted here.
        """
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self._page_size}
        )
        try:
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as error:
            self._raise(error, "list", prefix)
        keys.sort()
        yield from keys

    def info(self, key: str) -> ObjectInfo:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            self._raise(error, "head", key)
        version_id: str | None = head.get("VersionId")
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            version_id=version_id,
            retention=self._get_retention(key, version_id),
            legal_hold=self._get_legal_hold(key, version_id),
            last_modified=head.get("LastModified"),
        )

    def _get_retention(self, key: str, version_id: str | None) -> Retention | None:
        try:
            response = self._client.get_object_retention(**self._target(key, version_id))
        except ClientError as error:
            if error_code(error) in NO_LOCK_CONFIG:
                return None
            self._raise(error, "get retention of", key)
        except BotoCoreError as error:
            self._raise(error, "get retention of", key)
        found = response.get("Retention") or {}
        if "Mode" not in found or "RetainUntilDate" not in found:
            return None
        mode: LockMode = found["Mode"]
        return Retention(mode=mode, retain_until=found["RetainUntilDate"])

    def _get_legal_hold(self, key: str, version_id: str | None) -> bool:
        try:
            response = self._client.get_object_legal_hold(**self._target(key, version_id))
        except ClientError as error:
            if error_code(error) in NO_LEGAL_HOLD:
                return False
            self._raise(error, "get legal hold of", key)
        except BotoCoreError as error:
            self._raise(error, "get legal hold of", key)
        return bool(response.get("LegalHold", {}).get("Status") == "ON")

    # -- lock changes -----------------------------------------------------------------------

    def set_legal_hold(self, key: str, on: bool) -> None:
        try:
            self._client.put_object_legal_hold(
                Bucket=self.bucket, Key=key, LegalHold={"Status": "ON" if on else "OFF"}
            )
        except (ClientError, BotoCoreError) as error:
            # SeaweedFS answers a hold on a missing key with a 500, not NoSuchKey.
            if not self.exists(key):
                raise ObjectMissingError(key) from None
            raise RetentionError(
                f"cannot {'place' if on else 'remove'} legal hold on {key!r}: {describe(error)}"
            ) from None

    def extend_retention(self, key: str, retention: Retention) -> None:
        """Ask the server to set ``retention``; it refuses shortening and mode changes."""
        self._put_retention(key, retention)

    def versions(self, key: str) -> builtins.list[str]:
        """Version ids of exactly ``key`` (delete markers excluded), as the server lists them."""
        return self._versions(key)[0]

    def _put_retention(
        self, key: str, retention: Retention, *, version_id: str | None = None
    ) -> None:
        try:
            self._client.put_object_retention(
                **self._target(key, version_id),
                Retention={"Mode": retention.mode, "RetainUntilDate": retention.retain_until},
            )
        except ClientError as error:
            if error_code(error) in MISSING:
                raise ObjectMissingError(key) from None
            raise RetentionError(
                f"server refused retention {retention.mode} until "
                f"{retention.retain_until.isoformat()} on {key!r}: {describe(error)}"
            ) from None
        except BotoCoreError as error:
            self._raise(error, "set retention of", key)

    # -- helpers ----------------------------------------------------------------------------

    def _target(self, key: str, version_id: str | None) -> dict[str, str]:
        target = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            target["VersionId"] = version_id
        return target

    def _raise(self, error: ClientError | BotoCoreError, operation: str, key: str) -> NoReturn:
        endpoint = endpoint_of(self._client)
        if isinstance(error, ClientError):
            code = error_code(error)
            if code in MISSING:
                raise ObjectMissingError(key) from None
            if code == "NoSuchBucket":
                raise StorageError(missing_bucket(self.bucket, endpoint)) from None
            if code in BAD_CREDENTIALS:
                raise StorageError(
                    f"S3 at {endpoint} does not accept these credentials ({code}, {operation} "
                    f"{key!r}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE "
                    'and the endpoint (for the embedded server: eval "$(coexarchive s3 --env)")'
                ) from None
        problem = connection_problem(error, endpoint, f"{operation} {key!r}")
        if problem is not None:
            raise StorageError(problem) from None
        raise StorageError(
            f"S3 {operation} {key!r} in bucket {self.bucket!r} failed: {describe(error)}"
        ) from None

    def filesystem(self) -> S3FileSystem:
        """A pyarrow S3 filesystem on the same endpoint, region and credentials."""
        from pyarrow.fs import S3FileSystem

        credentials = self._session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        from pyarrow.fs import AwsStandardS3RetryStrategy

        options: dict[str, Any] = {
            "region": self._client.meta.region_name or "us-east-1",
            "connect_timeout": self.timeouts.connect,
            "request_timeout": self.timeouts.read,
            "retry_strategy": AwsStandardS3RetryStrategy(max_attempts=self.timeouts.max_attempts),
        }
        if frozen is not None:
            options |= {
                "access_key": frozen.access_key,
                "secret_key": frozen.secret_key,
                "session_token": frozen.token,
            }
        endpoint = self._client.meta.endpoint_url
        parts = urlsplit(endpoint) if endpoint else None
        if parts is not None and not (parts.hostname or "").endswith("amazonaws.com"):
            options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme or "https"}
        return S3FileSystem(**options)


def _lock_args(retention: Retention | None) -> dict[str, Any]:
    if retention is None:
        return {}
    return {
        "ObjectLockMode": retention.mode,
        "ObjectLockRetainUntilDate": retention.retain_until,
    }


def _read_body(response: dict[str, Any]) -> bytes:
    body = response["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()
