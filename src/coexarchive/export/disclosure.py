"""Record keys disclosed in an evidence bundle, so its renderings of version-2 records verify.

A bundle proves ``records/records.jsonl`` as sealed: for a version-2 record that is its
envelopes. To render transcripts, RSMF and CSV a reader needs the plaintext, and a verifier must
be able to tell that plaintext is what was sealed. So a bundle holding version-2 records
carries ``keys/record-keys.jsonl`` (``schemas/BUNDLE.md``): one line per version-2 record, in
the order of ``records.jsonl``, with the record's key (``schemas/SEALING.md``) or ``null`` when
the customer's data key was destroyed by an erasure before the export. A record key opens that
one record and nothing else of the customer's. Renderings show the opened values, and
``[erased]`` where the key is null; the GCM tag of every envelope is checked against the
disclosed key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from coexarchive.errors import ConfigError, DecryptionError, FormatError
from coexarchive.export._rows import Row
from coexarchive.seal.personal import (
    ENVELOPE_PREFIX,
    ERASED,
    PERSONAL_FIELDS,
    PERSONAL_RECORD_VERSION,
    PLAINTEXT_DETAIL_KINDS,
    KeyLookup,
    envelope_key_id,
    field_aad,
    open_sealed,
)

__all__ = ["RECORD_KEYS", "disclosure_lines", "open_rows", "read_disclosures"]

RECORD_KEYS = "keys/record-keys.jsonl"
FORMAT = "coexarchive.record-keys/v1"


def _sealed(row: Row) -> bool:
    return (
        row.get("record_version") == PERSONAL_RECORD_VERSION and row.get("customer_id") is not None
    )


def _key_id(row: Row) -> str | None:
    for name in PERSONAL_FIELDS:
        value = row.get(name)
        if isinstance(value, str) and value.startswith(ENVELOPE_PREFIX):
            return envelope_key_id(value)
    return None


def disclosure_lines(rows: Sequence[Row], keys: KeyLookup | None) -> bytes | None:
    """``keys/record-keys.jsonl`` for ``rows`` (None when no row is version 2)."""
    lines = []
    for row in rows:
        if not _sealed(row):
            continue
        key_id = _key_id(row)
        if key_id is None:
            continue  # a version-2 record whose personal fields are all null
        if keys is None:
            raise ConfigError(
                "the selection holds records sealed with their personal content encrypted: set "
                "COEXARCHIVE_DATA_KEYS so the export can disclose their record keys"
            )
        secret = keys.record_key(key_id, row["chain_id"], row["record_id"])
        entry = {
            "chain_id": row["chain_id"],
            "key_id": key_id,
            "record_id": row["record_id"],
            "record_key": None if secret is None else base64.b64encode(secret).decode(),
            "seq": row["seq"],
        }
        lines.append(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS) + b"\n")
    if not lines:
        return None
    header = orjson.dumps({"format": FORMAT}) + b"\n"
    return header + b"".join(lines)


def read_disclosures(data: bytes | None) -> dict[tuple[str, str], bytes | None]:
    """(chain, record id) → record key (None: erased) from ``keys/record-keys.jsonl``."""
    if data is None:
        return {}
    lines = data.split(b"\n")
    if lines[-1] != b"" or not lines[0]:
        raise FormatError(f"{RECORD_KEYS} is not newline-terminated JSON lines")
    try:
        header = orjson.loads(lines[0])
        if header != {"format": FORMAT}:
            raise FormatError(f"{RECORD_KEYS} does not start with the {FORMAT} format line")
        found: dict[tuple[str, str], bytes | None] = {}
        for line in lines[1:-1]:
            entry: Mapping[str, Any] = orjson.loads(line)
            place = (str(entry["chain_id"]), str(entry["record_id"]))
            value = entry["record_key"]
            secret = None if value is None else base64.b64decode(value, validate=True)
            if secret is not None and len(secret) != 32:
                raise FormatError(f"{RECORD_KEYS}: a record key is not 32 bytes")
            if place in found:
                raise FormatError(f"{RECORD_KEYS}: record {place[1]} is listed twice")
            found[place] = secret
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
        raise FormatError(f"{RECORD_KEYS} holds a line that is not a record-key entry") from None
    return found


def open_rows(
    rows: Sequence[Row], disclosed: Mapping[tuple[str, str], bytes | None]
) -> tuple[list[Row], list[str]]:
    """``rows`` with version-2 personal fields opened (``[erased]`` where the key is null),
    and the problems found: a record with no disclosure, or an envelope that does not open."""
    if not any(_sealed(row) for row in rows):
        extra = [f"{RECORD_KEYS} discloses keys of records the bundle does not hold"]
        return list(rows), extra if disclosed else []
    opened: list[Row] = []
    problems: list[str] = []
    listed = {(row["chain_id"], row["record_id"]) for row in rows if _sealed(row)}
    for chain, record in sorted(set(disclosed) - listed):
        problems.append(
            f"{RECORD_KEYS} discloses the key of record {record} (chain {chain}), which the "
            "bundle does not hold"
        )
    for row in rows:
        if not _sealed(row) or _key_id(row) is None:
            opened.append(row)
            continue
        place = (row["chain_id"], row["record_id"])
        if place not in disclosed:
            problems.append(
                f"chain {place[0]} seq {row['seq']}: sealed personal fields but no record key "
                f"in {RECORD_KEYS}"
            )
            opened.append(row)
            continue
        secret = disclosed[place]
        values = dict(row)
        for name in PERSONAL_FIELDS:
            value = row.get(name)
            if not isinstance(value, str):
                continue
            if name == "detail" and row.get("kind") in PLAINTEXT_DETAIL_KINDS:
                continue  # a media record's facts are sealed in plaintext (SEALING.md)
            if secret is None:
                values[name] = ERASED
                continue
            try:
                sealed = base64.b64decode(value.rpartition(":")[2], validate=True)
                aad = field_aad(place[0], place[1], name)
                values[name] = open_sealed(secret, aad, sealed, key_id=_key_id(row) or "?")
            except (DecryptionError, binascii.Error):
                problems.append(
                    f"chain {place[0]} seq {row['seq']}: {name} does not open with the "
                    "disclosed record key (wrong key, or the envelope was altered)"
                )
        opened.append(values)
    return opened, problems
