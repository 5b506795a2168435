"""Media fetch receipts (``source: "media"``) → ``media`` records (RAW_LANDING.md §4a)."""

from __future__ import annotations

from typing import Any

import orjson

from coexarchive.media.receipt import (
    MEDIA_GAP,
    RECEIPT_FORMAT,
    Cause,
    Outcome,
    is_media_key,
)
from coexarchive.normalize._base import _CHAIN_ID, DETAIL_VERSION, _Rejected, _Sink
from coexarchive.records import Direction, Kind, Origin, Record, stable_id

_OUTCOMES = frozenset(outcome.value for outcome in Outcome)
_CAUSES = frozenset(cause.value for cause in Cause)


def media_receipt_record(tree: Any, sink: _Sink) -> Record:
    """The ``media`` record of one receipt; one identity per chain and media id.

    Whatever the outcome, a media id gets one ``media`` record: a re-run or a crashed fetch that
    landed its receipt twice is a duplicate for the dedup stage, never a second record.
    """
    if type(tree) is not dict or tree.get("format") != RECEIPT_FORMAT:
        raise _Rejected(f"media receipt: format is not {RECEIPT_FORMAT!r}")
    chain_id = _text(tree, "phone_number_id")
    if not _CHAIN_ID.fullmatch(chain_id):
        raise _Rejected("media receipt: phone_number_id is not a valid chain id")
    media_id = _text(tree, "media_id")
    completes = tree.get("completes")
    if type(completes) is not dict:
        raise _Rejected("media receipt: completes must be an object")
    record_id = _text(completes, "record_id")
    outcome = _text(tree, "outcome")
    if outcome not in _OUTCOMES:
        raise _Rejected("media receipt: unknown outcome")
    cause = tree.get("cause")
    fetched_at = tree.get("fetched_at")
    if type(fetched_at) is not int or fetched_at <= 0:
        raise _Rejected("media receipt: fetched_at must be a positive integer")
    if outcome == Outcome.STORED:
        _check_stored(tree)
        if cause is not None:
            raise _Rejected("media receipt: a stored outcome has no cause")
    elif cause not in _CAUSES:
        raise _Rejected("media receipt: a failed outcome needs a known cause")
    # A document's file name is the customer's content: it goes to ``text``, sealed like a
    # caption, and the detail keeps only facts ``verify`` reads without keys (SEALING.md).
    filename = _optional(completes, "filename")
    receipt = {**tree, "completes": {k: v for k, v in completes.items() if k != "filename"}}
    detail = {
        "v": DETAIL_VERSION,
        "field": "media_fetch",
        "path": "$",
        "time_source": "fetched_at",
        "raw": receipt,
        **sink.auth,
    }
    return Record(
        chain_id=chain_id,
        record_id=stable_id("media", chain_id, media_id),
        kind=Kind.MEDIA.value,
        origin=Origin.SYSTEM.value,
        direction=Direction.NONE.value,
        event_time=fetched_at,
        received_time=sink.received_time,
        customer_id=_optional(completes, "customer_id"),
        wamid=_optional(completes, "wamid"),
        msg_type=_optional(completes, "msg_type"),
        media_id=media_id,
        text=filename,
        status=outcome,
        ref_record_id=record_id,
        flags=(MEDIA_GAP,) if outcome == Outcome.FAILED else (),
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        raw_key=sink.raw_key,
        raw_line=sink.raw_line,
    )


def _check_stored(tree: dict[str, Any]) -> None:
    sha256, size, key = tree.get("sha256"), tree.get("size"), tree.get("object_key")
    if type(sha256) is not str or type(key) is not str or not is_media_key(key):
        raise _Rejected("media receipt: a stored outcome needs sha256 and a media object key")
    if key != f"media/v1/sha256={sha256}":
        raise _Rejected("media receipt: object_key is not the key of its sha256")
    if type(size) is not int or size < 0:
        raise _Rejected("media receipt: size must be a non-negative integer")


def _text(tree: dict[str, Any], name: str) -> str:
    value = tree.get(name)
    if type(value) is not str or not value or len(value) > 256:
        raise _Rejected(f"media receipt: {name} must be a non-empty string")
    return value


def _optional(tree: dict[str, Any], name: str) -> str | None:
    value = tree.get(name)
    return value if type(value) is str and len(value) <= 512 else None
