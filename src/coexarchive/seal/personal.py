"""Personal content sealed encrypted: field envelopes under a per-customer data key.

A record of version 2 (``schemas/SEALING.md``, "Record version 2") holds each non-null
:data:`PERSONAL_FIELDS` value of a record with a ``customer_id`` as an *envelope*, a string::

    enc1:<key id, 16 lowercase hex>:<base64(nonce[12] || AES-256-GCM ciphertext || tag[16])>

The leaf hash commits to the envelope, so verification needs no key, and destroying the
customer's data key (crypto-shredding) leaves every proof intact. Each record's fields are
sealed under a *record key* derived from the data key (so a bundle can disclose one record
without the rest), and the nonce is synthetic, the first 12 bytes of
``SHA-256(record key || aad || 0x0A || plaintext)``: the same record seals to the same bytes
(re-runs stay idempotent) and a nonce repeats under one key only for identical input.
The associated data binds the ciphertext to its chain, record and field, so an envelope moved
to another row or column does not open.

Pure: the data keys come in as parameters (see :mod:`coexarchive.datakeys`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coexarchive.errors import DataKeyError, DecryptionError, FormatError
from coexarchive.records import RECORD_FIELDS, Record

__all__ = [
    "ENVELOPE_PREFIX",
    "ERASED",
    "PERSONAL_FIELDS",
    "PERSONAL_RECORD_VERSION",
    "PLAINTEXT_DETAIL_KINDS",
    "DataKey",
    "PersonalSealer",
    "envelope_key_id",
    "field_aad",
    "open_envelope",
    "open_if_sealed",
    "open_sealed",
    "open_table",
    "record_key",
    "seal_field",
]

PERSONAL_RECORD_VERSION = 2
# What a data subject said or is called, and the identifiers the routing key does not repeat.
# ``customer_id`` stays plaintext: it routes (key lookup, holds, the customer filter, storage
# order) and the erasure record must name whom it concerns.
PERSONAL_FIELDS: tuple[str, ...] = ("customer_wa_id", "customer_user_id", "text", "detail")
ENVELOPE_PREFIX = "enc1:"
ERASED = "[erased]"
# A ``media`` record's detail is the fetch receipt: media id, sha256, size, mime type, object
# key, outcome, the record it completes. These are no personal content, and ``verify`` must read
# them without keys to re-hash the attachment (the document's file name travels in ``text``).
PLAINTEXT_DETAIL_KINDS = frozenset({"media"})
# (position in the record's field tuple, field name as bytes) of each personal field.
_PERSONAL_PLACES = tuple((RECORD_FIELDS.index(name), name.encode()) for name in PERSONAL_FIELDS)
_PLAINTEXT_DETAIL_PLACES = tuple(p for p in _PERSONAL_PLACES if p[1] != b"detail")
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = b"coexarchive/field/v1\n"
_RECORD_KEY_PREFIX = b"coexarchive/record-key/v1\n"
_sha256 = hashlib.sha256
_record_values = operator.attrgetter(*RECORD_FIELDS)
_ENVELOPE = re.compile(r"enc1:([0-9a-f]{16}):([A-Za-z0-9+/]+={0,2})\Z")
# Each slot's setter, in RECORD_FIELDS order: a sealed copy of a record is built slot by slot,
# which costs half of the frozen dataclass's __init__ (32 object.__setattr__ calls through a
# Python frame). Record has no __post_init__ to skip (tests/unit/seal/test_personal.py checks).
_SLOT_SETTERS = tuple(getattr(Record, name).__set__ for name in RECORD_FIELDS)


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


def record_key(data_key: DataKey, chain_id: str, record_id: str) -> bytes:
    """The AES-256-GCM key of one record's envelopes:
    ``SHA-256("coexarchive/record-key/v1\\n" || data key || chain_id || "\\n" || record_id)``.

    One key per record lets an evidence bundle disclose exactly the records it holds, never
    the rest of the customer's.
    """
    return _sha256(
        _RECORD_KEY_PREFIX + data_key.secret + f"{chain_id}\n{record_id}".encode()
    ).digest()


def field_aad(chain_id: str, record_id: str, field: str) -> bytes:
    """``"coexarchive/field/v1\\n" || chain_id || "\\n" || record_id || "\\n" || field``."""
    return _AAD_PREFIX + f"{chain_id}\n{record_id}\n{field}".encode()


def _seal_value(aead: AESGCM, key: bytes, prefix: str, aad: bytes, plaintext: bytes) -> str:
    nonce = _sha256(key + aad + b"\n" + plaintext).digest()[:NONCE_BYTES]
    return prefix + base64.b64encode(nonce + aead.encrypt(nonce, plaintext, aad)).decode("ascii")


def open_sealed(key: bytes, aad: bytes, sealed: bytes, *, key_id: str) -> str:
    """The plaintext of an envelope's bytes under a record key; :class:`DecryptionError` if the
    GCM tag does not verify."""
    try:
        plaintext = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError(
            f"a field sealed under data key {key_id} does not open: the key is not the one it "
            "was sealed with, or the ciphertext, its tag or its place was altered"
        ) from None
    return plaintext.decode("utf-8")


def seal_field(key: DataKey, chain_id: str, record_id: str, field: str, value: str) -> str:
    """The envelope of one field value (for vectors and tests; the sealer batches)."""
    rkey = record_key(key, chain_id, record_id)
    prefix = f"{ENVELOPE_PREFIX}{key.key_id}:"
    aad = field_aad(chain_id, record_id, field)
    return _seal_value(AESGCM(rkey), rkey, prefix, aad, value.encode("utf-8"))


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
    rkey = record_key(key, chain_id, record_id)
    return open_sealed(rkey, field_aad(chain_id, record_id, field), sealed, key_id=key_id)


class PersonalSealer:
    """Replaces the personal fields of records that name a customer with their envelopes.

    ``key_for(customer_id)`` returns the customer's current data key, creating one if needed
    (a :class:`coexarchive.datakeys.DataKeyStore`'s ``current``).
    """

    record_version = PERSONAL_RECORD_VERSION

    def __init__(
        self,
        key_for: Callable[[str], DataKey],
        *,
        prepare: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._key_for = key_for
        # Creates the keys of a batch's new customers together (one sync, not one each).
        self._prepare = prepare
        self._keys: dict[str, tuple[bytes, str]] = {}

    @classmethod
    def for_store(cls, keys: Any) -> PersonalSealer:
        """A sealer over a :class:`coexarchive.datakeys.DataKeyStore`."""
        return cls(keys.current, prepare=keys.prepare)

    def data_key(self, customer_id: str) -> DataKey:
        """``customer_id``'s current data key, for sealing what other records quote of them."""
        return self._key_for(customer_id)

    def seal(self, records: Iterable[Record]) -> list[Record]:
        records = list(records)
        if self._prepare is not None:
            cached = self._keys
            self._prepare({c for r in records if (c := r.customer_id) and c not in cached})
        out: list[Record] = []
        append = out.append
        keys = self._keys
        sha256 = _sha256
        key_prefix = _RECORD_KEY_PREFIX
        aad_prefix = _AAD_PREFIX
        values_of = _record_values
        b64 = binascii.b2a_base64
        new_aead = AESGCM
        new_object = object.__new__
        record_type = Record
        setters = _SLOT_SETTERS
        for record in records:
            customer = record.customer_id
            if not customer:
                append(record)
                continue
            known = keys.get(customer)
            if known is None:
                key = self._key_for(customer)
                known = keys[customer] = (key.secret, f"{ENVELOPE_PREFIX}{key.key_id}:")
            secret, prefix = known
            place = f"{record.chain_id}\n{record.record_id}".encode()
            rkey = sha256(key_prefix + secret + place).digest()
            encrypt = new_aead(rkey).encrypt
            place = aad_prefix + place + b"\n"
            # The nonce hash's input shares the record key and the aad's prefix across fields.
            nonce_prefix = rkey + place
            values = list(values_of(record))
            places = (
                _PLAINTEXT_DETAIL_PLACES
                if record.kind in PLAINTEXT_DETAIL_KINDS
                else _PERSONAL_PLACES
            )
            for position, name in places:
                value = values[position]
                if value is not None:
                    # _seal_value inlined (same bytes): one Python call less per field.
                    plaintext = value.encode("utf-8")
                    nonce = sha256(nonce_prefix + name + b"\n" + plaintext).digest()[:NONCE_BYTES]
                    sealed = nonce + encrypt(nonce, plaintext, place + name)
                    values[position] = prefix + b64(sealed, newline=False).decode("ascii")
            # A new frozen record from its field values (dataclasses.replace costs six times more).
            sealed_record = new_object(record_type)
            for set_slot, value in zip(setters, values, strict=True):
                set_slot(sealed_record, value)
            append(sealed_record)
        return out


# --- reading --------------------------------------------------------------------------------------


class KeyLookup:
    """What :func:`open_table` needs: a record's key, or None when it was erased.

    A data-key store derives record keys from the data keys it holds; an evidence bundle
    lists the record keys it discloses.
    """

    def key(self, key_id: str) -> DataKey | None:  # pragma: no cover - interface
        """The data key, or None when an erasure destroyed it; raises when it is unknown."""
        raise NotImplementedError

    def record_key(self, key_id: str, chain_id: str, record_id: str) -> bytes | None:
        """The record key of one record's envelopes; None when erased; raises when unknown."""
        key = self.key(key_id)
        return None if key is None else record_key(key, chain_id, record_id)


# Result columns that hold a personal field under another name: column → (field, the columns
# naming the chain and the record whose envelope it is). The ``statuses`` view joins each
# status to its message's text.
ALIASES: dict[str, tuple[str, str, str]] = {"msg_text": ("text", "chain_id", "msg_record_id")}


def open_table(table: pa.Table, keys: KeyLookup) -> pa.Table:
    """``table`` with the personal fields of its version-2 rows opened (or ``[erased]``).

    Only the rows given are decrypted: call it on a statement's result, never on a scan, and
    the statements behind flag and count reports return no personal column at all. A personal
    column is opened under its own name (or an :data:`ALIASES` name) when the result also holds
    the columns that name its record (``chain_id`` and ``record_id``); otherwise
    :class:`DataKeyError` says to select them.
    """
    names = table.column_names
    specs = [(name, name, "chain_id", "record_id") for name in PERSONAL_FIELDS if name in names]
    specs += [(alias, *spec) for alias, spec in ALIASES.items() if alias in names]
    if not specs or table.num_rows == 0:
        return table
    versions = _versions(table)
    for column, field, chain_column, record_column in specs:
        values = table.column(column).to_pylist()
        # Only version-2 rows hold envelopes in their own columns; a joined column may hold
        # another row's envelope, so there the prefix decides.
        gate = versions if column == field else None
        rows = [
            row
            for row, value in enumerate(values)
            if isinstance(value, str)
            and value.startswith(ENVELOPE_PREFIX)
            and (gate is None or gate[row] == PERSONAL_RECORD_VERSION)
        ]
        if not rows:
            continue
        if chain_column not in names or record_column not in names:
            raise DataKeyError(
                f"column {column} holds sealed personal content; select {chain_column} and "
                f"{record_column} with it so it can be opened"
            )
        chains = table.column(chain_column).to_pylist()
        record_ids = table.column(record_column).to_pylist()
        for row in rows:
            key_id, sealed = _parse(values[row])
            rkey = keys.record_key(key_id, chains[row], record_ids[row])
            if rkey is None:
                values[row] = ERASED
            else:
                aad = field_aad(chains[row], record_ids[row], field)
                values[row] = open_sealed(rkey, aad, sealed, key_id=key_id)
        index = names.index(column)
        table = table.set_column(index, table.field(column), pa.array(values, pa.string()))
    return table


def _versions(table: pa.Table) -> list[int | None] | None:
    if "record_version" not in table.column_names:
        return None
    versions: list[int | None] = table.column("record_version").to_pylist()
    return versions


def holds_sealed_fields(table: pa.Table) -> bool:
    """Whether a personal column of ``table`` (under its name or an alias) holds an envelope."""
    for name in (*PERSONAL_FIELDS, *ALIASES):
        if name not in table.column_names or not pa.types.is_string(table.schema.field(name).type):
            continue
        if pc.any(pc.starts_with(table.column(name), ENVELOPE_PREFIX)).as_py():
            return True
    return False


def open_if_sealed(table: pa.Table, keys: KeyLookup | None) -> pa.Table:
    """``open_table`` when keys are given; without them, refuse a table holding envelopes
    rather than show or index ciphertext as if it were the text."""
    if keys is not None:
        return open_table(table, keys)
    if holds_sealed_fields(table):
        raise DataKeyError(
            "these records were sealed with their personal content encrypted and no data-key "
            "store was found: set COEXARCHIVE_DATA_KEYS (and COEXARCHIVE_DATA_KEY_KMS in "
            "production) to the archive's data-key directory"
        )
    return table
