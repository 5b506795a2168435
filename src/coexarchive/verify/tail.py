"""Step 10, ``tail``: nothing of a chain lies past its last signed checkpoint.

Anyone with write access to the bucket can write a segment, a record index, an intent-shaped
object or a manifest that "continues" a chain; only a checkpoint signed by a trusted key commits
one. So every such object of the chain that no signed manifest names is reported:

- past the last signed checkpoint (its seq range reaches the signed size or beyond): a failure,
  the *unsigned tail*, whatever its content: it is not signed and may be forged;
- wholly inside the signed range: a warning, *unreferenced, never signed*: a leftover of a run
  interrupted before its manifest, whose seq range a later signed segment sealed; no reader uses
  it, and it proves nothing.

A manifest that no checkpoint signs is always a failure. For a manifest past the tail, the
report says whether a trusted intent names it (a crashed run the next ingest commits) or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence

from coexarchive.errors import CoexArchiveError, ObjectMissingError
from coexarchive.intents import intent_key, intent_origin, intent_prefix, open_intent
from coexarchive.intents import parse_intent_key as _intent_name
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import Manifest
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore

Fail = Callable[..., None]
Warn = Callable[[str, str], None]

_SEGMENT_NAME = re.compile(r"([0-9]{20})-([0-9]{20})-[0-9a-f]{16}\.parquet")
_INDEX_NAME = re.compile(r"([0-9]{20})-[0-9a-f]{16}\.ids\.zst")
_MANIFEST_NAME = re.compile(r"([0-9]{20})\.json")


def chain_prefixes(chain_id: str) -> dict[str, str]:
    """Where the objects of one chain live, by kind (checkpoints are step 7's)."""
    return {
        "segment": f"{layout.ARCHIVE_PREFIX}chain={chain_id}/",
        "record index": f"{layout.DEDUP_PREFIX}v1/chain={chain_id}/",
        "intent": intent_prefix(chain_id),
        "manifest": layout.manifest_prefix(chain_id),
    }


def check_tail(
    store: ObjectStore,
    trust: TrustStore,
    chain_id: str,
    manifests: Sequence[Manifest],
    digests: Mapping[str, str],
    signed_size: int,
    *,
    fail: Fail,
    warn: Warn,
) -> None:
    """Report every object of the chain that no signed manifest covers (see the module doc)."""
    signed: set[str] = set()
    unsigned: dict[str, str] = {}  # key → why, for objects named by an unsigned manifest
    for manifest in manifests:
        digest = digests.get(manifest.key, "")
        keys = (manifest.segment.key, manifest.record_index.key)
        ikey = intent_key(chain_id, manifest.first_seq, digest) if digest else None
        if manifest.tree_size <= signed_size:
            signed.update((manifest.key, *keys, *([ikey] if ikey else [])))
            continue
        why = _why_unsigned(store, trust, manifest, digest, ikey)
        fail(
            "tail",
            f"unsigned tail: manifest past the last signed checkpoint (size {signed_size}) is "
            f"not signed and may be forged ({why}); investigate before trusting or sealing more",
            manifest.key,
            manifest.first_seq,
        )
        signed.add(manifest.key)  # reported just now
        for key in (*keys, *([ikey] if ikey else [])):
            unsigned.setdefault(key, f"named only by the unsigned manifest {manifest.key}")
    for kind, key in _listing(store, chain_id):
        if key in signed:
            continue
        if key in unsigned:
            fail("tail", f"unsigned tail: {kind} {unsigned[key]}", key)
            continue
        seqs = _seq_range(kind, key)
        if seqs is None:
            fail("tail", f"unexpected object among the chain's {kind}s; it is not signed", key)
        elif kind != "manifest" and seqs[1] < signed_size:
            warn(
                f"unreferenced, never signed: {kind} left by an interrupted run; its seq range "
                f"is sealed by a signed segment and no reader uses it",
                key,
            )
        else:
            fail(
                "tail",
                f"unsigned tail: {kind} past the last signed checkpoint (size {signed_size}) that "
                "no signed manifest names; it is not signed and may be forged",
                key,
                seqs[0],
            )


def _why_unsigned(
    store: ObjectStore, trust: TrustStore, manifest: Manifest, digest: str, ikey: str | None
) -> str:
    if ikey is None:
        return "unreadable"
    try:
        intent = open_intent(
            store.get(ikey), trust, origin=intent_origin(manifest.archive, manifest.chain_id)
        )
    except ObjectMissingError:
        return "no intent signed by a trusted key names it"
    except CoexArchiveError as exc:
        return f"its intent does not verify: {exc}"
    if intent.manifest_sha256 != digest or intent.first_seq != manifest.first_seq:
        return "its intent names other manifest bytes"
    return (
        "a trusted intent names it: a run crashed before its checkpoint; the next ingest commits it"
    )


def _listing(store: ObjectStore, chain_id: str) -> Iterator[tuple[str, str]]:
    for kind, prefix in chain_prefixes(chain_id).items():
        for key in store.list(prefix):
            yield kind, key


def _seq_range(kind: str, key: str) -> tuple[int, int] | None:
    """The seq range an object's name claims (first seq only: (first, first))."""
    name = key.rsplit("/", 1)[-1]
    if kind == "segment":
        match = _SEGMENT_NAME.fullmatch(name)
        return (int(match[1]), int(match[2])) if match else None
    if kind == "intent":
        parsed = _intent_name(key)
        return (parsed[0], parsed[0]) if parsed else None
    pattern = _INDEX_NAME if kind == "record index" else _MANIFEST_NAME
    match = pattern.fullmatch(name)
    return (int(match[1]), int(match[1])) if match else None
