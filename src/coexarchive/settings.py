"""Where the archive lives and which keys seal and verify it.

Read once at the edge (CLI, pipeline options); everything below takes a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coexarchive.anchor.tsa import Tsa, load_tsa_file
from coexarchive.anchor.witness import WitnessPolicy, load_witness_policy
from coexarchive.errors import ConfigError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.store.s3 import S3Store

if TYPE_CHECKING:
    from coexarchive.datakeys import DataKeyStore
    from coexarchive.seal.personal import PersonalSealer
    from coexarchive.store.base import ObjectStore

DEFAULT_BUCKET = "coexarchive"
DEFAULT_ARCHIVE_NAME = "coexarchive.local"
HOME_ENV = "COEXARCHIVE_HOME"
KEY_FILE_NAME = "signing.key"
TRUST_FILE_NAME = "trust.txt"
TSA_FILE_NAME = "tsa.txt"
WITNESS_FILE_NAME = "witnesses.txt"
DATA_KEYS_DIR_NAME = "data-keys"


def config_home(env: Mapping[str, str] | None = None) -> Path:
    """The one place keys and the trust file live unless an option or variable says otherwise.

    ``$COEXARCHIVE_HOME``, else ``$XDG_CONFIG_HOME/coexarchive``, else ``~/.config/coexarchive``:
    never the working directory, so every command finds the same files wherever it is run.
    """
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().absolute()
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]).expanduser().absolute() / "coexarchive"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home.absolute() / ".config" / "coexarchive"


def default_key_file(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / KEY_FILE_NAME


def default_trust_file(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / TRUST_FILE_NAME


def default_tsa_file(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / TSA_FILE_NAME


def default_witness_file(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / WITNESS_FILE_NAME


def default_data_keys_dir(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / DATA_KEYS_DIR_NAME


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name)
    return Path(value).expanduser().absolute() if value else default


@dataclass(frozen=True)
class Settings:
    """Everything a job needs to reach the archive; secrets stay in files or the environment."""

    bucket: str = DEFAULT_BUCKET
    raw_bucket: str | None = None  # where raw/ lives, when it is a bucket of its own
    endpoint_url: str | None = None
    region_name: str | None = None
    sse_kms_key_id: str | None = None
    archive_name: str = DEFAULT_ARCHIVE_NAME
    key_file: Path = field(default_factory=default_key_file)
    # Signs the access-log and hold-register chains, which auditors and legal write: kept apart
    # from the ingest key so those roles never hold the key that seals the archive itself.
    audit_key_file: Path | None = None
    # Signs what the review console seals (its access-log entries, review decisions, holds): the
    # console's own service key, so users of the console hold no signing key at all.
    console_key_file: Path | None = None
    trust_file: Path = field(default_factory=default_trust_file)
    retention: str = "COMPLIANCE:7"
    # Timestamp authorities (``coexarchive.anchor.tsa``): used when the file exists.
    tsa_file: Path = field(default_factory=default_tsa_file)
    # C2SP witnesses and the quorum verify asks of them (``coexarchive.anchor.witness``).
    witness_file: Path = field(default_factory=default_witness_file)
    # Per-customer data keys of archives that seal personal content encrypted (never in the
    # bucket: an erasure must be able to destroy them); wrapped by this KMS key when set.
    data_keys_dir: Path = field(default_factory=default_data_keys_dir)
    data_key_kms: str | None = None
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
            "key_file": _path(env, "COEXARCHIVE_SIGNING_KEY", default_key_file(env)),
            "audit_key_file": (
                _path(env, "COEXARCHIVE_AUDIT_KEY", Path())
                if env.get("COEXARCHIVE_AUDIT_KEY")
                else None
            ),
            "console_key_file": (
                _path(env, "COEXARCHIVE_CONSOLE_KEY", Path())
                if env.get("COEXARCHIVE_CONSOLE_KEY")
                else None
            ),
            "trust_file": _path(env, "COEXARCHIVE_TRUST", default_trust_file(env)),
            "retention": env.get("COEXARCHIVE_RETENTION", "COMPLIANCE:7"),
            "tsa_file": _path(env, "COEXARCHIVE_TSA", default_tsa_file(env)),
            "witness_file": _path(env, "COEXARCHIVE_WITNESSES", default_witness_file(env)),
            "data_keys_dir": _path(env, "COEXARCHIVE_DATA_KEYS", default_data_keys_dir(env)),
            "data_key_kms": env.get("COEXARCHIVE_DATA_KEY_KMS") or None,
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
        """The key for the access log and hold register; the archive key if none is set.

        Fails closed: a key whose public key the trust file does not list is refused, so no
        entry is ever signed that ``coexarchive verify`` would then reject.
        """
        if self.audit_key_file is None:
            signer, variable = self.signer(), "COEXARCHIVE_SIGNING_KEY"
        elif not self.audit_key_file.exists():
            raise ConfigError(
                f"audit key {self.audit_key_file} not found: create one with "
                "`coexarchive keygen --key FILE` and add its verifier line to the trust file"
            )
        else:
            signer = Ed25519Signer.from_file(self.audit_key_file)
            variable = "COEXARCHIVE_AUDIT_KEY"
        self._check_trusted(signer, variable)
        return signer

    def console_signer(self) -> Ed25519Signer:
        """The review console's service key; refused unless the trust file lists it."""
        if self.console_key_file is None:
            raise ConfigError(
                "the console needs its own service key: create one with `coexarchive keygen "
                "--key FILE --name NAME`, add its verifier line to the trust file and set "
                "COEXARCHIVE_CONSOLE_KEY (or --console-key)"
            )
        if not self.console_key_file.exists():
            raise ConfigError(
                f"console key {self.console_key_file} not found: create one with "
                "`coexarchive keygen --key FILE` and add its verifier line to the trust file"
            )
        signer = Ed25519Signer.from_file(self.console_key_file)
        self._check_trusted(signer, "COEXARCHIVE_CONSOLE_KEY")
        return signer

    def _check_trusted(self, signer: Ed25519Signer, variable: str) -> None:
        if not self.trust_file.exists():
            raise ConfigError(
                f"refusing to sign with key {signer.name} {signer.key_id.hex()}: trust file "
                f"{self.trust_file} not found, so nothing could verify what it signs "
                "(pass --trust FILE or set COEXARCHIVE_TRUST)"
            )
        trust = TrustStore.from_file(self.trust_file)
        known = trust.find(signer.name, signer.key_id)
        if known is None or known.public_key != signer.public_key:
            trusted = ", ".join(f"{v.name} {v.key_id.hex()}" for v in trust.verifiers) or "none"
            raise ConfigError(
                f"refusing to sign with key {signer.name} {signer.key_id.hex()}: it is not in "
                f"trust file {self.trust_file} (trusted: {trusted}); use the archive's key "
                f"({variable}) or add its verifier line to the trust file"
            )

    def trust(self) -> TrustStore:
        if not self.trust_file.exists():
            raise ConfigError(
                f"trust file {self.trust_file} not found: pass --trust FILE with the archive's "
                "public verifier keys (one `name+keyid+base64` line each)"
            )
        return TrustStore.from_file(self.trust_file)

    def tsas(self) -> list[Tsa]:
        """The configured timestamp authorities; none when the TSA file does not exist."""
        if not self.tsa_file.exists():
            return []
        return load_tsa_file(self.tsa_file)

    def witness_policy(self) -> WitnessPolicy | None:
        """The configured witnesses and quorum; None when the witness file does not exist."""
        if not self.witness_file.exists():
            return None
        return load_witness_policy(self.witness_file)

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.parse(self.retention)

    def readable_data_keys(self, *, clock: Callable[[], int]) -> DataKeyStore | None:
        """The data-key store for reading, or None when this machine has none (readers then
        refuse sealed personal fields instead of showing ciphertext)."""
        from coexarchive.datakeys import MASTER_FILE

        if self.data_key_kms is None and not (self.data_keys_dir / MASTER_FILE).exists():
            return None
        return self.data_keys(create=False, clock=clock)

    def personal_sealer(
        self, store: ObjectStore, *, clock: Callable[[], int]
    ) -> PersonalSealer | None:
        """The sealer of personal fields if the archive's setting asks for one (the local
        master key is created on first use), else None."""
        from coexarchive.datakeys import personal_sealing_enabled
        from coexarchive.seal.personal import PersonalSealer

        if not personal_sealing_enabled(store):
            return None
        return PersonalSealer.for_store(self.data_keys(create=True, clock=clock))

    def data_keys(self, *, create: bool, clock: Callable[[], int]) -> DataKeyStore:
        """The archive's data-key store (see ``coexarchive.datakeys``); ``create`` makes the
        local master key when there is none (sealing does, reading and erasing do not)."""
        from coexarchive.datakeys import open_store

        return open_store(
            self.data_keys_dir, kms_key_id=self.data_key_kms, create=create, clock=clock
        )
