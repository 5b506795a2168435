"""Writing archive heads after each commit, and checking an archive against its newest head.

Format and rules: ``coexarchive.seal.head`` and ``schemas/SEALING.md`` ("Archive head").

The writer signs only what it may vouch for: chains copied from the previous head, which it opens
with the trust file first, and chains whose new size and root a checkpoint signed by a trusted key
already states. It never shortens a chain and never signs two roots for one size.

The check (called by ``coexarchive verify``) walks every head from ``heads/0…0`` to the newest:
each is signed by a trusted key for this archive, links to the one before, and keeps every chain
the one before listed, at least as long. Every chain the newest head (and any head pinned with
``--expect-head``) lists must still be in the archive, at least as long, with the same root at the
stated size. A vanished or shortened chain, an untrusted or relinked head, or a fork fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from coexarchive.anchor.timestamps import anchor_lines, timestamp_heads
from coexarchive.anchor.tsa import Tsa
from coexarchive.anchor.witness import Witness, cosign_head
from coexarchive.errors import (
    Failure,
    FormatError,
    ObjectExistsError,
    ObjectMissingError,
    SealError,
    SignatureError,
)
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.head import (
    GENESIS_PREV,
    HEAD_PREFIX,
    ArchiveHead,
    ChainHead,
    head_key,
    head_seq,
    open_head,
    sign_head,
)
from coexarchive.seal.keys import Signer, TrustStore, Verifier
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store import layout
from coexarchive.store.base import LockMode, ObjectStore, Retention

__all__ = [
    "STEP",
    "HeadSummary",
    "HeadWriter",
    "PinnedHead",
    "chain_head_of",
    "check_archive_heads",
    "parse_pinned_head",
    "stronger",
    "write_head_after",
]

STEP = "archive-head"
# Writers racing for the next head key re-read the newest head and retry this many times.
_ATTEMPTS = 16


def stronger(first: Retention | None, second: Retention | None) -> Retention | None:
    """The retention at least as strong as both: the later date, COMPLIANCE if either is."""
    if first is None or second is None:
        return first or second
    mode: LockMode = "COMPLIANCE" if "COMPLIANCE" in (first.mode, second.mode) else "GOVERNANCE"
    return Retention(mode=mode, retain_until=max(first.retain_until, second.retain_until))


def own_trust(signer: Signer) -> TrustStore:
    return TrustStore([Verifier(signer.name, bytes(signer.public_key))])


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Newest:
    key: str
    head: ArchiveHead


class HeadWriter:
    """Appends archive heads to ``heads/``; safe to run beside other writers."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        signer: Signer,
        archive_name: str,
        trust: TrustStore | None = None,
        tsas: Sequence[Tsa] = (),
    ) -> None:
        self.store = store
        self.signer = signer
        # Authorities whose tokens of earlier heads the next head seals (or names as missing).
        self.tsas = tuple(tsas)
        self.archive_name = archive_name
        # Without a trust file the writer trusts only heads and checkpoints of its own key.
        self.trust = trust if trust is not None else own_trust(signer)
        self._hint = (
            "run `coexarchive verify` and restore the head from a kept copy"
            if trust is not None
            else "if another key signed it, give the writer the trust file (COEXARCHIVE_TRUST)"
        )

    def newest(self) -> ArchiveHead | None:
        found = self._newest()
        return found.head if found else None

    def _newest(self) -> _Newest | None:
        keys = [key for key in self.store.list(HEAD_PREFIX) if head_seq(key) is not None]
        if not keys:
            return None
        key = keys[-1]
        try:
            head, _ = open_head(self.store.get(key), self.trust, archive_name=self.archive_name)
        except (SignatureError, FormatError, ObjectMissingError) as exc:
            raise SealError(
                f"newest archive head {key} does not verify ({exc}); refusing to extend it: "
                f"{self._hint}"
            ) from exc
        if head.seq != head_seq(key):
            raise SealError(f"archive head {key} states seq {head.seq}; refusing to extend it")
        return _Newest(key, head)

    def commit(
        self, chains: Iterable[ChainHead], *, retention: Retention | None = None
    ) -> ArchiveHead | None:
        """Sign the next head with ``chains`` updated; None when no chain grew (nothing to say).

        ``retention`` is the commit's strongest object lock, which the head carries.
        """
        updates = {chain.chain_id: chain for chain in chains}
        checked: set[ChainHead] = set()
        for _attempt in range(_ATTEMPTS):
            newest = self._newest()
            entries = {c.chain_id: c for c in newest.head.chains} if newest else {}
            changed = False
            for chain_id, update in sorted(updates.items()):
                known = entries.get(chain_id)
                if known is not None and update.size < known.size:
                    continue  # a racing writer's head already covers more of this chain
                if known is not None and update.size == known.size:
                    if update.root_hash != known.root_hash:
                        raise SealError(
                            f"chain {chain_id}: the newest archive head states another root for "
                            f"size {update.size}; refusing to sign a fork"
                        )
                    continue
                if update not in checked:
                    self._check_signed(update)
                    checked.add(update)
                entries[chain_id] = update
                changed = True
            if not changed:
                return None
            seq = newest.head.seq + 1 if newest else 0
            prev = newest.head.body_hash() if newest else GENESIS_PREV
            anchors = anchor_lines(
                self.store,
                newest.head if newest else None,
                self.tsas,
                trust=self.trust,
                archive_name=self.archive_name,
            )
            head = ArchiveHead.build(self.archive_name, seq, prev, entries.values(), anchors)
            try:
                self.store.put(head_key(seq), sign_head(head, [self.signer]), retention=retention)
            except ObjectExistsError:
                continue  # another commit took this seq: re-read its head and go on from it
            return head
        raise SealError(
            f"could not write an archive head after {_ATTEMPTS} attempts: other writers kept "
            "taking the next seq; re-run to cover this commit"
        )

    def _check_signed(self, chain: ChainHead) -> None:
        """A trusted checkpoint must already state the size and root the head will."""
        key = layout.checkpoint_key(chain.chain_id, chain.size)
        try:
            checkpoint = open_checkpoint(
                self.store.get(key),
                self.trust,
                origin=checkpoint_origin(self.archive_name, chain.chain_id),
            )
        except (SignatureError, FormatError, ObjectMissingError) as exc:
            raise SealError(
                f"chain {chain.chain_id}: no trusted checkpoint for size {chain.size} ({exc}); "
                "refusing to put it in the archive head"
            ) from exc
        if checkpoint.size != chain.size or checkpoint.root_hash != chain.root_hash:
            raise SealError(
                f"chain {chain.chain_id}: the checkpoint for size {chain.size} states another "
                "root; refusing to put it in the archive head"
            )


def chain_head_of(manifest: Manifest) -> ChainHead:
    return ChainHead(manifest.chain_id, manifest.tree_size, manifest.root_hash)


def write_head_after(
    store: ObjectStore,
    manifests: Sequence[Manifest],
    *,
    signer: Signer,
    archive_name: str,
    trust: TrustStore | None = None,
    tsas: Sequence[Tsa] = (),
    witnesses: Sequence[Witness] = (),
) -> ArchiveHead | None:
    """The head that follows a commit of ``manifests`` (the last of each chain counts).

    With ``tsas``, the new head seals the tokens of the head before it, and is then timestamped
    itself (an authority that is down is logged and named as missing by the next head). With
    ``witnesses``, the heads log's new checkpoint is submitted to each; a witness that is down
    or refuses is logged, and ``verify`` reports the newest head short of its quorum.
    """
    if not manifests:
        return None
    lock: Retention | None = None
    for manifest in manifests:
        lock = stronger(lock, manifest.retention)
    writer = HeadWriter(store, signer=signer, archive_name=archive_name, trust=trust, tsas=tsas)
    head = writer.commit([chain_head_of(m) for m in manifests], retention=lock)
    if head is not None and tsas:
        timestamp_heads(store, head, tsas, trust=writer.trust, archive_name=archive_name)
    if head is not None and witnesses:
        cosign_head(store, witnesses, signer=signer, trust=writer.trust, archive_name=archive_name)
    return head


# --- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedHead:
    """An archive head kept outside the writer's reach (``verify --expect-head``)."""

    head: ArchiveHead


def parse_pinned_head(note: bytes, trust: TrustStore) -> PinnedHead:
    head, _ = open_head(note, trust)
    return PinnedHead(head)


@dataclass
class HeadSummary:
    """Which head the archive was checked against."""

    seq: int
    key: str
    signed_by: list[str]
    chains: int
    heads: int
    uncovered: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        return (
            f"archive head {self.seq} ({self.key}), signed by {', '.join(self.signed_by)}: "
            f"{self.chains} chain(s), every one present and at least as long; "
            f"{self.heads} head(s) linked"
        )


class _ChainReport(Protocol):
    chain_id: str
    tree_size: int
    warnings: list[str]


class _Report(Protocol):
    @property
    def failures(self) -> list[Failure]: ...

    @property
    def chains(self) -> Sequence[Any]: ...


class _Roots:
    """The archive's Merkle root of a chain at a segment boundary, read from its manifests."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.keys: dict[str, list[tuple[int, str]]] = {}
        self.roots: dict[tuple[str, int], bytes | None] = {}

    def at(self, chain_id: str, size: int) -> bytes | None:
        if (chain_id, size) not in self.roots:
            self.roots[chain_id, size] = self._read(chain_id, size)
        return self.roots[chain_id, size]

    def _read(self, chain_id: str, size: int) -> bytes | None:
        if chain_id not in self.keys:
            found = []
            for key in list_manifests(self.store, chain_id):
                try:
                    found.append((layout.number_of(key), key))
                except ValueError:
                    continue
            self.keys[chain_id] = sorted(found)
        before = [key for first, key in self.keys[chain_id] if first < size]
        if not before:
            return None
        try:
            manifest = Manifest.from_bytes(self.store.get(before[-1]), key=before[-1])
        except (FormatError, ObjectMissingError):
            return None
        return manifest.root_hash if manifest.tree_size == size else None


def check_archive_heads(
    store: ObjectStore,
    trust: TrustStore,
    report: _Report,
    *,
    archive_name: str | None = None,
    chains: Sequence[str] | None = None,
    pins: Sequence[PinnedHead] = (),
) -> HeadSummary | None:
    """Check the chain of heads and the archive against the newest one; failures go to ``report``.

    ``chains`` limits the comparison to those chains (``verify --chain``); the heads themselves
    are always checked whole.
    """
    failures = report.failures

    def fail(message: str, key: str | None = None, chain_id: str | None = None) -> None:
        failures.append(Failure(STEP, message, chain_id, key))

    present: dict[str, Any] = {chain.chain_id: chain for chain in report.chains}
    keys = list(store.list(HEAD_PREFIX))
    heads: list[tuple[str, ArchiveHead, list[str]]] = []
    previous: ArchiveHead | None = None
    expected_seq = 0
    for key in keys:
        seq = head_seq(key)
        if seq is None:
            fail("unexpected object among the archive heads", key)
            continue
        if seq != expected_seq:
            fail(f"archive heads {expected_seq}..{seq - 1} are missing (deleted?)", key)
            previous = None
        expected_seq = seq + 1
        versions = store.versions(key)
        if len(versions) > 1:
            fail(f"archive head key holds {len(versions)} versions (overwritten?)", key)
        try:
            head, signers = open_head(store.get(key), trust, archive_name=archive_name)
        except ObjectMissingError:
            fail("archive head listed but unreadable", key)
            previous = None
            continue
        except (SignatureError, FormatError) as exc:
            fail(f"archive head does not verify: {exc}", key)
            previous = None
            continue
        if archive_name is None:
            archive_name = head.archive  # every later head must name the same archive
        if head.seq != seq:
            fail(f"archive head states seq {head.seq} but is stored as {seq}", key)
        if seq == 0 and head.prev != GENESIS_PREV:
            fail("first archive head does not start the chain of heads", key)
        if previous is not None:
            _check_link(previous, head, key, fail)
        heads.append((key, head, signers))
        previous = head

    if not heads:
        if present:
            fail(
                "the archive has chains but no verifiable archive head: nothing signed says "
                "which chains exist (every commit writes one; were the heads deleted?)"
            )
        return None

    newest_key, newest, signers = heads[-1]
    wanted = set(chains) if chains is not None else None
    roots = _Roots(store)
    against: list[tuple[str, ArchiveHead]] = [(f"newest archive head {newest.seq}", newest)]

    by_seq = {head.seq: head for _, head, _ in heads}
    for pin in pins:
        pinned = pin.head
        if archive_name is not None and pinned.archive != archive_name:
            fail(f"pinned archive head is for archive {pinned.archive!r}, not {archive_name!r}")
            continue
        kept = by_seq.get(pinned.seq)
        if kept is None:
            fail(
                f"pinned archive head {pinned.seq} is not in the archive (newest is "
                f"{newest.seq}): heads were deleted or rolled back",
                head_key(pinned.seq),
            )
        elif kept.body_hash() != pinned.body_hash():
            fail(
                f"archive head {pinned.seq} differs from the pinned one (the heads were forked)",
                head_key(pinned.seq),
            )
        against.append((f"pinned archive head {pinned.seq}", pinned))

    # Older heads must agree with the archive too: a trusted key never signs two trees.
    for _, head, _ in heads[:-1]:
        for chain in head.chains:
            if wanted is not None and chain.chain_id not in wanted:
                continue
            root = roots.at(chain.chain_id, chain.size)
            if root is not None and root != chain.root_hash:
                fail(
                    f"archive head {head.seq} states another root for size {chain.size} than "
                    "the archive (fork)",
                    head_key(head.seq),
                    chain.chain_id,
                )

    for label, head in against:
        for chain in head.chains:
            if wanted is not None and chain.chain_id not in wanted:
                continue
            _check_chain(chain, present.get(chain.chain_id), roots, label, fail)

    uncovered = []
    for chain_id, chain_report in sorted(present.items()):
        stated = newest.chain(chain_id)
        size = getattr(chain_report, "tree_size", 0)
        if stated is None and size:
            uncovered.append(chain_id)
            chain_report.warnings.append(
                f"no archive head lists this chain yet ({size} records): a commit stopped "
                "before its head, or the newest head was deleted; pin heads with --expect-head"
            )
        elif stated is not None and size > stated.size:
            uncovered.append(chain_id)
            chain_report.warnings.append(
                f"records {stated.size}..{size - 1} are beyond the newest archive head: a commit "
                "stopped before its head, or the newest head was deleted"
            )
    return HeadSummary(
        seq=newest.seq,
        key=newest_key,
        signed_by=signers,
        chains=len(newest.chains),
        heads=len(heads),
        uncovered=uncovered,
    )


def _check_link(previous: ArchiveHead, head: ArchiveHead, key: str, fail: Any) -> None:
    if head.prev != previous.body_hash():
        fail(
            f"archive head {head.seq} does not link to head {previous.seq} (its previous hash "
            "differs): a head was replaced",
            key,
        )
    for before in previous.chains:
        now = head.chain(before.chain_id)
        if now is None:
            fail(
                f"archive head {head.seq} drops a chain head {previous.seq} listed",
                key,
                before.chain_id,
            )
        elif now.size < before.size:
            fail(
                f"archive head {head.seq} shortens the chain from {before.size} to {now.size}",
                key,
                before.chain_id,
            )
        elif now.size == before.size and now.root_hash != before.root_hash:
            fail(
                f"archive head {head.seq} states another root for size {now.size}",
                key,
                before.chain_id,
            )


def _check_chain(chain: ChainHead, present: Any, roots: _Roots, label: str, fail: Any) -> None:
    chain_id = chain.chain_id
    size = getattr(present, "tree_size", 0) if present is not None else 0
    if present is None or size == 0:
        fail(
            f"chain vanished: the {label} lists it with {chain.size} records, the archive has "
            "none of it",
            chain_id=chain_id,
        )
        return
    if size < chain.size:
        fail(
            f"chain shortened: the archive has {size} records, the {label} vouches for "
            f"{chain.size}",
            chain_id=chain_id,
        )
        return
    root = roots.at(chain_id, chain.size)
    if root is None:
        fail(
            f"no segment ends at size {chain.size}, which the {label} states",
            chain_id=chain_id,
        )
    elif root != chain.root_hash:
        fail(
            f"the archive's tree at size {chain.size} differs from the {label} (fork)",
            chain_id=chain_id,
        )
