"""Step 12 of ``verify``: every attachment a sealed ``media`` record names is there, unaltered.

The media rows come from segments the earlier steps proved (``check_segment`` hands them over),
so the SHA-256 and size compared here are sealed values, not what the bucket says about itself.
For each stored attachment: the object exists under Object Lock, has the sealed size, and its
bytes hash to the sealed SHA-256 (read in ranged pieces: memory holds one piece). Each ``media``
record must also complete a record its chain holds (its ``ref_record_id``), found in the
segments' record indexes, which step 2 matched to the manifests.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from coexarchive.errors import FormatError, ObjectMissingError, StorageError
from coexarchive.media.objects import iter_object
from coexarchive.media.receipt import is_media_key
from coexarchive.seal.personal import ENVELOPE_PREFIX
from coexarchive.segments import Manifest, read_index
from coexarchive.store.base import ObjectStore


@dataclass(frozen=True)
class MediaRow:
    """What a sealed ``media`` record says about its attachment."""

    seq: int
    media_id: str | None
    ref_record_id: str | None
    status: str | None
    object_key: str | None
    sha256: str | None
    size: int | None
    encrypted: bool = False  # its detail is sealed encrypted (record version 2)


@dataclass(frozen=True)
class MediaCheck:
    """How much stored media ``verify`` re-hashes: all of it, or ``sample`` objects per chain."""

    sample: int | None = None

    @classmethod
    def parse(cls, text: str) -> MediaCheck | None:
        """``all`` (the default), ``none``, or ``sample=N``."""
        if text == "all":
            return cls()
        if text == "none":
            return None
        name, _, number = text.partition("=")
        if name == "sample" and number.isdigit() and int(number) > 0:
            return cls(sample=int(number))
        raise ValueError(f"--media takes all, none or sample=N, not {text!r}")


def media_rows(table: pa.Table) -> list[MediaRow]:
    """The ``media`` records of a verified segment table (pure; runs in verify's workers)."""
    media = table.filter(pc.equal(table.column("kind"), "media"))
    rows = []
    for row in media.select(["seq", "media_id", "ref_record_id", "status", "detail"]).to_pylist():
        raw = _raw_of(row["detail"])
        size = raw.get("size")
        rows.append(
            MediaRow(
                seq=row["seq"],
                media_id=row["media_id"],
                ref_record_id=row["ref_record_id"],
                status=row["status"],
                object_key=_str(raw.get("object_key")),
                sha256=_str(raw.get("sha256")),
                size=size if type(size) is int else None,
                encrypted=str(row["detail"]).startswith(ENVELOPE_PREFIX),
            )
        )
    return rows


def check_media(
    store: ObjectStore,
    chain_id: str,
    rows: Sequence[MediaRow],
    manifests: Sequence[Manifest],
    check: MediaCheck,
    fail: Callable[[str, str, str | None, int | None], None],
) -> int:
    """Check ``rows``' references and stored objects; the number of objects re-hashed.

    A media record's detail is never sealed encrypted (SEALING.md): one that is cannot be
    checked without keys, so it fails rather than leave its attachment unchecked.
    """
    if not rows:
        return 0
    _check_references(store, rows, manifests, fail)
    stored: dict[str, MediaRow] = {}
    for row in rows:
        if row.encrypted:
            fail(
                "media",
                "media record's detail is sealed encrypted: its attachment cannot be checked "
                "without keys (media facts must stay plaintext)",
                None,
                row.seq,
            )
            continue
        if row.status == "failed":
            continue
        if row.status != "stored":
            fail("media", f"media record has an unknown status {row.status!r}", None, row.seq)
        elif row.object_key is None or row.sha256 is None or row.size is None:
            fail("media", "stored media record lacks its object key, sha256 or size", None, row.seq)
        elif not is_media_key(row.object_key) or row.object_key != f"media/v1/sha256={row.sha256}":
            fail(
                "media",
                "media record names an object key that is not its sha256's",
                row.object_key,
                row.seq,
            )
        else:
            stored.setdefault(row.object_key, row)
    keys = sorted(stored)
    if check.sample is not None and check.sample < len(keys):
        # Unpredictable to whoever wrote the bucket: a sample an attacker can guess proves little.
        keys = sorted(random.SystemRandom().sample(keys, check.sample))
    for key in keys:
        _check_object(store, stored[key], fail)
    return len(keys)


def _check_object(
    store: ObjectStore, row: MediaRow, fail: Callable[[str, str, str | None, int | None], None]
) -> None:
    key = row.object_key
    assert key is not None
    try:
        info = store.info(key)
    except ObjectMissingError:
        fail("media", f"media object is missing (media id {row.media_id})", key, row.seq)
        return
    except StorageError as exc:
        fail("media", f"media object cannot be read: {exc}", key, row.seq)
        return
    if info.retention is None and not info.legal_hold:
        fail("media", "media object is not under Object Lock", key, row.seq)
    if info.size != row.size:
        fail(
            "media", f"media object is {info.size} bytes, sealed {row.size} (altered)", key, row.seq
        )
        return
    digest = hashlib.sha256()
    try:
        for piece in iter_object(store, key):
            digest.update(piece)
    except StorageError as exc:
        fail("media", f"media object cannot be read: {exc}", key, row.seq)
        return
    if digest.hexdigest() != row.sha256:
        fail(
            "media", "media object's bytes do not hash to the sealed sha256 (altered)", key, row.seq
        )


def _check_references(
    store: ObjectStore,
    rows: Sequence[MediaRow],
    manifests: Sequence[Manifest],
    fail: Callable[[str, str, str | None, int | None], None],
) -> None:
    wanted = {row.ref_record_id: row for row in rows if row.ref_record_id}
    for row in rows:
        if not row.ref_record_id:
            fail("media", "media record names no record it completes", None, row.seq)
    for manifest in manifests:
        if not wanted:
            return
        try:
            data = store.get(manifest.record_index.key)
            for record_id, _kind in read_index(data, key=manifest.record_index.key):
                wanted.pop(record_id, None)
        except (StorageError, FormatError):
            continue  # step 2 already names an index that is missing or unreadable
    for ref, row in wanted.items():
        fail(
            "media",
            f"media record completes record {ref}, which the chain does not hold",
            None,
            row.seq,
        )


def _raw_of(detail: object) -> dict[str, object]:
    try:
        tree = orjson.loads(str(detail))
    except orjson.JSONDecodeError:
        return {}
    raw = tree.get("raw") if isinstance(tree, dict) else None
    return raw if isinstance(raw, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
