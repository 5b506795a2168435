"""Segment intents: the writer's signed promise of the manifest it is about to write.

A writer signs an *intent* — a C2SP signed note naming the chain, the seq range and the SHA-256 of
the exact manifest bytes — before it writes the manifest. A manifest left without a checkpoint by
a crash is committed on resume only if such an intent, signed by a trusted key, names its bytes:
anyone with write access to the bucket can write a manifest that "continues the chain", but only
the signer can sign its intent (``schemas/SEALING.md`` § Write order and crash safety).

Body (every line ends in a newline)::

    <archive>/coexarchive/v1/intent/<chain id>
    first-seq <decimal>
    last-seq <decimal>
    manifest-sha256 <64 lowercase hex digits>
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from coexarchive.errors import FormatError, SignatureError
from coexarchive.seal.checkpoint import open_note, sign_note
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.store import layout

__all__ = [
    "INTENT_PREFIX",
    "Intent",
    "intent_key",
    "intent_origin",
    "intent_prefix",
    "open_intent",
    "parse_intent_key",
]

INTENT_PREFIX = "intents/"
_NUMBER = r"(0|[1-9][0-9]{0,18})"
_BODY = re.compile(
    rb"(?P<origin>[^\n]+)\n"
    rb"first-seq " + _NUMBER.encode() + rb"\n"
    rb"last-seq " + _NUMBER.encode() + rb"\n"
    rb"manifest-sha256 (?P<digest>[0-9a-f]{64})\n"
)
_KEY_NAME = re.compile(r"(?P<first>[0-9]{20})-(?P<digest>[0-9a-f]{16})")


def intent_origin(archive_name: str, chain_id: str) -> str:
    """The origin line of a chain's intents (never a checkpoint origin: those say ``chain``)."""
    return f"{archive_name}/coexarchive/v1/intent/{chain_id}"


def intent_prefix(chain_id: str) -> str:
    return f"{INTENT_PREFIX}chain={layout.check_chain_id(chain_id)}/"


def intent_key(chain_id: str, first_seq: int, manifest_sha256: str) -> str:
    """``intents/chain=<id>/<first-seq>-<sha16>``: content-addressed like segment keys, so a
    crashed run's leftover intent never blocks a later run whose manifest differs."""
    return f"{intent_prefix(chain_id)}{layout.pad(first_seq)}-{manifest_sha256[:16]}"


def parse_intent_key(key: str) -> tuple[int, str] | None:
    """(first seq, 16-hex manifest digest prefix) of an intent key; None if it is not one."""
    match = _KEY_NAME.fullmatch(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    return int(match["first"]), match["digest"]


@dataclass(frozen=True)
class Intent:
    """A writer's statement that it derived the manifest with this digest for this seq range."""

    origin: str
    first_seq: int
    last_seq: int
    manifest_sha256: str

    @classmethod
    def for_manifest(
        cls, archive_name: str, chain_id: str, first_seq: int, last_seq: int, manifest: bytes
    ) -> Intent:
        return cls(
            origin=intent_origin(archive_name, chain_id),
            first_seq=first_seq,
            last_seq=last_seq,
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        )

    def body(self) -> bytes:
        return (
            f"{self.origin}\nfirst-seq {self.first_seq}\nlast-seq {self.last_seq}\n"
            f"manifest-sha256 {self.manifest_sha256}\n"
        ).encode()

    def sign(self, signer: Signer) -> bytes:
        return sign_note(self.body(), [signer])

    @classmethod
    def parse(cls, body: bytes) -> Intent:
        match = _BODY.fullmatch(body)
        if match is None:
            raise FormatError("not a segment intent (origin, first-seq, last-seq, manifest-sha256)")
        first, last = int(match[2]), int(match[3])
        if last < first:
            raise FormatError(f"intent seq range {first}..{last} is empty")
        return cls(
            origin=match["origin"].decode("utf-8"),
            first_seq=first,
            last_seq=last,
            manifest_sha256=match["digest"].decode("ascii"),
        )


def open_intent(note: bytes, trust: TrustStore, *, origin: str) -> Intent:
    """Verify a signed intent against ``trust`` and check its origin; raise if either fails."""
    body, _ = open_note(note, trust)
    intent = Intent.parse(body)
    if intent.origin != origin:
        raise SignatureError(f"intent is signed for origin {intent.origin!r}, expected {origin!r}")
    return intent
