"""A hit quotes a customer: its personal part sealed under the customer's data key.

A ``hit`` record states which policy, rule and message matched (evidence that supervision
happened, counted by the review reports without any key) and what matched: the customer and
the words of the message (``spans``). When the customer has a data key (the archive seals
personal content, ``schemas/SEALING.md`` "Record version 2"), the words and the customer are
sealed together as one envelope in the detail member ``personal``::

    {"policy": ..., "rule": ..., "chain": ..., "record_id": ..., "flags": [...],
     "personal": "enc1:<key id>:<base64>"}

The envelope is the enc1 envelope of version-2 fields (same record key, same synthetic nonce),
over the canonical JSON of ``{"customer": ..., "spans": [...]}``, with the field name
``detail.personal`` in its associated data and the hit record's own chain and id. So the hit's
leaf commits to the ciphertext (verification needs no key), and erasing the customer (destroying
the key) leaves the hit readable as a fact and its words unrecoverable: readers show
``[erased]``. A hit whose customer has no data key (archives that do not seal personal content,
and every hit sealed before this) keeps ``customer`` and ``spans`` in plaintext, as before.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import orjson

from coexarchive.errors import FormatError
from coexarchive.seal.personal import (
    ERASED,
    DataKey,
    KeyLookup,
    envelope_key_id,
    field_aad,
    open_sealed,
    seal_field,
)

__all__ = [
    "HIT_FIELD",
    "PERSONAL_MEMBER",
    "SEALED",
    "open_hit_detail",
    "open_note",
    "seal_hit_detail",
    "seal_note",
]

PERSONAL_MEMBER: Final = "personal"
HIT_FIELD: Final = "detail.personal"
NOTE_FIELD: Final = "detail.note"
# What a reader without the data-key store shows in place of the sealed part.
SEALED: Final = "[sealed]"
_QUOTING: Final = ("customer", "spans")


def seal_hit_detail(
    detail: Mapping[str, Any], key: DataKey, chain_id: str, record_id: str
) -> dict[str, Any]:
    """``detail`` with ``customer`` and ``spans`` replaced by their envelope under ``key``."""
    personal = {name: detail.get(name) for name in _QUOTING}
    sealed = {name: value for name, value in detail.items() if name not in _QUOTING}
    text = orjson.dumps(personal, option=orjson.OPT_SORT_KEYS).decode()
    sealed[PERSONAL_MEMBER] = seal_field(key, chain_id, record_id, HIT_FIELD, text)
    return sealed


def _open(envelope: str, chain_id: str, record_id: str, field: str, keys: KeyLookup) -> str | None:
    """The plaintext of an inner envelope, or None when the key was destroyed."""
    key_id = envelope_key_id(envelope)  # FormatError when it is no envelope
    try:
        sealed = base64.b64decode(envelope.rpartition(":")[2], validate=True)
    except binascii.Error:  # pragma: no cover - envelope_key_id already checked the base64
        raise FormatError("an enc1 envelope's base64 is malformed") from None
    rkey = keys.record_key(key_id, chain_id, record_id)
    if rkey is None:
        return None
    return open_sealed(rkey, field_aad(chain_id, record_id, field), sealed, key_id=key_id)


def open_hit_detail(
    detail: Mapping[str, Any], chain_id: str, record_id: str, keys: KeyLookup | None
) -> Mapping[str, Any]:
    """``detail`` of the hit ``record_id`` sealed in ``chain_id``, its personal part opened.

    A plaintext detail comes back as it is. After an erasure ``customer`` reads ``[erased]``
    and there are no spans (``erased`` is true); without keys, ``[sealed]`` (``sealed`` true).
    A tag that does not verify raises :class:`coexarchive.errors.DecryptionError`.
    """
    envelope = detail.get(PERSONAL_MEMBER)
    if envelope is None:
        return detail
    if not isinstance(envelope, str):
        raise FormatError(f"hit {record_id}: its sealed part is not an enc1 envelope")
    opened = {name: value for name, value in detail.items() if name != PERSONAL_MEMBER}
    if keys is None:
        envelope_key_id(envelope)
        return {**opened, "customer": SEALED, "spans": [], "sealed": True}
    text = _open(envelope, chain_id, record_id, HIT_FIELD, keys)
    if text is None:
        return {**opened, "customer": ERASED, "spans": [], "erased": True}
    personal = orjson.loads(text)
    if not isinstance(personal, dict) or set(personal) != set(_QUOTING):
        raise FormatError(f"hit {record_id}: its sealed part is not {{customer, spans}}")
    return {**opened, **personal}


def seal_note(note: str, key: DataKey, chain_id: str, record_id: str) -> str:
    """A reviewer's note on a sealed hit, as an envelope under the hit's customer's key."""
    return seal_field(key, chain_id, record_id, NOTE_FIELD, note)


def open_note(note: Any, chain_id: str, record_id: str, keys: KeyLookup | None) -> str | None:
    """A decision's note as a reader may show it: opened, ``[erased]`` or ``[sealed]``."""
    if not isinstance(note, str) or not note.startswith("enc1:"):
        return note if note is None else str(note)
    if keys is None:
        envelope_key_id(note)
        return SEALED
    text = _open(note, chain_id, record_id, NOTE_FIELD, keys)
    return ERASED if text is None else text
