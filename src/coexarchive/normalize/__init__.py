"""Webhook delivery bodies → archive records and quarantined items (pure: no clock, env or I/O).

:func:`normalize_delivery` never raises on bad input. A body that cannot be read as a WhatsApp
webhook at all is quarantined whole, with its exact bytes; an entry, change or item that fails is
quarantined alone (re-serialised, with its JSON path) while its valid siblings become records.
The identity rule of every record kind, and what ``detail`` holds, is in
``schemas/RECORD_KINDS.md``.

Modules, one per webhook field family: ``body`` (parse, envelope, routing, and
:func:`normalize_delivery`), ``messages`` (messages, echoes, statuses), ``fast`` (the fast path
for plain texts and statuses), ``history``, ``contacts`` (state sync, preferences),
``management`` (templates, account, phone quality, unmodelled shapes), ``outbound`` (captures),
and ``_base`` (what they share).

Numbers: bodies are parsed with orjson. When a body holds a number with a fraction or exponent,
or an integer too long for 64 bits, it is parsed again with the standard library so that each
such number is kept as its exact source text (a JSON string in ``detail``), never a float.
"""

from __future__ import annotations

from coexarchive.normalize._base import (
    DETAIL_VERSION,
    MAX_BODY_BYTES,
    MAX_DEPTH,
    NormalizeResult,
    Quarantined,
    message_record_id,
)
from coexarchive.normalize.body import normalize_delivery

__all__ = [
    "DETAIL_VERSION",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "NormalizeResult",
    "Quarantined",
    "message_record_id",
    "normalize_delivery",
]
