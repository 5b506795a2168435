"""Where the archive lives and which keys seal and verify it.

Read once at the edge (CLI, pipeline options); everything below takes a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coexarchive.errors import ConfigError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.store.s3 import S3Store

DEFAULT_BUCKET = "coexarchive"
DEFAULT_ARCHIVE_NAME = "coexarchive.local"
DEFAULT_KEY_FILE = Path("var/keys/signing.key")
DEFAULT_TRUST_FILE = Path("var/keys/trust.txt")


@dataclass(frozen=True)
class Settings:
    """Everything a job needs to reach the archive; secrets stay in files or the environment."""

    bucket: str = DEFAULT_BUCKET
    raw_bucket: str | None = None  # where raw/ lives, when it is a bucket of its own
    endpoint_url: str | None = None
    region_name: str | None = None
    sse_kms_key_id: str | None = None
    archive_name: str = DEFAULT_ARCHIVE_NAME
    key_file: Path = DEFAULT_KEY_FILE
    # Signs the access-log and hold-register chains, which auditors and legal write: kept apart
    # from the ingest key so those roles never hold the key that seals the archive itself.
    audit_key_file: Path | None = None
    trust_file: Path = DEFAULT_TRUST_FILE
    retention: str = "COMPLIANCE:7"
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "bucket": env.get("COEXARCHIVE_BUCKET", DEFAULT_BUCKET),
            "raw_bucket": env.get("COEXARCHIVE_RAW_BUCKET"),
            "endpoint_url": env.get("COEXARCHIVE_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL"),
            "region_name": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            "sse_kms_key_id": env.get("COEXARCHIVE_KMS_KEY_ID"),
            "archive_name": env.get("COEXARCHIVE_NAME", DEFAULT_ARCHIVE_NAME),
            "key_file": Path(env.get("COEXARCHIVE_SIGNING_KEY", str(DEFAULT_KEY_FILE))),
            "audit_key_file": (
                Path(env["COEXARCHIVE_AUDIT_KEY"]) if env.get("COEXARCHIVE_AUDIT_KEY") else None
            ),
            "trust_file": Path(env.get("COEXARCHIVE_TRUST", str(DEFAULT_TRUST_FILE))),
            "retention": env.get("COEXARCHIVE_RETENTION", "COMPLIANCE:7"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def store(self) -> S3Store:
        return self._store(self.bucket)

    def raw_store(self) -> S3Store:
        """The store holding ``raw/``: the archive bucket unless a raw bucket is configured."""
        return self._store(self.raw_bucket or self.bucket)

    def _store(self, bucket: str) -> S3Store:
        return S3Store(
            bucket,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            sse_kms_key_id=self.sse_kms_key_id,
        )

    def signer(self) -> Ed25519Signer:
        if not self.key_file.exists():
            raise ConfigError(
                f"signing key {self.key_file} not found: create one with "
                "`coexarchive keygen` or point COEXARCHIVE_SIGNING_KEY at it"
            )
        return Ed25519Signer.from_file(self.key_file)

    def audit_signer(self) -> Ed25519Signer:
        """The key for the access log and hold register; the archive key if none is set."""
        if self.audit_key_file is None:
            return self.signer()
        if not self.audit_key_file.exists():
            raise ConfigError(
                f"audit key {self.audit_key_file} not found: create one with "
                "`coexarchive keygen --key FILE` and add its verifier line to the trust file"
            )
        return Ed25519Signer.from_file(self.audit_key_file)

    def trust(self) -> TrustStore:
        if not self.trust_file.exists():
            raise ConfigError(
                f"trust file {self.trust_file} not found: pass --trust FILE with the archive's "
                "public verifier keys (one `name+keyid+base64` line each)"
            )
        return TrustStore.from_file(self.trust_file)

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.parse(self.retention)
