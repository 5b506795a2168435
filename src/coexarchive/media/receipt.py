"""The media fetch receipt: what the fetcher lands in ``raw/`` for ingest to seal.

A receipt is a landing line with ``source: "media"`` (``schemas/RAW_LANDING.md`` §4a), signed with
the media receipt secret. It says which message's attachment was fetched, and either where its
bytes are stored (content-addressed, by SHA-256) or why they could not be. Ingest turns it into a
``media`` record in the message's chain, so the one writer of each chain stays the ingest job.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

RECEIPT_FORMAT = "coexarchive.media-receipt/v1"
MEDIA_PREFIX = "media/v1/"
MEDIA_GAP = "media_gap"
LINK_MEDIA_PREFIX = "link:"  # the media id a receipt gives a send by link: ``link:<wamid>``

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MEDIA_KEY = re.compile(r"media/v1/sha256=[0-9a-f]{64}")


class Outcome(StrEnum):
    STORED = "stored"
    FAILED = "failed"


class Cause(StrEnum):
    """Why a fetch failed. The first four are final at once; the others are retried."""

    EXPIRED = "expired"  # Graph no longer knows the id and the 7-day window has passed
    NOT_FOUND = "not_found"  # Graph does not know the id (inside the window)
    TOO_LARGE = "too_large"  # over WhatsApp's size limit for the media type
    FORBIDDEN = "forbidden"  # Graph refuses this id to the configured token
    HASH_MISMATCH = "hash_mismatch"  # the bytes do not hash to Meta's sha256
    SIZE_MISMATCH = "size_mismatch"  # the bytes are not Meta's file_size long
    TRUNCATED = "truncated"  # the download ended before its Content-Length
    RATE_LIMITED = "rate_limited"  # 429 or one of Graph's rate-limit error codes
    SERVER_ERROR = "server_error"  # 5xx, or an answer that is not what Graph documents
    URL_EXPIRED = "url_expired"  # the 5-minute download URL expired before it was used
    NETWORK = "network"  # connection refused, reset or timed out


FINAL_CAUSES = frozenset({Cause.EXPIRED, Cause.NOT_FOUND, Cause.TOO_LARGE, Cause.FORBIDDEN})

# WhatsApp's limits per media type (Cloud API "supported media types"), in bytes.
MB = 1024 * 1024
SIZE_LIMITS = {
    "image": 5 * MB,
    "audio": 16 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 500 * 1024,  # animated; a static sticker is at most 100 KB
}
STATIC_STICKER_LIMIT = 100 * 1024


def size_limit(msg_type: str | None, mime_type: str | None, *, animated: bool = False) -> int:
    """The largest attachment WhatsApp allows for a message of ``msg_type``."""
    if msg_type == "sticker":
        return SIZE_LIMITS["sticker"] if animated else STATIC_STICKER_LIMIT
    if msg_type in SIZE_LIMITS:
        return SIZE_LIMITS[msg_type]
    major = (mime_type or "").split("/", 1)[0]
    return SIZE_LIMITS.get(major, SIZE_LIMITS["document"])


def media_key(sha256_hex: str) -> str:
    """Where bytes with this SHA-256 are stored: one object per distinct content."""
    if not _SHA256_HEX.fullmatch(sha256_hex):
        raise ValueError("media key needs a lower-case hex SHA-256")
    return f"{MEDIA_PREFIX}sha256={sha256_hex}"


def is_media_key(key: str) -> bool:
    return _MEDIA_KEY.fullmatch(key) is not None


def sha256_as_hex(advertised: str | None) -> str | None:
    """Meta's ``sha256`` as lower-case hex: webhooks send base64, the media endpoint hex."""
    if not advertised:
        return None
    text = advertised.strip()
    if _SHA256_HEX.fullmatch(text.lower()):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
    return raw.hex() if len(raw) == 32 else None


@dataclass(frozen=True)
class MediaRef:
    """One attachment a sealed message refers to, as the fetcher found it."""

    chain_id: str
    media_id: str
    record_id: str  # the message's record id (its ``message`` identity)
    wamid: str | None
    kind: str  # the referencing record's kind (its retention class)
    msg_type: str | None
    mime_type: str | None
    advertised_sha256: str | None  # as the webhook or capture gave it (base64 or hex)
    captured_time: int  # ms: when the archive learned of the id (the 7-day window runs from it)
    customer_id: str | None = None
    filename: str | None = None
    animated: bool = False
    # A send by ``link``: the URL to download (no Graph id to resolve). Never in the receipt: a
    # link may carry a signed query string; the receipt names it by ``media_id`` (``link:<wamid>``).
    link: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Receipt:
    """The outcome of fetching one attachment."""

    ref: MediaRef
    outcome: Outcome
    fetched_at: int
    attempts: int
    cause: Cause | None = None
    sha256: str | None = None  # hex SHA-256 of the stored bytes
    size: int | None = None
    mime_type: str | None = None  # as Graph answered
    object_key: str | None = None
    graph_sha256: str | None = None  # as Graph answered
    graph_file_size: int | None = None
    stored: str | None = None  # "created" or "existing" (the same bytes were already there)

    def body(self) -> bytes:
        """The receipt's landing body: canonical JSON (keys sorted, compact)."""
        ref = self.ref
        tree: dict[str, Any] = {
            "format": RECEIPT_FORMAT,
            "phone_number_id": ref.chain_id,
            "media_id": ref.media_id,
            "completes": {
                "record_id": ref.record_id,
                "wamid": ref.wamid,
                "kind": ref.kind,
                "msg_type": ref.msg_type,
                "customer_id": ref.customer_id,
                "captured_time": ref.captured_time,
                "advertised_sha256": ref.advertised_sha256,
                "filename": ref.filename,
            },
            "outcome": self.outcome.value,
            "cause": self.cause.value if self.cause else None,
            "sha256": self.sha256,
            "size": self.size,
            "mime_type": self.mime_type or ref.mime_type,
            "object_key": self.object_key,
            "graph": {"sha256": self.graph_sha256, "file_size": self.graph_file_size},
            "stored": self.stored,
            "fetched_at": self.fetched_at,
            "attempts": self.attempts,
        }
        return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)
