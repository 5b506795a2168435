"""Attachment bytes in the archive: content-addressed, create-only, under Object Lock.

Bytes are stored once per distinct SHA-256 at ``media/v1/sha256=<hex>`` (``media_key``), with the
retention of the record that references them; a later reference that needs a longer retention
extends it (Object Lock only ever lengthens). Large files go up in parts read from the fetcher's
spool file, so memory holds one part, never the file.

This module is the one place attachment bytes reach storage: per-customer encryption of media
wraps :func:`store_media_file` (encrypt the spool file, store the ciphertext's digest beside
the plaintext's), leaving the content address and the sealed plaintext hash as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coexarchive.errors import ObjectExistsError, StorageError
from coexarchive.media.receipt import media_key
from coexarchive.store.base import ObjectStore, Retention

PART_BYTES = 8 * 1024 * 1024  # S3 multipart part size; also the most a single put holds in memory
READ_CHUNK = 1024 * 1024


def ensure_retention(store: ObjectStore, key: str, retention: Retention) -> None:
    """Extend ``key``'s lock to at least ``retention`` (a second referencing record)."""
    current = store.info(key).retention
    if (
        current is None
        or current.retain_until < retention.retain_until
        or (current.mode == "GOVERNANCE" and retention.mode == "COMPLIANCE")
    ):
        store.extend_retention(key, retention)


def store_media_file(
    store: ObjectStore,
    path: Path,
    *,
    sha256_hex: str,
    size: int,
    retention: Retention,
    content_type: str,
) -> str:
    """Store the checked file at its content address: ``"created"`` or ``"existing"``."""
    key = media_key(sha256_hex)
    if store.exists(key):
        ensure_retention(store, key, retention)
        return "existing"
    if size > PART_BYTES and _is_s3(store):
        created = _multipart(store, key, path, retention=retention, content_type=content_type)
    else:
        created = store.put(key, path.read_bytes(), retention=retention, content_type=content_type)
    if not created:
        ensure_retention(store, key, retention)
    return "created" if created else "existing"


def iter_object(store: ObjectStore, key: str, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """An object's bytes in pieces (ranged reads on S3, so verify holds one piece at a time)."""
    if not _is_s3(store):
        data = store.get(key)
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]
        return
    client, bucket = store.client, store.bucket  # type: ignore[attr-defined]
    size = store.info(key).size
    for start in range(0, size, chunk):
        end = min(size, start + chunk) - 1
        response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        yield response["Body"].read()


def segment_media_keys(store: ObjectStore, segment_key: str) -> list[str]:
    """The attachment objects the stored ``media`` records of one segment name (legal holds)."""
    import io

    import orjson
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(store.get(segment_key)), columns=["kind", "status", "detail"])
    media = table.filter(
        pc.and_(pc.equal(table["kind"], "media"), pc.equal(table["status"], "stored"))
    )
    keys = set()
    for detail in media.column("detail").to_pylist():
        try:
            raw = orjson.loads(detail).get("raw", {})
        except orjson.JSONDecodeError:
            # Media records' details stay plaintext (SEALING.md); one that is not is an older
            # record: verify names it, holds cannot reach its object.
            continue
        key = raw.get("object_key") if isinstance(raw, dict) else None
        if isinstance(key, str) and key.startswith("media/v1/sha256="):
            keys.add(key)
    return sorted(keys)


def _is_s3(store: ObjectStore) -> bool:
    from coexarchive.store.s3 import S3Store

    return isinstance(store, S3Store)


def _multipart(
    store: Any, key: str, path: Path, *, retention: Retention, content_type: str
) -> bool:
    """Upload ``path`` in parts; the completion is conditional (create-only) like ``put``."""
    from botocore.exceptions import ClientError

    client, bucket = store.client, store.bucket
    args: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "ContentType": content_type,
        "ObjectLockMode": retention.mode,
        "ObjectLockRetainUntilDate": retention.retain_until,
    }
    if getattr(store, "_sse_kms_key_id", None):
        args["ServerSideEncryption"] = "aws:kms"
        args["SSEKMSKeyId"] = store._sse_kms_key_id
    upload = client.create_multipart_upload(**args)["UploadId"]
    parts = []
    try:
        with path.open("rb") as source:
            number = 1
            while piece := source.read(PART_BYTES):
                answer = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=piece
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                number += 1
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except ClientError as error:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "412"):
            return False  # another fetch stored the same bytes first
        if code in ("ConditionalRequestConflict", "409"):
            raise ObjectExistsError(key, "a concurrent upload of the same bytes") from None
        raise StorageError(f"multipart upload of {key!r} failed: {code or error}") from None
    return True
