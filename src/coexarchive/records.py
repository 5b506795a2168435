"""The archive record: one row per archived event, frozen and exact.

The field list, their order and their canonical encoding are normative (``schemas/SEALING.md``);
changing them means a new ``record_version``. Sealed fields hold no floats: decimals travel as
strings, times as integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

import pyarrow as pa

RECORD_VERSION = 1

RecordId = NewType("RecordId", str)
ChainId = NewType("ChainId", str)


class Kind(StrEnum):
    """What an archived event is."""

    MESSAGE = "message"  # inbound from a customer (live)
    ECHO = "echo"  # sent from the WhatsApp Business App on the shared number
    OUTBOUND = "outbound"  # sent through the Cloud API, captured from the sending system
    HISTORY_MESSAGE = "history_message"  # imported at onboarding from the phone's history
    MESSAGE_EDIT = "message_edit"  # an edit of an earlier message (original kept)
    MESSAGE_REVOKE = "message_revoke"  # a revoke ("delete for everyone") of an earlier message
    STATUS = "status"  # delivery status of a business-sent message
    CONTACT_CHANGE = "contact_change"  # smb_app_state_sync contact add/edit/remove
    TEMPLATE_EVENT = "template_event"  # template status, quality or category update
    CONSENT_EVENT = "consent_event"  # opt-in / opt-out (webhook, keyword, CRM import)
    ACCOUNT_EVENT = "account_event"  # account_update, phone quality, history declined
    OBSERVATION = "observation"  # a second sighting of an already-sealed event
    UNSUPPORTED = "unsupported"  # a shape we do not model yet, archived whole
    ASSESSMENT = "assessment"  # a later re-assessment of an earlier record's flags
    ACCESS = "access"  # an auditor query or export (access-log chain)
    HOLD = "hold"  # a legal-hold placement or release (hold register chain)
    DISPOSITION = "disposition"  # segments whose content was deleted (dispositions chain)
    POLICY = "policy"  # a supervision policy version (policies chain)
    HIT = "hit"  # a message that met a rule of a supervision policy (reviews chain)
    REVIEW = "review"  # a reviewer's assignment, decision or re-opening, or a scan (reviews chain)
    ERASURE = "erasure"  # a customer's data keys destroyed (erasures chain)
    MEDIA = "media"  # the outcome of fetching a message's attachment (stored bytes or the cause)


class Origin(StrEnum):
    """Which side of the Coexistence number produced the event."""

    CUSTOMER = "customer"
    BUSINESS_APP = "business_app"
    CLOUD_API = "cloud_api"
    HISTORY_IMPORT = "history_import"
    SYSTEM = "system"
    CRM = "crm"
    AUDITOR = "auditor"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Record:
    """One archived event before sealing (no ``seq`` or hashes yet).

    ``detail`` is the full normalised event as canonical JSON text; typed fields repeat what
    auditors filter on.
    """

    chain_id: str
    record_id: str
    kind: str
    origin: str
    direction: str
    event_time: int  # ms since epoch, UTC
    received_time: int | None = None
    waba_id: str | None = None
    business_phone: str | None = None
    customer_id: str | None = None
    customer_wa_id: str | None = None
    customer_user_id: str | None = None
    wamid: str | None = None
    msg_type: str | None = None
    text: str | None = None
    media_id: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_category: str | None = None
    template_status: str | None = None
    status: str | None = None
    error_code: int | None = None
    context_wamid: str | None = None
    ref_record_id: str | None = None
    consent_state: str | None = None
    window_open: bool | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    detail: str = "{}"
    raw_key: str | None = None
    raw_line: int | None = None


class _Unfrozen:
    """``Record``'s slots without its frozen ``__setattr__``: the layout ``__init__`` fills in."""

    __slots__ = Record.__slots__


_generated_init = Record.__init__
_set_class = object.__setattr__


def _init(
    self: Record,
    chain_id: str,
    record_id: str,
    kind: str,
    origin: str,
    direction: str,
    event_time: int,
    received_time: int | None = None,
    waba_id: str | None = None,
    business_phone: str | None = None,
    customer_id: str | None = None,
    customer_wa_id: str | None = None,
    customer_user_id: str | None = None,
    wamid: str | None = None,
    msg_type: str | None = None,
    text: str | None = None,
    media_id: str | None = None,
    template_name: str | None = None,
    template_language: str | None = None,
    template_category: str | None = None,
    template_status: str | None = None,
    status: str | None = None,
    error_code: int | None = None,
    context_wamid: str | None = None,
    ref_record_id: str | None = None,
    consent_state: str | None = None,
    window_open: bool | None = None,
    flags: tuple[str, ...] = (),
    detail: str = "{}",
    raw_key: str | None = None,
    raw_line: int | None = None,
) -> None:
    """``Record``'s dataclass ``__init__``, at a fifth of the cost.

    A frozen dataclass sets each of its 30 slots through ``object.__setattr__``, which costs more
    than normalising the event the record holds. Here the instance wears a class with the same
    slots and the plain ``__setattr__`` while its fields are stored, then its own class again; the
    result is the same object (``tests/unit/test_records_init.py`` holds both to it). A subclass
    may lay out its instances otherwise and takes the generated ``__init__``.
    """
    if type(self) is not Record:
        _generated_init(
            self, chain_id, record_id, kind, origin, direction, event_time, received_time, waba_id,
            business_phone, customer_id, customer_wa_id, customer_user_id, wamid, msg_type, text,
            media_id, template_name, template_language, template_category, template_status, status,
            error_code, context_wamid, ref_record_id, consent_state, window_open, flags, detail,
            raw_key, raw_line,
        )  # fmt: skip
        return
    row: Any = self
    _set_class(row, "__class__", _Unfrozen)
    row.chain_id = chain_id
    row.record_id = record_id
    row.kind = kind
    row.origin = origin
    row.direction = direction
    row.event_time = event_time
    row.received_time = received_time
    row.waba_id = waba_id
    row.business_phone = business_phone
    row.customer_id = customer_id
    row.customer_wa_id = customer_wa_id
    row.customer_user_id = customer_user_id
    row.wamid = wamid
    row.msg_type = msg_type
    row.text = text
    row.media_id = media_id
    row.template_name = template_name
    row.template_language = template_language
    row.template_category = template_category
    row.template_status = template_status
    row.status = status
    row.error_code = error_code
    row.context_wamid = context_wamid
    row.ref_record_id = ref_record_id
    row.consent_state = consent_state
    row.window_open = window_open
    row.flags = flags
    row.detail = detail
    row.raw_key = raw_key
    row.raw_line = raw_line
    row.__class__ = Record


setattr(Record, "__init__", _init)  # noqa: B010 - mypy refuses assigning to a method


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record with its place in its chain: ``seq``, ``leaf_hash`` and ``chain_hash``."""

    record: Record
    seq: int
    leaf_hash: bytes
    chain_hash: bytes


class _UnfrozenSealed:
    """``SealedRecord``'s slots without its frozen ``__setattr__`` (see ``_init``)."""

    __slots__ = SealedRecord.__slots__


_generated_sealed_init = SealedRecord.__init__


def _init_sealed(
    self: SealedRecord, record: Record, seq: int, leaf_hash: bytes, chain_hash: bytes
) -> None:
    """``SealedRecord``'s dataclass ``__init__`` at a third of the cost: one per sealed record."""
    if type(self) is not SealedRecord:
        _generated_sealed_init(self, record, seq, leaf_hash, chain_hash)
        return
    row: Any = self
    _set_class(row, "__class__", _UnfrozenSealed)
    row.record = record
    row.seq = seq
    row.leaf_hash = leaf_hash
    row.chain_hash = chain_hash
    row.__class__ = SealedRecord


setattr(SealedRecord, "__init__", _init_sealed)  # noqa: B010 - as for Record

# Field order of the Parquet table. Sealed fields are every column except the two hashes.
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Record))
SEALED_FIELDS: tuple[str, ...] = ("record_version", "seq", *RECORD_FIELDS)
HASH_FIELDS: tuple[str, ...] = ("leaf_hash", "chain_hash")

_TS = pa.timestamp("ms", tz="UTC")

RECORD_SCHEMA = pa.schema(
    [
        pa.field("record_version", pa.int32(), nullable=False),
        pa.field("chain_id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("received_time", _TS),
        pa.field("waba_id", pa.string()),
        pa.field("business_phone", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("customer_wa_id", pa.string()),
        pa.field("customer_user_id", pa.string()),
        pa.field("wamid", pa.string()),
        pa.field("msg_type", pa.string()),
        pa.field("text", pa.string()),
        pa.field("media_id", pa.string()),
        pa.field("template_name", pa.string()),
        pa.field("template_language", pa.string()),
        pa.field("template_category", pa.string()),
        pa.field("template_status", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error_code", pa.int64()),
        pa.field("context_wamid", pa.string()),
        pa.field("ref_record_id", pa.string()),
        pa.field("consent_state", pa.string()),
        pa.field("window_open", pa.bool_()),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw_key", pa.string()),
        pa.field("raw_line", pa.int64()),
        pa.field("leaf_hash", pa.binary(32), nullable=False),
        pa.field("chain_hash", pa.binary(32), nullable=False),
    ],
    metadata={b"coexarchive.record_version": str(RECORD_VERSION).encode()},
)


def sealed_fields(record: Record, seq: int) -> dict[str, Any]:
    """The object whose canonical (RFC 8785) bytes are hashed into the record's leaf."""
    values: dict[str, Any] = {"record_version": RECORD_VERSION, "seq": seq}
    for name in RECORD_FIELDS:
        value = getattr(record, name)
        values[name] = list(value) if name == "flags" else value
    return values


def stable_id(*parts: str | int | None) -> RecordId:
    """A deterministic record id: hex SHA-256 (first 32 digits) of the identity parts.

    Parts are joined with 0x1F (unit separator), which cannot occur in Meta's identifiers.
    """
    # A list, not a generator (join makes one anyway); plain strings skip the str() call.
    joined = "\x1f".join(
        [part if type(part) is str else "" if part is None else str(part) for part in parts]
    )
    return RecordId(hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32])


def sort_flags(flags: Sequence[str]) -> tuple[str, ...]:
    """Flags are stored sorted and unique so the same facts always seal to the same bytes."""
    return tuple(sorted(set(flags)))


def schema_document() -> dict[str, Any]:
    """The records table's Arrow schema as JSON, as published in ``schemas/record.schema.json``."""
    sealed = set(SEALED_FIELDS)
    return {
        "format": f"coexarchive.record/v{RECORD_VERSION}",
        "fields": [
            {
                "name": f.name,
                "type": str(f.type),
                "nullable": f.nullable,
                "sealed": f.name in sealed,
            }
            for f in RECORD_SCHEMA
        ],
    }
