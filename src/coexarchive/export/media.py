"""Attachments in an evidence bundle: ``media/<sha256 hex>``, one file per distinct content.

A bundle holds the bytes of every attachment a ``media`` record among its records says was
stored; the record (in ``records.jsonl``, with its inclusion proof) states the SHA-256 and size
the file must have. The exporter refuses to write a file the archive's object does not match,
and ``verify-bundle`` checks each file against the proven record (``schemas/BUNDLE.md``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coexarchive.errors import ObjectMissingError, ProofError
from coexarchive.export._rows import Row, detail_of
from coexarchive.media.receipt import media_key
from coexarchive.store.base import ObjectStore

MEDIA_DIR = "media/"
# Thumbnails of image attachments: derived files, shown by the transcripts, never evidence.
THUMBS_DIR = "thumbs/"
_HEX = re.compile(r"[0-9a-f]{64}")
_THUMB = re.compile(r"thumbs/([0-9a-f]{64})\.(?:jpg|png)")
_THUMB_EXT = {"image/jpeg": "jpg", "image/png": "png"}


@dataclass(frozen=True)
class Attachment:
    """What a proven ``media`` record says about its attachment."""

    seq: int
    chain_id: str
    media_id: str | None
    ref_record_id: str | None
    status: str
    cause: str | None
    sha256: str | None
    size: int | None
    mime_type: str | None
    filename: str | None
    thumb: str | None = None  # the bundle's thumbnail file of this image, if it has one

    @property
    def path(self) -> str | None:
        """The attachment's file in a bundle, for a stored one."""
        if self.status != "stored" or self.sha256 is None or not _HEX.fullmatch(self.sha256):
            return None
        return f"{MEDIA_DIR}{self.sha256}"


def attachment_of(row: Row) -> Attachment | None:
    """The attachment a ``media`` record row states, or None for any other row."""
    if row["kind"] != "media":
        return None
    raw = detail_of(row).get("raw")
    raw = raw if isinstance(raw, dict) else {}
    found = raw.get("completes")
    completes: dict[str, Any] = found if isinstance(found, dict) else {}
    size = raw.get("size")
    return Attachment(
        seq=int(row["seq"]),
        chain_id=str(row["chain_id"]),
        media_id=row["media_id"],
        ref_record_id=row["ref_record_id"],
        status=str(row["status"]),
        cause=_text(raw.get("cause")),
        sha256=_text(raw.get("sha256")),
        size=size if type(size) is int else None,
        mime_type=_text(raw.get("mime_type")),
        # In ``text`` (sealed with the personal fields); older records kept it in the receipt.
        filename=_text(row.get("text")) or _text(completes.get("filename")),
    )


def attachments(rows: Sequence[Row]) -> Iterator[Attachment]:
    for row in rows:
        found = attachment_of(row)
        if found is not None:
            yield found


def bundle_media(store: ObjectStore, rows: Sequence[Row]) -> dict[str, bytes]:
    """The ``media/`` files of a bundle holding ``rows``; refuses bytes the records disown."""
    files: dict[str, bytes] = {}
    for attachment in attachments(rows):
        path = attachment.path
        if path is None or path in files:
            continue
        assert attachment.sha256 is not None
        key = media_key(attachment.sha256)
        try:
            data = store.get(key)
        except ObjectMissingError:
            raise ProofError(
                f"chain {attachment.chain_id} seq {attachment.seq}: attachment {key} is missing "
                "from the archive (run `coexarchive verify`)"
            ) from None
        if len(data) != attachment.size or hashlib.sha256(data).hexdigest() != attachment.sha256:
            raise ProofError(
                f"chain {attachment.chain_id} seq {attachment.seq}: attachment {key} does not "
                "match its sealed sha256 and size; the archive was altered (run `coexarchive "
                "verify`)"
            )
        files[path] = data
    return files


def is_image(attachment: Attachment, msg_type: str | None = None) -> bool:
    """Whether transcripts show ``attachment`` as a picture."""
    mime = attachment.mime_type or ""
    return mime.startswith("image/") or msg_type in ("image", "sticker")


def bundle_thumbs(rows: Sequence[Row], media: Mapping[str, bytes]) -> dict[str, bytes]:
    """``thumbs/<sha256>.<jpg|png>`` for each stored image in ``media`` Pillow will thumbnail.

    Made from the bytes :func:`bundle_media` already checked; an image refused (a decompression
    bomb, unreadable, not an image at all) gets no file, and its transcript links the original.
    """
    from coexarchive.media.thumbs import thumbnail

    done: set[str] = set()
    files: dict[str, bytes] = {}
    for attachment in attachments(rows):
        path = attachment.path
        if path is None or path in done or not (attachment.mime_type or "").startswith("image/"):
            continue
        done.add(path)
        data = media.get(path)
        thumb = thumbnail(data, attachment.mime_type) if data is not None else None
        if thumb is not None:
            files[f"{THUMBS_DIR}{attachment.sha256}.{_THUMB_EXT[thumb.mime_type]}"] = thumb.data
    return files


def thumb_paths(files: Iterable[str]) -> dict[str, str]:
    """sha256 → thumbnail path, for the ``thumbs/`` files among ``files``."""
    found: dict[str, str] = {}
    for path in sorted(files):
        match = _THUMB.fullmatch(path)
        if match is not None:
            found.setdefault(match.group(1), path)
    return found


def thumb_problems(rows: Sequence[Row], files: Iterable[str]) -> list[tuple[str, str]]:
    """(path, what is wrong) for ``thumbs/`` files that no proven stored image names.

    A thumbnail's pixels are derived data and not checked (another Pillow draws other pixels);
    its name must still be one thumbnail of an image attachment the proven records hold.
    """
    images = {a.sha256 for a in attachments(rows) if a.path is not None and is_image(a)}
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []
    for path in sorted(files):
        if not path.startswith(THUMBS_DIR):
            continue
        match = _THUMB.fullmatch(path)
        if match is None:
            problems.append((path, "not a thumbnail name (thumbs/<sha256>.jpg or .png)"))
        elif match.group(1) not in images:
            problems.append((path, "no proven stored image attachment has this sha256"))
        elif match.group(1) in seen:
            problems.append((path, "a second thumbnail of the same attachment"))
        seen.add(match.group(1) if match else path)
    return problems


def media_problems(rows: Sequence[Row], files: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """(path, what is wrong) for every ``media/`` file or proven stored attachment that disagree."""
    expected: dict[str, Attachment] = {}
    for attachment in attachments(rows):
        if attachment.path is not None:
            expected.setdefault(attachment.path, attachment)
        elif attachment.status == "stored":
            problems_path = f"{MEDIA_DIR}?"
            return [(problems_path, f"media record seq {attachment.seq} states no valid sha256")]
    problems: list[tuple[str, str]] = []
    for path, attachment in sorted(expected.items()):
        data = files.get(path)
        if data is None:
            problems.append((path, f"attachment of media record seq {attachment.seq} is missing"))
        elif len(data) != attachment.size:
            sealed = f"its media record (seq {attachment.seq}) sealed {attachment.size}"
            problems.append((path, f"{len(data)} bytes, {sealed}: altered"))
        elif hashlib.sha256(data).hexdigest() != attachment.sha256:
            record = f"its media record (seq {attachment.seq})"
            problems.append((path, f"bytes do not hash to the sha256 {record} sealed: altered"))
    for path in sorted(files):
        if path.startswith(MEDIA_DIR) and path not in expected:
            problems.append((path, "no proven media record names this file"))
    return problems


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
