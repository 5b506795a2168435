"""What every worker of the ingest job is handed: where the archive is and how to seal into it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coexarchive.errors import ConfigError
from coexarchive.seal.personal import PersonalSealer
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
    # Where the data keys live when the archive seals personal content encrypted (its setting
    # object says so); KMS key that wraps them in production.
    data_keys_dir: str | None = None
    data_key_kms: str | None = None
    # A chain with more new records than ``spread_above`` has its per-record hashing and columns
    # spread over every worker, in units of at most ``unit_records`` (``pipelines.seal_step``).
    # Up to it, the chain is encoded and committed where it was planned: moving its records to
    # other workers and back costs CPU, the run's other chains keep the workers busy, and the
    # commit makes each segment while the one before is written. On 2 workers one chain of
    # 225,000 records sealed in place at 16,636-18,132 events/s and 68.5 CPU us/event, spread
    # at 14,334-14,917 and 89.3 (``bench/ingest.py --spread-above``): spreading pays only with
    # more workers than that; lower it there.
    spread_above: int = 1_000_000
    unit_records: int = 20_000

    def __post_init__(self) -> None:
        # Refused before the job starts, not when the first large chain is spread.
        if self.unit_records < 1:
            raise ConfigError(
                f"--unit_records {self.unit_records}: a unit must hold at least one record"
            )

    def personal_sealer(
        self, store: ObjectStore, *, clock: Callable[[], int]
    ) -> PersonalSealer | None:
        """The sealer of personal fields if the archive's setting asks for one, else None."""
        from coexarchive.datakeys import open_store, personal_sealing_enabled

        if not personal_sealing_enabled(store):
            return None
        if self.data_keys_dir is None:
            raise ConfigError(
                "this archive seals personal content encrypted (settings/personal-sealing) but "
                "no data-key directory was given (COEXARCHIVE_DATA_KEYS)"
            )
        keys = open_store(
            Path(self.data_keys_dir), kms_key_id=self.data_key_kms, create=True, clock=clock
        )
        return PersonalSealer.for_store(keys)
