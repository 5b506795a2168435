"""Sealing: canonical bytes → RFC 6962 leaf hash → hash chain, for batches of records.

``chain_hash[n] = SHA-256(chain_hash[n-1] || leaf_hash[n])`` with ``chain_hash[-1] =
genesis(chain_id)``. The canonical bytes of a record are the RFC 8785 bytes of
:func:`coexarchive.records.sealed_fields`; the functions here produce exactly those bytes
without going through that dictionary, and tests hold them to it.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pyarrow as pa

from coexarchive.errors import CanonicalizationError, FormatError, ProofError, SealError
from coexarchive.records import (
    RECORD_SCHEMA,
    RECORD_VERSION,
    SEALED_FIELDS,
    Record,
    SealedRecord,
    sealed_fields,
)
from coexarchive.seal.canonical import canonical_bytes

__all__ = [
    "GENESIS_PREFIX",
    "chain_step",
    "genesis",
    "recompute_leaf_hashes",
    "seal_records",
    "sealed_object",
    "verify_chain",
]

GENESIS_PREFIX = b"coexarchive/chain/v1\n"

_sha256 = hashlib.sha256
_LEAF = b"\x00"
# Sealed field names are ASCII, so code-point order is JCS's UTF-16 order and orjson may keep
# insertion order instead of sorting: the builders below insert keys in exactly this order.
_JCS_ORDER: tuple[str, ...] = tuple(sorted(SEALED_FIELDS))
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_STR_TYPES = frozenset({str})
_FLAG_CONTAINERS = frozenset({tuple, list})
_TIMESTAMP_COLUMNS = ("event_time", "received_time")
_ORJSON_OPTIONS = orjson.OPT_STRICT_INTEGER


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for one batch.

    A batch allocates one long-lived, acyclic object per record; left on, the collector
    re-traverses all of them every few hundred allocations and costs about a fifth of the time.
    Reference counting still frees everything as usual.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def genesis(chain_id: str) -> bytes:
    """The chain hash before record 0: ``SHA-256("coexarchive/chain/v1\\n" || chain_id)``."""
    return _sha256(GENESIS_PREFIX + chain_id.encode("utf-8")).digest()


def chain_step(prev: bytes, leaf: bytes) -> bytes:
    """The next chain hash: ``SHA-256(prev || leaf)``."""
    return _sha256(prev + leaf).digest()


def verify_chain(
    leaf_hashes: Sequence[bytes],
    chain_hashes: Sequence[bytes],
    *,
    prev_chain_hash: bytes,
    first_seq: int = 0,
) -> None:
    """Check stored chain hashes against leaf hashes; :class:`ProofError` at the first break."""
    if len(leaf_hashes) != len(chain_hashes):
        raise ProofError(f"{len(leaf_hashes)} leaf hashes but {len(chain_hashes)} chain hashes")
    expected = prev_chain_hash
    for offset, (leaf, stored) in enumerate(zip(leaf_hashes, chain_hashes, strict=True)):
        expected = _sha256(expected + leaf).digest()
        if stored != expected:
            raise ProofError(f"hash chain breaks at seq {first_seq + offset}")


def sealed_object(record: Record, seq: int) -> dict[str, Any]:
    """``records.sealed_fields(record, seq)`` with keys in JCS order (flags stay a tuple)."""
    fields = _scalar_fields(record, seq)
    fields["flags"] = record.flags
    return fields


def _scalar_fields(record: Record, seq: int) -> dict[str, Any]:
    """The sealed object with ``flags`` set to None, so one type check covers every scalar."""
    r = record
    return {
        "business_phone": r.business_phone,
        "chain_id": r.chain_id,
        "consent_state": r.consent_state,
        "context_wamid": r.context_wamid,
        "customer_id": r.customer_id,
        "customer_user_id": r.customer_user_id,
        "customer_wa_id": r.customer_wa_id,
        "detail": r.detail,
        "direction": r.direction,
        "error_code": r.error_code,
        "event_time": r.event_time,
        "flags": None,
        "kind": r.kind,
        "media_id": r.media_id,
        "msg_type": r.msg_type,
        "origin": r.origin,
        "raw_key": r.raw_key,
        "raw_line": r.raw_line,
        "received_time": r.received_time,
        "record_id": r.record_id,
        "record_version": RECORD_VERSION,
        "ref_record_id": r.ref_record_id,
        "seq": seq,
        "status": r.status,
        "template_category": r.template_category,
        "template_language": r.template_language,
        "template_name": r.template_name,
        "template_status": r.template_status,
        "text": r.text,
        "waba_id": r.waba_id,
        "wamid": r.wamid,
        "window_open": r.window_open,
    }


def _refill(fields: dict[str, Any], record: Record, seq: int) -> None:
    """``_scalar_fields(record, seq)`` written into ``fields`` (``record_version`` aside).

    One dict per batch, refilled in place: its keys stay in JCS order, and a new dict per record
    cost twice as much. ``tests/unit/seal`` holds the bytes to ``sealed_fields``.
    """
    fields["business_phone"] = record.business_phone
    fields["chain_id"] = record.chain_id
    fields["consent_state"] = record.consent_state
    fields["context_wamid"] = record.context_wamid
    fields["customer_id"] = record.customer_id
    fields["customer_user_id"] = record.customer_user_id
    fields["customer_wa_id"] = record.customer_wa_id
    fields["detail"] = record.detail
    fields["direction"] = record.direction
    fields["error_code"] = record.error_code
    fields["event_time"] = record.event_time
    fields["flags"] = None
    fields["kind"] = record.kind
    fields["media_id"] = record.media_id
    fields["msg_type"] = record.msg_type
    fields["origin"] = record.origin
    fields["raw_key"] = record.raw_key
    fields["raw_line"] = record.raw_line
    fields["received_time"] = record.received_time
    fields["record_id"] = record.record_id
    fields["ref_record_id"] = record.ref_record_id
    fields["seq"] = seq
    fields["status"] = record.status
    fields["template_category"] = record.template_category
    fields["template_language"] = record.template_language
    fields["template_name"] = record.template_name
    fields["template_status"] = record.template_status
    fields["text"] = record.text
    fields["waba_id"] = record.waba_id
    fields["wamid"] = record.wamid
    fields["window_open"] = record.window_open


# One parameter per sealed column, in JCS order, so ``map`` can feed it the columns directly.
def _row_object(
    business_phone: Any,
    chain_id: Any,
    consent_state: Any,
    context_wamid: Any,
    customer_id: Any,
    customer_user_id: Any,
    customer_wa_id: Any,
    detail: Any,
    direction: Any,
    error_code: Any,
    event_time: Any,
    flags: Any,
    kind: Any,
    media_id: Any,
    msg_type: Any,
    origin: Any,
    raw_key: Any,
    raw_line: Any,
    received_time: Any,
    record_id: Any,
    record_version: Any,
    ref_record_id: Any,
    seq: Any,
    status: Any,
    template_category: Any,
    template_language: Any,
    template_name: Any,
    template_status: Any,
    text: Any,
    waba_id: Any,
    wamid: Any,
    window_open: Any,
) -> dict[str, Any]:
    return {
        "business_phone": business_phone,
        "chain_id": chain_id,
        "consent_state": consent_state,
        "context_wamid": context_wamid,
        "customer_id": customer_id,
        "customer_user_id": customer_user_id,
        "customer_wa_id": customer_wa_id,
        "detail": detail,
        "direction": direction,
        "error_code": error_code,
        "event_time": event_time,
        "flags": flags,
        "kind": kind,
        "media_id": media_id,
        "msg_type": msg_type,
        "origin": origin,
        "raw_key": raw_key,
        "raw_line": raw_line,
        "received_time": received_time,
        "record_id": record_id,
        "record_version": record_version,
        "ref_record_id": ref_record_id,
        "seq": seq,
        "status": status,
        "template_category": template_category,
        "template_language": template_language,
        "template_name": template_name,
        "template_status": template_status,
        "text": text,
        "waba_id": waba_id,
        "wamid": wamid,
        "window_open": window_open,
    }


def seal_records(
    records: Sequence[Record],
    *,
    first_seq: int,
    prev_chain_hash: bytes,
    record_version: int = RECORD_VERSION,
) -> list[SealedRecord]:
    """Give each record its ``seq`` (from ``first_seq``), leaf hash and chain hash.

    ``record_version`` is the version every record of the batch is sealed as: 2 when the
    records' personal fields already hold their envelopes (``seal.personal``).

    ``prev_chain_hash`` is the chain hash of record ``first_seq - 1`` (``genesis(chain_id)`` for
    the first batch of a chain). Raises :class:`CanonicalizationError` if a record holds a value
    with no canonical form (a float, an integer beyond 2**53 - 1, an object of another type).
    """
    if first_seq < 0:
        raise SealError(f"first seq {first_seq} is negative")
    if len(prev_chain_hash) != 32:
        raise SealError("the previous chain hash must be 32 bytes")
    sealed: list[SealedRecord] = []
    append = sealed.append
    dumps = orjson.dumps
    options = _ORJSON_OPTIONS
    sha256 = _sha256
    leaf_prefix = _LEAF
    refill = _refill
    # One dict for the batch, keys in JCS order (see _refill); record_version is the batch's.
    fields: dict[str, Any] = dict.fromkeys(_JCS_ORDER)
    fields["record_version"] = RECORD_VERSION
    if record_version != RECORD_VERSION:
        fields["record_version"] = record_version
    # Types are checked once per batch: one set of every value's type, then a precise
    # per-record check only if something unexpected turned up.
    value_types: set[type] = set()
    add_value_types = value_types.update
    flag_types: set[type] = set()
    add_flag_types = flag_types.update
    flag_containers: set[type] = set()
    add_flag_container = flag_containers.add
    chain_hash = prev_chain_hash
    seq = first_seq
    try:
        with _cyclic_gc_paused():
            for record in records:
                refill(fields, record, seq)
                add_value_types(map(type, fields.values()))
                flags = record.flags
                add_flag_container(type(flags))
                if flags:
                    add_flag_types(map(type, flags))
                fields["flags"] = flags
                leaf = sha256(leaf_prefix + dumps(fields, option=options)).digest()
                chain_hash = sha256(chain_hash + leaf).digest()
                append(SealedRecord(record, seq, leaf, chain_hash))
                seq += 1
    except orjson.JSONEncodeError:
        _check_records(records, first_seq)
        raise CanonicalizationError("a record holds a value with no canonical encoding") from None
    if not (
        value_types <= _PLAIN_TYPES
        and flag_types <= _STR_TYPES
        and flag_containers <= _FLAG_CONTAINERS
    ):
        # Either a value with no canonical form, or a str/int subclass (StrEnum, IntEnum),
        # which orjson writes as its plain value exactly as JCS does.
        _check_records(records, first_seq)
    return sealed


def _check_records(records: Iterable[Record], first_seq: int) -> None:
    """Raise the precise canonicalization error of the first offending record, if any."""
    for offset, record in enumerate(records):
        seq = first_seq + offset
        try:
            fields = sealed_fields(record, seq)
            for name, value in fields.items():
                _check_field(name, value)
            canonical_bytes(fields)
        except CanonicalizationError as exc:
            raise CanonicalizationError(f"record {record.record_id!r} (seq {seq}): {exc}") from None


def _check_field(name: str, value: Any) -> None:
    if name == "flags":
        if not isinstance(value, list | tuple) or not all(isinstance(f, str) for f in value):
            raise CanonicalizationError("flags must all be strings")
    elif not (value is None or isinstance(value, str | int)):
        raise CanonicalizationError(
            f"field {name!r} holds a {type(value).__name__}, not a string, integer, boolean or null"
        )


def recompute_leaf_hashes(table: pa.Table) -> list[bytes]:
    """Leaf hashes recomputed from a sealed table's columns (``records.RECORD_SCHEMA``).

    Produces the same bytes as :func:`seal_records` for the same records; raises
    :class:`FormatError` if a sealed column is missing or has another type.
    """
    columns = []
    for name in _JCS_ORDER:
        expected = RECORD_SCHEMA.field(name).type
        index = table.schema.get_field_index(name)
        if index < 0:
            raise FormatError(f"sealed column {name!r} is missing")
        column = table.column(index)
        if not column.type.equals(expected):
            raise FormatError(f"sealed column {name!r} is {column.type}, expected {expected}")
        if name in _TIMESTAMP_COLUMNS:
            # Integer milliseconds are both the canonical form and much faster than datetimes.
            column = column.cast(pa.int64())
        with _cyclic_gc_paused():
            columns.append(column.to_pylist())
    dumps = orjson.dumps
    options = _ORJSON_OPTIONS
    sha256 = _sha256
    leaf_prefix = _LEAF
    try:
        with _cyclic_gc_paused():
            return [
                sha256(leaf_prefix + dumps(fields, option=options)).digest()
                for fields in map(_row_object, *columns)
            ]
    except orjson.JSONEncodeError as exc:
        raise CanonicalizationError(f"a stored value has no canonical encoding: {exc}") from None
