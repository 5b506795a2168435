"""The outside anchors a bundle carries: an archive head, its timestamps and its cosignatures.

Layout inside the bundle (all listed in ``MANIFEST``; present only when the archive holds an
anchored head)::

    anchors/head.note                          the newest archive head that has an anchor
    anchors/timestamps/<tsa>.tsr               RFC 3161 responses over that head's note text
    anchors/tsa/<tsa>.pem                      the certificates each response carries
    anchors/cosignatures/<key id hex>.note     heads-log checkpoint (size = head seq + 1) with
                                               the archive's signature and one witness's
    anchors/heads-inclusion.json               the head's leaf index and audit path in that log

``verify-bundle`` checks them offline (``coexarchive.export.verify_bundle.anchors``).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from coexarchive.anchor.timestamps import TIMESTAMP_PREFIX, parse_token_key
from coexarchive.anchor.tsa import token_certificates
from coexarchive.anchor.witness import COSIGNATURE_PREFIX, read_heads_log
from coexarchive.errors import AnchorError, FormatError
from coexarchive.seal.head import head_key
from coexarchive.seal.keys import TrustStore
from coexarchive.store.base import ObjectStore

__all__ = ["anchor_files"]

HEAD = "anchors/head.note"
INCLUSION = "anchors/heads-inclusion.json"


def _anchors_of(store: ObjectStore, seq: int) -> tuple[list[str], list[str]]:
    stamp = f"{TIMESTAMP_PREFIX}{seq:020d}/"
    cosig = f"{COSIGNATURE_PREFIX}{seq:020d}/"
    return list(store.list(stamp)), list(store.list(cosig))


def anchor_files(
    store: ObjectStore, trust: TrustStore, archive_name: str
) -> tuple[dict[str, bytes], dict[str, Any] | None]:
    """The ``anchors/`` files of the newest anchored head, and what ``BUNDLE.json`` says of it."""
    try:
        log = read_heads_log(store, trust, archive_name)
    except AnchorError:
        return {}, None
    for head in reversed(log.heads):
        tokens, cosigned = _anchors_of(store, head.seq)
        if tokens or cosigned:
            break
    else:
        return {}, None
    files: dict[str, bytes] = {HEAD: store.get(head_key(head.seq))}
    stamps = []
    for key in tokens:
        parsed = parse_token_key(key)
        if parsed is None:
            continue
        token = store.get(key)
        name = parsed[1]
        files[f"anchors/timestamps/{name}.tsr"] = token
        try:
            pem = b"".join(
                x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
                for der in token_certificates(token)
            )
        except (FormatError, ValueError):
            pem = b""
        files[f"anchors/tsa/{name}.pem"] = pem
        stamps.append(name)
    witnesses = []
    for key in cosigned:
        key_id = key.rsplit("/", 1)[1].removesuffix(".note")
        files[f"anchors/cosignatures/{key_id}.note"] = store.get(key)
        witnesses.append(key_id)
    if cosigned:
        size = head.seq + 1
        proof = log.tree.inclusion_proof(head.seq, size)
        files[INCLUSION] = orjson.dumps(
            {
                "index": head.seq,
                "size": size,
                "proof": [base64.b64encode(h).decode() for h in proof],
            },
            option=orjson.OPT_SORT_KEYS,
        )
    description = {
        "head": HEAD,
        "head_seq": head.seq,
        "timestamps": sorted(stamps),
        "cosignatures": sorted(witnesses),
    }
    return files, description
