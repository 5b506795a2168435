"""``verify_archive``: which chains to verify, and the checks that come before and after them.

Verification fails closed: a store without Object Lock is refused before anything else (its
objects could have been rewritten at will), and a verification that verified no signed checkpoint
is a failure, never "OK".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from coexarchive.anchor.timestamps import check_timestamps
from coexarchive.anchor.tsa import Tsa
from coexarchive.anchor.witness import WitnessPolicy, check_witnesses
from coexarchive.archive_head import PinnedHead, check_archive_heads
from coexarchive.disposition import DisposedSegment, read_dispositions
from coexarchive.errors import (
    Failure,
    FormatError,
    ObjectMissingError,
    SignatureError,
    StorageError,
    UnsignedTailError,
)
from coexarchive.intents import INTENT_PREFIX
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import list_manifests
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.verify.chain import ChainVerifier
from coexarchive.verify.media import MediaCheck, check_media
from coexarchive.verify.report import ArchiveVerificationError, ChainReport, Head, Report

# Where a chain leaves objects: a chain with any of them is verified (and fails if unsigned).
CHAIN_PREFIXES = (
    layout.MANIFEST_PREFIX,
    layout.CHECKPOINT_PREFIX,
    layout.ARCHIVE_PREFIX,
    f"{layout.DEDUP_PREFIX}v1/",
    INTENT_PREFIX,
)


@dataclass(frozen=True)
class ChainScope:
    """What every chain's verification is told besides its id (see ``verify_archive``)."""

    since: int | None = None
    until: int | None = None
    heads: tuple[Head, ...] = ()
    held: frozenset[str] = frozenset()
    archive_name: str | None = None
    # Segments signed dispositions name (read once, by ``verify_archive``, and verified there).
    disposed: tuple[DisposedSegment, ...] = ()
    # How many stored attachments step 12 re-hashes per chain (None: none).
    media: MediaCheck | None = None

    def verifier(self, store: ObjectStore, trust: TrustStore, chain_id: str) -> ChainVerifier:
        """A verifier of ``chain_id`` that records into a report of its own."""
        return ChainVerifier(
            store,
            trust,
            chain_id,
            Report(),
            self.since,
            self.until,
            [head for head in self.heads if head.chain_id == chain_id],
            self.held,
            archive_name=self.archive_name,
            disposed={(entry.chain_id, entry.first_seq): entry for entry in self.disposed},
        )


# Verifies the given chains elsewhere (a Beam job): each chain's report and failures, in order.
ChainsJob = Callable[[Sequence[str], ChainScope], Sequence[tuple[ChainReport, Sequence[Failure]]]]


def chains_in(store: ObjectStore) -> list[str]:
    """Every chain that has a manifest, checkpoint, segment, record index or intent."""
    found: set[str] = set()
    for prefix in CHAIN_PREFIXES:
        for key in store.list(prefix):
            chain = layout.chain_of(key)
            if chain:
                found.add(chain)
    return sorted(found)


ALL_MEDIA = MediaCheck()


def verify_archive(
    store: ObjectStore,
    trust: TrustStore,
    *,
    chains: Sequence[str] | None = None,
    since: int | None = None,
    until: int | None = None,
    heads: Sequence[Head] = (),
    held_keys: Iterable[str] = (),
    executor: Executor | None = None,
    on_segment: Callable[[int], None] | None = None,
    archive_heads: Sequence[PinnedHead] = (),
    archive_name: str | None = None,
    tsas: Sequence[Tsa] = (),
    at: datetime | None = None,
    witnesses: WitnessPolicy | None = None,
    ask_witnesses: bool = True,
    job: ChainsJob | None = None,
    media: MediaCheck | None = ALL_MEDIA,
) -> Report:
    """Verify the archive (or ``chains``); ``since``/``until`` (ms) limit the row checks.

    With ``job``, the per-chain steps (1-10) run there (``pipelines/verify.py`` spreads them over
    a Beam runner's workers); the checks before and after them run here either way. ``media``
    says how many stored attachments step 12 re-hashes (all by default; None: none), in the job
    too, where each chain's step runs beside its other steps.
    """
    report = Report()
    lock_failure = object_lock_failure(store)
    if lock_failure is not None:
        report.failures.append(lock_failure)
        raise ArchiveVerificationError(report)
    held = set(held_keys)
    try:
        disposed = read_dispositions(store, trust)
    except (FormatError, SignatureError, ObjectMissingError, UnsignedTailError) as exc:
        # Fail closed: without a register that verifies, no missing content is excused.
        report.failures.append(Failure("objects", f"disposition register: {exc}", "dispositions"))
        disposed = {}
    chain_ids = list(chains) if chains is not None else chains_in(store)
    if job is not None:
        scope = ChainScope(
            since,
            until,
            tuple(heads),
            frozenset(held),
            archive_name,
            tuple(disposed.values()),
            media,
        )
        for chain_report, failures in job(chain_ids, scope):
            report.failures.extend(failures)
            report.chains.append(chain_report)
    for chain_id in chain_ids if job is None else ():
        chain_heads = [head for head in heads if head.chain_id == chain_id]
        verifier = ChainVerifier(
            store,
            trust,
            chain_id,
            report,
            since,
            until,
            chain_heads,
            held,
            archive_name=archive_name,
            disposed=disposed,
        )
        verifier.run(executor, on_segment)
        check_chain_media(verifier, media)
        report.chains.append(verifier.chain)
    for head in heads:
        if chains is not None and head.chain_id not in chains:
            continue
        if not any(chain.chain_id == head.chain_id for chain in report.chains):
            report.failures.append(Failure("head", "pinned chain is missing", head.chain_id))
    report.archive_head = check_archive_heads(
        store, trust, report, archive_name=archive_name, chains=chains, pins=archive_heads
    )
    if tsas:
        report.steps = (*report.steps, "timestamp")
        report.timestamps = check_timestamps(
            store, trust, tsas, report.failures, archive_name=archive_name, at=at
        )
    if witnesses is not None:
        report.steps = (*report.steps, "witness")
        report.witnesses = check_witnesses(
            store,
            trust,
            witnesses,
            report.failures,
            archive_name=archive_name or _head_archive(store, trust),
            ask=ask_witnesses,
        )
    if not report.chains:
        report.failures.append(_nothing_verified(store))
    if report.failures:
        raise ArchiveVerificationError(report)
    return report


def check_chain_media(verifier: ChainVerifier, media: MediaCheck | None) -> None:
    """Step 12: the attachments the chain's verified media records name, unaltered."""
    if media is None:
        return
    verifier.chain.media_checked = check_media(
        verifier.store,
        verifier.chain_id,
        verifier.media,
        verifier.manifests,
        media,
        verifier.fail,
    )


def _head_archive(store: ObjectStore, trust: TrustStore) -> str:
    """The archive name the newest trusted head states (when the caller gave none)."""
    from coexarchive.anchor.witness import read_heads_log

    log = read_heads_log(store, trust, None, strict=False)
    return log.heads[-1].archive if log.heads else ""


def object_lock_failure(store: ObjectStore) -> Failure | None:
    """Why the store cannot hold evidence (no Object Lock, or it cannot say), or None."""
    require = getattr(store, "require_object_lock", None)
    if require is None:
        return Failure("retention", "the store cannot show that it enforces Object Lock")
    try:
        require()
    except StorageError as exc:
        return Failure(
            "retention",
            f"{exc}: without Object Lock any object could have been rewritten, so nothing in "
            "this bucket was verified",
        )
    return None


def _nothing_verified(store: ObjectStore) -> Failure:
    if next(iter(store.list("")), None) is None:
        return Failure("archive", "nothing to verify: the archive is empty; nothing was verified")
    return Failure(
        "archive",
        "nothing was verified: the bucket holds objects but no sealed chain (run `coexarchive "
        "ingest` to seal raw/ objects; check --bucket and COEXARCHIVE_BUCKET)",
    )


def count_segments(store: ObjectStore, chains: Sequence[str] | None = None) -> int:
    return sum(len(list_manifests(store, c)) for c in (chains or chains_in(store)))


def default_executor(workers: int) -> Executor | None:
    return ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
