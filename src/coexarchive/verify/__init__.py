"""Archive verification, in numbered steps that each name the check they make.

``verify_archive`` returns a :class:`Report` when every check holds and raises
:class:`~coexarchive.errors.VerificationError` (carrying the same report) when any fails. Each
failure names its step, chain, object and ``seq``.

Steps, per chain:

1. ``manifests``   every manifest parses, and together they cover ``seq`` 0..n-1 with no gap or
                   overlap (a deleted middle segment shows here).
2. ``objects``     every object a manifest lists exists with the recorded size and SHA-256.
3. ``rows``        every row recomputes to its leaf hash; ``seq`` is contiguous and inside the
                   manifest's range; every row belongs to the chain.
4. ``chain``       chain hashes link from the chain's genesis value through every segment.
5. ``merkle``      each segment's leaves extend the previous frontier to the manifest's root.
6. ``checkpoint``  each segment's checkpoint is signed by a trusted key, names the right origin,
                   size, root and chain head.
7. ``fork``        every checkpoint object in the chain matches the tree at its size; no key holds
                   more than one version.
8. ``head``        the archive is at least as long as, and consistent with, a checkpoint held
                   outside the writer's reach (``--expect-head``).
9. ``retention``   every object carries Object Lock retention at least as strong as its manifest
                   says, and a legal hold where the hold register places one.
10. ``tail``       nothing of the chain lies past its last signed checkpoint: every segment,
                   record index, intent or manifest no signed manifest names is an *unsigned
                   tail* (a failure), or, wholly inside the signed range, a leftover of an
                   interrupted run (a warning: "unreferenced, never signed").

Then, for the archive as a whole (``coexarchive.archive_head``):

11. ``archive-head`` the signed archive heads link from the first to the newest, and every chain
                   the newest (or a pinned) head lists is still there, at least as long, with the
                   same root at the stated size.
12. ``media``      every stored attachment a verified ``media`` record names exists, is locked,
                   and re-hashes to the sealed SHA-256 and size (``--media``;
                   ``coexarchive.verify.media``).
13. ``timestamp``  (with a TSA file) every RFC 3161 token over a head verifies against the
                   configured roots and is over that head's text, sealed digests match, times
                   are monotonic with the heads; heads without a token are reported as gaps
                   (``coexarchive.anchor.timestamps``).
14. ``witness``    (with a witness file) stored cosignatures match the heads log, a quorum
                   cosigned the newest head, and no witness saw more heads or another history
                   (``coexarchive.anchor.witness``).

Before any chain, the store must enforce Object Lock; after them, at least one chain must have
been verified: an empty archive, or one holding only raw objects, is a failure ("nothing was
verified"), as is a chain none of whose checkpoints verifies.

Modules: ``archive`` (this orchestration), ``chain`` (steps 1-2 and 6-9 per chain), ``segment``
(steps 3-5 per segment, pure), ``tail`` (step 10), ``report`` (what was found).
"""

from coexarchive.verify.archive import (
    CHAIN_PREFIXES,
    ChainScope,
    ChainsJob,
    chains_in,
    count_segments,
    default_executor,
    object_lock_failure,
    verify_archive,
)
from coexarchive.verify.chain import MAX_SEGMENTS_IN_FLIGHT, ChainVerifier, SegmentCheck
from coexarchive.verify.report import (
    STEPS,
    ArchiveVerificationError,
    ChainReport,
    Head,
    Report,
    parse_head,
)
from coexarchive.verify.segment import SegmentOutcome, check_segment

__all__ = [
    "CHAIN_PREFIXES",
    "MAX_SEGMENTS_IN_FLIGHT",
    "STEPS",
    "ArchiveVerificationError",
    "ChainReport",
    "ChainScope",
    "ChainVerifier",
    "ChainsJob",
    "Head",
    "Report",
    "SegmentCheck",
    "SegmentOutcome",
    "chains_in",
    "check_segment",
    "count_segments",
    "default_executor",
    "object_lock_failure",
    "parse_head",
    "verify_archive",
]
