"""Personal content sealed encrypted: field envelopes under a per-customer data key.

A record of version 2 (``schemas/SEALING.md``, "Record version 2") holds each non-null
:data:`PERSONAL_FIELDS` value of a record with a ``customer_id`` as an *envelope*, a string::

    enc1:<key id, 16 lowercase hex>:<base64(nonce[12] || AES-256-GCM ciphertext || tag[16])>

The leaf hash commits to the envelope, so verification needs no key, and destroying the
customer's data key (crypto-shredding) leaves every proof intact. The nonce is synthetic, the
first 12 bytes of ``SHA-256(nonce key || aad || 0x0A || plaintext)``, so the same record seals
to the same bytes (re-runs stay idempotent) and a nonce repeats under one key only for
identical input.
The associated data binds the ciphertext to its chain, record and field, so an envelope moved
to another row or column does not open.

Pure: the data keys come in as parameters (see :mod:`coexarchive.datakeys`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coexarchive.errors import DataKeyError, DecryptionError, FormatError
from coexarchive.records import Record

__all__ = [
    "ENVELOPE_PREFIX",
    "ERASED",
    "PERSONAL_FIELDS",
    "PERSONAL_RECORD_VERSION",
    "DataKey",
    "PersonalSealer",
    "envelope_key_id",
    "open_envelope",
    "open_table",
    "seal_field",
]

PERSONAL_RECORD_VERSION = 2
# What a data subject said or is called, and the identifiers the routing key does not repeat.
# ``customer_id`` stays plaintext: it routes (key lookup, holds, the customer filter, storage
# order) and the erasure record must name whom it concerns.
PERSONAL_FIELDS: tuple[str, ...] = ("customer_wa_id", "customer_user_id", "text", "detail")
ENVELOPE_PREFIX = "enc1:"
ERASED = "[erased]"
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = b"coexarchive/field/v1\n"
_NONCE_KEY_PREFIX = b"coexarchive/nonce-key/v1\n"
_sha256 = hashlib.sha256
_ENVELOPE = re.compile(r"enc1:([0-9a-f]{16}):([A-Za-z0-9+/]+={0,2})\Z")


@dataclass(frozen=True, repr=False)
class DataKey:
    """One customer's 32-byte AES-256-GCM data key and its id (never printed)."""

    key_id: str
    customer_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{16}", self.key_id):
            raise DataKeyError(f"data key id {self.key_id!r} is not 16 lowercase hex digits")
        if len(self.secret) != 32:
            raise DataKeyError(f"data key {self.key_id} is not 32 bytes")

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r})"


class _FieldCipher:
    """AES-GCM with the synthetic nonce for one data key (built once per customer)."""

    __slots__ = ("aead", "key_id", "nonce_key", "prefix")

    def __init__(self, key: DataKey) -> None:
        self.aead = AESGCM(key.secret)
        self.key_id = key.key_id
        self.nonce_key = hashlib.sha256(_NONCE_KEY_PREFIX + key.secret).digest()
        self.prefix = f"{ENVELOPE_PREFIX}{key.key_id}:"

    def seal(self, aad: bytes, plaintext: bytes) -> str:
        nonce = _sha256(self.nonce_key + aad + b"\n" + plaintext).digest()[:NONCE_BYTES]
        sealed = nonce + self.aead.encrypt(nonce, plaintext, aad)
        return self.prefix + base64.b64encode(sealed).decode("ascii")

    def open(self, aad: bytes, sealed: bytes) -> str:
        try:
            plaintext = self.aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"a field sealed under data key {self.key_id} does not open: the key is not the "
                "one it was sealed with, or the ciphertext, its tag or its place was altered"
            ) from None
        return plaintext.decode("utf-8")


def field_aad(chain_id: str, record_id: str, field: str) -> bytes:
    """``"coexarchive/field/v1\\n" || chain_id || "\\n" || record_id || "\\n" || field``."""
    return _AAD_PREFIX + f"{chain_id}\n{record_id}\n{field}".encode()


def seal_field(key: DataKey, chain_id: str, record_id: str, field: str, value: str) -> str:
    """The envelope of one field value (for vectors and tests; the sealer caches ciphers)."""
    return _FieldCipher(key).seal(field_aad(chain_id, record_id, field), value.encode("utf-8"))


def envelope_key_id(envelope: str) -> str:
    """The data key id an envelope names; :class:`FormatError` if it is not an envelope."""
    return _parse(envelope)[0]


def _parse(envelope: str) -> tuple[str, bytes]:
    match = _ENVELOPE.match(envelope)
    if match is None:
        raise FormatError("a version-2 personal field is not an enc1 envelope")
    try:
        sealed = base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise FormatError("an enc1 envelope's base64 is malformed") from None
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise FormatError("an enc1 envelope is shorter than its nonce and tag")
    return match.group(1), sealed


def open_envelope(key: DataKey, chain_id: str, record_id: str, field: str, envelope: str) -> str:
    """The plaintext of one envelope; :class:`DecryptionError` if it does not open."""
    key_id, sealed = _parse(envelope)
    if key_id != key.key_id:
        raise DecryptionError(f"envelope names data key {key_id}, not {key.key_id}")
    return _FieldCipher(key).open(field_aad(chain_id, record_id, field), sealed)


class PersonalSealer:
    """Replaces the personal fields of records that name a customer with their envelopes.

    ``key_for(customer_id)`` returns the customer's current data key, creating one if needed
    (a :class:`coexarchive.datakeys.DataKeyStore`'s ``current``).
    """

    record_version = PERSONAL_RECORD_VERSION

    def __init__(self, key_for: Callable[[str], DataKey]) -> None:
        self._key_for = key_for
        self._ciphers: dict[str, _FieldCipher] = {}

    def seal(self, records: Iterable[Record]) -> list[Record]:
        out: list[Record] = []
        append = out.append
        replace = dataclasses.replace
        ciphers = self._ciphers
        for record in records:
            customer = record.customer_id
            if not customer:
                append(record)
                continue
            cipher = ciphers.get(customer)
            if cipher is None:
                cipher = ciphers[customer] = _FieldCipher(self._key_for(customer))
            prefix = _AAD_PREFIX + f"{record.chain_id}\n{record.record_id}\n".encode()
            changes: dict[str, str] = {}
            for name in PERSONAL_FIELDS:
                value = getattr(record, name)
                if value is not None:
                    changes[name] = cipher.seal(prefix + name.encode(), value.encode("utf-8"))
            append(replace(record, **changes))
        return out


# --- reading --------------------------------------------------------------------------------------


class KeyLookup:
    """What :func:`open_table` needs from a key store: a key by id, or why there is none."""

    def key(self, key_id: str) -> DataKey | None:  # pragma: no cover - protocol
        """The key, or None when it was destroyed by an erasure; raises when it is unknown."""
        raise NotImplementedError


def open_table(table: pa.Table, keys: KeyLookup) -> pa.Table:
    """``table`` with the personal fields of its version-2 rows opened (or ``[erased]``).

    Only the rows given are decrypted: call it on a statement's result, never on a scan. A
    table without ``record_version`` (an aggregate, a report) is returned as it is. Columns
    needed to open a field (``chain_id``, ``record_id``) must be present when a personal column
    is; otherwise the personal column is left sealed and named in a
    :class:`DataKeyError`.
    """
    names = table.column_names
    personal = [name for name in PERSONAL_FIELDS if name in names]
    if not personal or table.num_rows == 0:
        return table
    versions = _versions(table)
    if versions is not None and not any(v == PERSONAL_RECORD_VERSION for v in versions):
        return table
    has_ids = "chain_id" in names and "record_id" in names
    columns = {name: table.column(name).to_pylist() for name in personal}
    chains = table.column("chain_id").to_pylist() if has_ids else None
    record_ids = table.column("record_id").to_pylist() if has_ids else None
    ciphers: dict[str, _FieldCipher | None] = {}
    for name, values in columns.items():
        for row, value in enumerate(values):
            if not isinstance(value, str) or not value.startswith(ENVELOPE_PREFIX):
                continue
            if versions is not None and versions[row] != PERSONAL_RECORD_VERSION:
                continue  # a version-1 value that merely looks like an envelope
            if chains is None or record_ids is None:
                raise DataKeyError(
                    f"column {name} holds sealed personal content; select chain_id and "
                    "record_id with it so it can be opened"
                )
            key_id, sealed = _parse(value)
            if key_id not in ciphers:
                key = keys.key(key_id)
                ciphers[key_id] = None if key is None else _FieldCipher(key)
            cipher = ciphers[key_id]
            values[row] = (
                ERASED
                if cipher is None
                else cipher.open(field_aad(chains[row], record_ids[row], name), sealed)
            )
    for name, values in columns.items():
        index = names.index(name)
        table = table.set_column(index, table.field(name), pa.array(values, type=pa.string()))
    return table


def _versions(table: pa.Table) -> list[int | None] | None:
    if "record_version" not in table.column_names:
        return None
    return table.column("record_version").to_pylist()


def sealed_row_count(table: pa.Table) -> int:
    """How many rows of ``table`` are version 2 (for reports that say what they opened)."""
    if "record_version" not in table.column_names:
        return 0
    mask = pc.equal(table.column("record_version"), PERSONAL_RECORD_VERSION)
    return int(pc.sum(mask).as_py() or 0)
