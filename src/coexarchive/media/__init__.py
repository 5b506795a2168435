"""Attachments: fetching media from the Graph API, storing it content-addressed, checking it.

``receipt`` is the format the fetcher lands in ``raw/`` (sealed by ingest as ``media`` records),
``graph`` the client of Meta's media endpoints, ``fetch`` the job (``coexarchive media fetch``),
``objects`` the content-addressed store of the bytes, ``check`` the verification of stored media
against sealed records.
"""

from coexarchive.media.receipt import (
    FINAL_CAUSES,
    MEDIA_GAP,
    MEDIA_PREFIX,
    Cause,
    MediaRef,
    Outcome,
    Receipt,
    media_key,
    sha256_as_hex,
    size_limit,
)

__all__ = [
    "FINAL_CAUSES",
    "MEDIA_GAP",
    "MEDIA_PREFIX",
    "Cause",
    "MediaRef",
    "Outcome",
    "Receipt",
    "media_key",
    "sha256_as_hex",
    "size_limit",
]
