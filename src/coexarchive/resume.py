"""Resuming a chain: trust its head only through a signed note, never through storage alone.

The rule (``schemas/SEALING.md`` § The signing invariant): a writer signs only a tree whose every
new leaf it derived itself, in this run, from authenticated raw evidence, or that a signed note of
a trusted key already covers: the last manifest's checkpoint, or the writer's own intent for
exactly a crashed run's manifest bytes. Anything else at the end of a chain is an *unsigned tail*
(possibly forged by someone with write access to the bucket), and the writer stops on that chain.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from coexarchive._internal.fetch import fetch_in_order
from coexarchive.errors import (
    CoexArchiveError,
    FormatError,
    ObjectMissingError,
    SealError,
    UnsignedTailError,
)
from coexarchive.intents import intent_key, intent_origin, open_intent
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import Frontier
from coexarchive.segments import (
    CHAIN_HASH_EXTENSION,
    ChainState,
    Manifest,
    b64,
    list_manifests,
    read_segment,
)
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, sha256_hex

__all__ = ["UnsignedTailError", "committed_manifests", "load_state"]


def load_state(
    store: ObjectStore,
    chain_id: str,
    *,
    trust: TrustStore,
    archive_name: str,
    commit: Any = None,
) -> ChainState:
    """The chain head, trusted only through a checkpoint that verifies against ``trust``.

    When the last manifest has no checkpoint (a crash between manifest and checkpoint) and
    ``commit`` is given, it is committed if a trusted intent names its bytes and it continues the
    signed chain; otherwise :class:`UnsignedTailError`.
    """
    keys = list_manifests(store, chain_id)
    if not keys:
        return ChainState.empty(chain_id)
    data = store.get(keys[-1])
    manifest = _parse_own(data, keys[-1], chain_id, archive_name)
    if store.exists(manifest.checkpoint_key):
        _check_signed(store, manifest, trust, keys[-1])
        return ChainState.after(manifest)
    if commit is None:
        raise UnsignedTailError(chain_id, keys[-1], "it has no checkpoint")
    _check_intent(store, manifest, data, trust, keys[-1])
    previous = ChainState.empty(chain_id)
    if len(keys) > 1:
        before = _parse_own(store.get(keys[-2]), keys[-2], chain_id, archive_name)
        _check_signed(store, before, trust, keys[-2])
        previous = ChainState.after(before)
    _check_continues(store, manifest, previous)
    commit(manifest)
    return ChainState.after(manifest)


def _parse_own(data: bytes, key: str, chain_id: str, archive_name: str) -> Manifest:
    try:
        manifest = Manifest.from_bytes(data, key=key)
    except FormatError as exc:
        raise UnsignedTailError(chain_id, key, f"not a valid manifest: {exc}") from None
    if manifest.key != key or manifest.chain_id != chain_id:
        raise UnsignedTailError(chain_id, key, "it names another chain or seq than its key")
    if manifest.archive != archive_name:
        raise SealError(
            f"chain {chain_id}: {key} belongs to archive {manifest.archive!r}, but this writer "
            f"seals {archive_name!r}; check COEXARCHIVE_NAME (--archive-name)"
        )
    if manifest.checkpoint_key != layout.checkpoint_key(chain_id, manifest.tree_size):
        raise UnsignedTailError(chain_id, key, "it names a checkpoint of another size")
    return manifest


def _check_signed(store: ObjectStore, manifest: Manifest, trust: TrustStore, key: str) -> None:
    """The manifest's chain head, root and frontier are the ones its checkpoint signs."""
    try:
        checkpoint = open_checkpoint(
            store.get(manifest.checkpoint_key),
            trust,
            origin=checkpoint_origin(manifest.archive, manifest.chain_id),
        )
    except ObjectMissingError:
        raise UnsignedTailError(manifest.chain_id, key, "its checkpoint is missing") from None
    except CoexArchiveError as exc:
        raise UnsignedTailError(
            manifest.chain_id,
            key,
            f"its checkpoint does not verify against the writer's keys: {exc}; if the signing "
            "key was rotated, give the writer the trust file holding the old key",
        ) from None
    head = f"{CHAIN_HASH_EXTENSION} {b64(manifest.chain_hash)}"
    if (
        checkpoint.size != manifest.tree_size
        or checkpoint.root_hash != manifest.root_hash
        or Frontier(manifest.tree_size, manifest.frontier).root() != manifest.root_hash
        or head not in checkpoint.extensions
    ):
        raise UnsignedTailError(
            manifest.chain_id, key, "its root, frontier or chain head differ from its checkpoint's"
        )


def _check_intent(
    store: ObjectStore, manifest: Manifest, data: bytes, trust: TrustStore, key: str
) -> None:
    """A trusted intent names exactly these manifest bytes and this seq range."""
    digest = sha256_hex(data)
    ikey = intent_key(manifest.chain_id, manifest.first_seq, digest)
    try:
        note = store.get(ikey)
    except ObjectMissingError:
        raise UnsignedTailError(
            manifest.chain_id, key, f"it has no checkpoint and no signed intent at {ikey}"
        ) from None
    try:
        intent = open_intent(note, trust, origin=intent_origin(manifest.archive, manifest.chain_id))
    except CoexArchiveError as exc:
        raise UnsignedTailError(
            manifest.chain_id, key, f"its intent {ikey} does not verify: {exc}"
        ) from None
    if not hmac.compare_digest(intent.manifest_sha256, digest) or (
        intent.first_seq,
        intent.last_seq,
    ) != (manifest.first_seq, manifest.last_seq):
        raise UnsignedTailError(
            manifest.chain_id, key, f"its intent {ikey} names other manifest bytes"
        )


def _check_continues(store: ObjectStore, manifest: Manifest, previous: ChainState) -> None:
    """Before committing a crashed run's manifest, check it continues the signed chain."""
    chain_id, key = manifest.chain_id, manifest.key
    try:
        segment = store.get(manifest.segment.key)
    except ObjectMissingError:
        raise UnsignedTailError(chain_id, key, "its segment is missing") from None
    if sha256_hex(segment) != manifest.segment.sha256:
        raise UnsignedTailError(chain_id, key, "its segment bytes do not match it")
    try:
        table = read_segment(segment, key=manifest.segment.key).sort_by("seq")
    except FormatError as exc:
        raise UnsignedTailError(chain_id, key, str(exc)) from None
    leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
    frontier = previous.frontier.copy()
    frontier.extend(leaves)
    if (
        manifest.first_seq != previous.size
        or manifest.prev_chain_hash != previous.chain_hash
        or frontier.root() != manifest.root_hash
    ):
        raise UnsignedTailError(chain_id, key, "it does not continue the signed chain")


def committed_manifests(
    store: ObjectStore, chain_id: str, *, trust: TrustStore, committed_size: int | None = None
) -> list[Manifest]:
    """The manifests of the chain's committed segments, in seq order.

    ``committed_size``: the chain's size as the caller verified it; when None, the size the last
    checkpoint that verifies against ``trust`` states (manifests past it, with no checkpoint yet,
    are passed over: a run committing now, a crashed run, or a forgery). A checkpoint that does
    not verify, a manifest that is not the one its key names, or manifests that do not tile the
    chain from seq 0 fail the read (:class:`UnsignedTailError`, :class:`FormatError`).
    """
    keys = list_manifests(store, chain_id)
    if committed_size is None:
        committed_size = _verified_size(store, chain_id, keys, trust)
    wanted = [key for key in keys if _first_seq_of_key(key) < committed_size]

    def read(key: str) -> Manifest:
        return Manifest.from_bytes(store.get(key), key=key)

    manifests = fetch_in_order(read, wanted)
    expected = 0
    for key, manifest in zip(wanted, manifests, strict=True):
        if manifest.key != key or manifest.chain_id != chain_id or manifest.first_seq != expected:
            raise FormatError(
                f"chain {chain_id}: {key} is not the committed manifest of seq {expected}: the "
                "archive may have been altered; run `coexarchive verify`"
            )
        expected = manifest.tree_size
    if expected != committed_size:
        raise FormatError(
            f"chain {chain_id}: its manifests end at seq {expected}, its checkpoint at "
            f"{committed_size}: the archive may have been altered; run `coexarchive verify`"
        )
    return manifests


def _first_seq_of_key(key: str) -> int:
    try:
        return layout.number_of(key)
    except ValueError:
        return -1  # not a manifest's name: kept, and refused by the tiling check


def _verified_size(
    store: ObjectStore, chain_id: str, keys: Sequence[str], trust: TrustStore
) -> int:
    """The size the chain's last checkpoint states, once it verifies against ``trust``."""
    for key in reversed(keys):
        try:
            manifest = Manifest.from_bytes(store.get(key), key=key)
        except (FormatError, ObjectMissingError):
            continue  # not committed by a checkpoint of its own: looked past
        if manifest.key != key or manifest.chain_id != chain_id:
            continue
        if not store.exists(manifest.checkpoint_key):
            continue  # being committed now, a crashed run's leftover, or a forgery
        try:
            _check_signed(store, manifest, trust, key)
        except CoexArchiveError as exc:
            if isinstance(exc, UnsignedTailError):
                raise
            raise UnsignedTailError(chain_id, key, str(exc)) from None
        return manifest.tree_size
    return 0
