"""What every worker of the ingest job is handed: where the archive is and how to seal into it."""

from __future__ import annotations

from dataclasses import dataclass

from coexarchive.store.base import ObjectStore
from coexarchive.store.s3 import S3Store


@dataclass(frozen=True)
class StoreSpec:
    """How a worker reaches the archive: picklable, no secrets (boto3's chain supplies them)."""

    bucket: str
    endpoint_url: str | None = None
    region_name: str | None = None
    sse_kms_key_id: str | None = None

    def open(self) -> ObjectStore:
        return S3Store(
            self.bucket,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            sse_kms_key_id=self.sse_kms_key_id,
        )


@dataclass(frozen=True)
class SealSpec:
    key_file: str
    archive_name: str
    retention: str = "COMPLIANCE:7"
    max_segment_records: int = 100_000
    # Keys besides the signing key's own whose checkpoints, intents and archive heads a resume
    # accepts (the previous archive head, a chain signed before a key rotation).
    trust_file: str | None = None
    # Timestamp authorities asked after each archive head (``coexarchive.anchor.tsa``).
    tsa_file: str | None = None
    # C2SP witnesses each new archive head is submitted to (``coexarchive.anchor.witness``).
    witness_file: str | None = None
