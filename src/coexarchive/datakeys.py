"""Per-customer data keys: created on first use, wrapped at rest, destroyed by an erasure.

A :class:`DataKeyStore` keeps one file per data key in a directory outside the archive bucket
(never under Object Lock: destroying a key must be possible)::

    <dir>/<key id>.key         {"format", "key_id", "customer_id", "wrap", "wrapped", "created"}
    <dir>/<key id>.destroyed   {"format", "key_id", "customer_id", "destroyed", "reason_sha256"}

The data key itself is stored only *wrapped*: by a local master key (AES-256-GCM, the embedded
default, ``<dir>/master.key``, mode 0600) or by AWS KMS (production: ``Encrypt``/``Decrypt``
with the key id as encryption context, so the master key never leaves KMS). Destroying a key
overwrites and deletes its ``.key`` file and leaves a ``.destroyed`` tombstone, so a reader
tells "erased" (show ``[erased]``) from "missing" (refuse). The customer id is kept in both
files because it is the archive's routing key and is plaintext in the archive anyway
(``schemas/SEALING.md``, "Record version 2").

Clock and randomness are parameters; the CLI passes the wall clock and ``os.urandom``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coexarchive.errors import ConfigError, DataKeyError, FormatError, ObjectMissingError
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.canonical import canonical_bytes
from coexarchive.seal.personal import PERSONAL_FIELDS, DataKey, KeyLookup
from coexarchive.store.base import ObjectStore, Retention

__all__ = [
    "KEY_FORMAT",
    "DataKeyStore",
    "KeyWrapper",
    "KmsWrapper",
    "LocalWrapper",
    "enable_for_new_archive",
    "enable_personal_sealing",
    "open_store",
    "personal_sealing_enabled",
]

KEY_FORMAT = "coexarchive.data-key/v1"
TOMBSTONE_FORMAT = "coexarchive.data-key-destroyed/v1"
MASTER_FILE = "master.key"
_WRAP_AAD = b"coexarchive/data-key/v1\n"


class KeyWrapper(Protocol):
    """Wraps and unwraps 32-byte data keys; ``name`` is stored with each wrapped key."""

    name: str

    def wrap(self, key_id: str, secret: bytes) -> bytes: ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes: ...


class LocalWrapper:
    """AES-256-GCM under a master key file (the embedded default; keep the file off the bucket)."""

    name = "local"

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ConfigError("the data-key master key must be 32 bytes")
        self._aead = AESGCM(master)

    @classmethod
    def from_file(cls, path: Path, *, create: bool, random: Callable[[int], bytes]) -> LocalWrapper:
        if not path.exists():
            if not create:
                raise ConfigError(f"no data-key master key at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(random(32))
        return cls(path.read_bytes())

    def wrap(self, key_id: str, secret: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, secret, _WRAP_AAD + key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], _WRAP_AAD + key_id.encode())
        except InvalidTag:
            raise DataKeyError(
                f"data key {key_id} does not unwrap with this master key (another key store's "
                "master key, or the wrapped key was altered)"
            ) from None


class KmsWrapper:
    """AWS KMS ``Encrypt``/``Decrypt`` under one KMS key; the key id is the encryption context."""

    name = "kms"

    def __init__(self, client: Any, kms_key_id: str) -> None:
        self._client = client
        self._kms_key_id = kms_key_id

    def wrap(self, key_id: str, secret: bytes) -> bytes:
        answer = self._client.encrypt(
            KeyId=self._kms_key_id,
            Plaintext=secret,
            EncryptionContext={"coexarchive:data-key": key_id},
        )
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            answer = self._client.decrypt(
                KeyId=self._kms_key_id,
                CiphertextBlob=wrapped,
                EncryptionContext={"coexarchive:data-key": key_id},
            )
        except Exception as exc:  # botocore's ClientError: KMS refused (wrong key or context)
            raise DataKeyError(f"KMS refused to unwrap data key {key_id}: {exc}") from None
        return bytes(answer["Plaintext"])


class DataKeyStore(KeyLookup):
    """The data keys of one archive, in ``directory``, wrapped by ``wrapper``."""

    def __init__(
        self,
        directory: Path,
        wrapper: KeyWrapper,
        *,
        clock: Callable[[], int],
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.directory = directory
        self.wrapper = wrapper
        self.clock = clock
        self.random = random
        self._by_id: dict[str, DataKey | None] = {}
        self._current: dict[str, DataKey] | None = None

    # -- reading ------------------------------------------------------------------------------

    def key(self, key_id: str) -> DataKey | None:
        """The key ``key_id``; None if an erasure destroyed it; :class:`DataKeyError` if the
        store never held it (wrong store, or its file was removed without an erasure)."""
        if key_id in self._by_id:
            return self._by_id[key_id]
        path = self.directory / f"{key_id}.key"
        if path.exists():
            key: DataKey | None = self._load(path)
        elif (self.directory / f"{key_id}.destroyed").exists():
            key = None
        else:
            raise DataKeyError(
                f"the data-key store {self.directory} holds no data key {key_id} and no record of "
                "its erasure: it is not this archive's key store, or a key file was removed "
                "without `coexarchive erase`"
            )
        self._by_id[key_id] = key
        return key

    def _load(self, path: Path) -> DataKey:
        try:
            doc = orjson.loads(path.read_bytes())
            if doc.get("format") != KEY_FORMAT:
                raise DataKeyError(f"{path} is not a {KEY_FORMAT} file")
            wrapped = base64.b64decode(doc["wrapped"], validate=True)
            key_id, customer_id, wrap = doc["key_id"], doc["customer_id"], doc["wrap"]
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
            raise DataKeyError(f"{path} is not a readable data-key file") from None
        if path.name != f"{key_id}.key":
            raise DataKeyError(f"{path} names data key {key_id}")
        if wrap != self.wrapper.name:
            raise DataKeyError(
                f"{path} is wrapped by {wrap!r}, this store uses {self.wrapper.name!r}"
            )
        return DataKey(key_id, customer_id, self.wrapper.unwrap(key_id, wrapped))

    def _index(self) -> dict[str, DataKey]:
        """Each customer's live key (one per customer; an erased customer has none)."""
        if self._current is None:
            current: dict[str, DataKey] = {}
            if self.directory.exists():
                for path in sorted(self.directory.glob("*.key")):
                    if path.name == MASTER_FILE:
                        continue
                    key = self._load(path)
                    current[key.customer_id] = key
                    self._by_id[key.key_id] = key
            self._current = current
        return self._current

    def live_key(self, customer_id: str) -> DataKey | None:
        return self._index().get(customer_id)

    def destroyed(self, customer_id: str) -> list[str]:
        """Key ids of ``customer_id``'s destroyed keys (from the tombstones)."""
        found = []
        for path in sorted(self.directory.glob("*.destroyed")):
            doc = orjson.loads(path.read_bytes())
            if doc.get("customer_id") == customer_id:
                found.append(str(doc["key_id"]))
        return found

    # -- writing ------------------------------------------------------------------------------

    def current(self, customer_id: str) -> DataKey:
        """``customer_id``'s live key, created (and written wrapped) if it has none."""
        key = self._index().get(customer_id)
        if key is not None:
            return key
        self.prepare([customer_id])
        return self._index()[customer_id]

    def prepare(self, customers: Iterable[str]) -> None:
        """Create the keys of every customer that has none, durably, before anything is sealed
        under them: the files are written, then synced together (one sync for a batch of new
        customers instead of one each), then the directory."""
        index = self._index()
        missing = sorted({c for c in customers if c not in index})
        if not missing:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        written: list[tuple[Path, DataKey]] = []
        for customer_id in missing:
            key = DataKey(self.random(8).hex(), customer_id, self.random(32))
            doc = {
                "format": KEY_FORMAT,
                "key_id": key.key_id,
                "customer_id": customer_id,
                "wrap": self.wrapper.name,
                "wrapped": base64.b64encode(self.wrapper.wrap(key.key_id, key.secret)).decode(),
                "created": self.clock(),
            }
            path = self.directory / f"{key.key_id}.key"
            _write_new(path, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), sync=False)
            written.append((path, key))
        for path, _ in written:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_directory(self.directory)
        for _, key in written:
            index[key.customer_id] = key
            self._by_id[key.key_id] = key

    def destroy(self, customer_id: str, *, reason: str) -> list[str]:
        """Destroy every live key of ``customer_id`` (two writers racing may each have made
        one); returns their ids.

        The tombstone is written first, so a crash in between leaves a key file next to its
        tombstone, which the next ``destroy`` finishes; the key file is overwritten with zeros
        before it is unlinked (a best effort on journalled and flash storage: production keeps
        data keys wrapped by KMS, where destroying the wrapped copy is what counts).
        """
        self._current = None  # re-read: another process may have made a key since
        self._index()
        doomed = [
            key
            for key_id, key in sorted(self._by_id.items())
            if key is not None and key.customer_id == customer_id
        ]
        for key in doomed:
            self._destroy_one(key, reason)
        self._current = None
        return [key.key_id for key in doomed]

    def _destroy_one(self, key: DataKey, reason: str) -> None:
        tombstone = {
            "format": TOMBSTONE_FORMAT,
            "key_id": key.key_id,
            "customer_id": key.customer_id,
            "destroyed": self.clock(),
            "reason_sha256": hashlib.sha256(reason.encode("utf-8")).hexdigest(),
        }
        path = self.directory / f"{key.key_id}.destroyed"
        if not path.exists():
            _write_new(path, orjson.dumps(tombstone, option=orjson.OPT_SORT_KEYS))
        key_file = self.directory / f"{key.key_id}.key"
        size = key_file.stat().st_size
        with key_file.open("r+b") as out:
            out.write(b"\0" * size)
            out.flush()
            os.fsync(out.fileno())
        key_file.unlink()
        _sync_directory(self.directory)
        self._by_id[key.key_id] = None


def _write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        if sync:
            os.fsync(out.fileno())
    if sync:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the directory entries of new or removed files durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the archive's setting ------------------------------------------------------------------------

SETTING_KEY = "settings/personal-sealing"
SETTING_FORMAT = "coexarchive.personal-sealing/v1"


def enable_personal_sealing(store: ObjectStore, *, since: int, retention: Retention | None) -> bool:
    """Record in the archive that conversation chains seal personal content encrypted.

    Create-only and locked like every archive object, so the setting cannot be switched off
    behind the tool's back; returns False if it was already on.
    """
    doc = {"format": SETTING_FORMAT, "fields": list(PERSONAL_FIELDS), "since": since}
    data = canonical_bytes(doc) + b"\n"
    if store.exists(SETTING_KEY):
        return False
    return store.put(SETTING_KEY, data, retention=retention)


def enable_for_new_archive(store: ObjectStore, *, now: int, policy: RetentionPolicy) -> bool:
    """Turn the setting on for an archive that has sealed nothing yet (an existing archive keeps
    the format it was created with); returns whether this call turned it on."""
    if next(iter(store.list("manifests/")), None) is not None:
        return False
    marker = Record("settings", "-", "settings", "system", "none", now, received_time=now)
    return enable_personal_sealing(store, since=now, retention=policy.retention_for([marker]))


def personal_sealing_enabled(store: ObjectStore) -> bool:
    """Whether the archive says conversation chains seal personal content encrypted."""
    try:
        data = store.get(SETTING_KEY)
    except ObjectMissingError:
        return False
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise FormatError(f"{SETTING_KEY} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != SETTING_FORMAT:
        raise FormatError(f"{SETTING_KEY} is not a {SETTING_FORMAT} document")
    if doc.get("fields") != list(PERSONAL_FIELDS):
        raise FormatError(
            f"{SETTING_KEY} names fields {doc.get('fields')}; "
            f"this version seals {list(PERSONAL_FIELDS)}"
        )
    return True


def open_store(
    directory: Path,
    *,
    kms_key_id: str | None,
    kms_client: Any = None,
    create: bool,
    clock: Callable[[], int],
) -> DataKeyStore:
    """The data-key store in ``directory``: KMS-wrapped when ``kms_key_id`` is given, else
    wrapped by the local master key ``directory/master.key`` (created when ``create``)."""
    wrapper: KeyWrapper
    if kms_key_id:
        if kms_client is None:
            import boto3  # production only: imported where it is needed

            kms_client = boto3.client("kms")
        wrapper = KmsWrapper(kms_client, kms_key_id)
    else:
        wrapper = LocalWrapper.from_file(
            directory / MASTER_FILE, create=create, random=secrets.token_bytes
        )
    return DataKeyStore(directory, wrapper, clock=clock)
