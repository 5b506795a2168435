"""Offline verification of an evidence bundle, from the bundle alone, in numbered steps.

``verify_bundle`` returns a :class:`BundleReport` when every check holds and raises
:class:`BundleVerificationError` (carrying the same report) when any fails. Every failure names
its step and the file, chain and leaf index (``seq``) concerned; the report also has one entry per
record. It verifies against keys the caller trusts: a trust file, or, only when asked for
explicitly, the bundle's own keys, and then the report's ``result`` is ``UNTRUSTED``, never
``OK``.

Steps, one module each (``layout`` holds 1 to 3, ``trust`` 4 and 5, ``renders`` 9 and 10):

1. ``layout``       ``BUNDLE.json`` and ``MANIFEST`` exist and parse; the format is one of
                    ``formats.FORMATS`` (steps 8 to 10 render with its rules, so a bundle of
                    an earlier release verifies as that release verified it); every path is a
                    plain relative one.
2. ``files``        every file in ``MANIFEST`` exists with that SHA-256; no file is unlisted; no
                    ``MANIFEST`` path is absolute, climbs out or is listed twice.
3. ``custody``      ``CUSTODY.json`` names the SHA-256 of ``MANIFEST`` and the bundle's counts.
4. ``keys``         the trust store: ``trust``, or the bundle's own keys when
                    ``trust_bundle_keys`` (integrity only, not origin: UNTRUSTED).
5. ``checkpoints``  each chain's checkpoint is signed by a trusted key, for the chain's origin,
                    with the size and root ``BUNDLE.json`` states.
6. ``records``      each line of ``records.jsonl`` is a canonical (RFC 8785) sealed record; its
                    leaf hash is ``SHA-256(0x00 || line)``; no leaf index appears twice.
7. ``proofs``       each record has exactly one proof, naming its leaf hash and index; the proof's
                    checkpoint is the chain's; the RFC 6962 path folds to the signed root.
8. ``tables``       ``records.parquet`` and ``records.csv`` hold exactly the proven records.
9. ``transcripts``  every transcript page re-renders, byte for byte, from the proven records.
10. ``rsmf``        every RSMF file re-renders from the proven records (its manifest, attachments
                    and text; the zip's compressed bytes may differ between zlib builds); its
                    ``rsmf.zip`` is read within the bundle's caps.
11. ``anchors``     the archive head the bundle carries is trusted and states its chains' roots;
                    its RFC 3161 timestamps verify against the TSA roots given, and its witness
                    cosignatures meet the policy given (``verify_bundle.anchors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.anchor.tsa import Tsa
from coexarchive.anchor.witness import WitnessPolicy
from coexarchive.export.disclosure import RECORD_KEYS
from coexarchive.export.media import THUMBS_DIR, media_problems, thumb_problems
from coexarchive.export.verify_bundle import worker as _worker
from coexarchive.export.verify_bundle.anchors import anchors_step
from coexarchive.export.verify_bundle.layout import custody_step, files_step, layout_step
from coexarchive.export.verify_bundle.proofs import proofs_step
from coexarchive.export.verify_bundle.records import Parsed, records_step
from coexarchive.export.verify_bundle.renders import rsmf_step, transcripts_step
from coexarchive.export.verify_bundle.report import (
    BUNDLE_KEYS_WARNING,
    CHAIN_HASH_WARNING,
    STEPS,
    BundleReport,
    BundleVerificationError,
    RecordResult,
)
from coexarchive.export.verify_bundle.tables import csv_table_step, parquet_table_step
from coexarchive.export.verify_bundle.trust import checkpoints_step, keys_step, require_trust_choice
from coexarchive.export.zipfiles import DEFAULT_LIMITS, Budget, ReadLimits
from coexarchive.seal.keys import TrustStore

__all__ = [
    "BUNDLE_KEYS_WARNING",
    "CHAIN_HASH_WARNING",
    "STEPS",
    "BundleReport",
    "BundleVerificationError",
    "RecordResult",
    "verify_bundle",
]


def verify_bundle(
    files: Mapping[str, bytes],
    *,
    trust: TrustStore | None = None,
    trust_bundle_keys: bool = False,
    workers: int = 1,
    limits: ReadLimits = DEFAULT_LIMITS,
    tsas: Sequence[Tsa] = (),
    witnesses: WitnessPolicy | None = None,
) -> BundleReport:
    """Verify a bundle given as path → bytes (see :func:`coexarchive.export.bundle.read_bundle`).

    Give exactly one of ``trust`` (the archive's keys, obtained independently of the bundle) or
    ``trust_bundle_keys=True`` (the keys the bundle carries: the report's ``trusted`` is then
    False and its ``result`` ``UNTRUSTED`` even when every check holds); with neither,
    :class:`~coexarchive.errors.ConfigError`. ``limits`` caps what the nested ``rsmf.zip``
    archives may make this process allocate, with the bundle's own bytes counted against
    ``max_total_bytes``.

    ``workers=2`` checks the file hashes and re-renders the transcripts and RSMF files in a
    forked process while this one checks checkpoints, proofs and tables; the report is the same
    either way. Where ``fork`` is not available, or the worker dies, everything runs here.
    """
    require_trust_choice(trust, trust_bundle_keys=trust_bundle_keys)
    with cyclic_gc_paused():
        return _verify(files, trust, trust_bundle_keys, workers, limits, tsas, witnesses)


# Step 11: every attachment file is the one its proven media record sealed, and only those.
def media_step(proven: Parsed, report: BundleReport) -> None:
    for path, problem in media_problems(proven.shown, proven.files):
        report.fail("media", problem, key=path)
    # Thumbnails are derived files: their pixels are not evidence and not checked, but each must
    # be the one thumbnail of a proven stored image, in a format whose transcripts show them.
    if not proven.rules.thumbnails:
        for path in sorted(p for p in proven.files if p.startswith(THUMBS_DIR)):
            report.fail("media", f"{proven.rules.format} bundles hold no thumbnails", key=path)
        return
    for path, problem in thumb_problems(proven.shown, proven.files):
        report.fail("media", problem, key=path)


def _verify(
    files: Mapping[str, bytes],
    trust: TrustStore | None,
    trust_bundle_keys: bool,
    workers: int,
    limits: ReadLimits,
    tsas: Sequence[Tsa] = (),
    witnesses: WitnessPolicy | None = None,
) -> BundleReport:
    report = BundleReport()
    description = layout_step(files, report)
    if description is None:
        raise BundleVerificationError(report)
    report.matter = str(description.get("matter"))
    budget = Budget(limits, used=sum(len(data) for data in files.values()))
    worker = _worker.Worker(
        files, description, budget, (files_step, transcripts_step, rsmf_step), files_step, workers
    )
    try:
        rows, leaves = records_step(files, report)
        parsed = Parsed(
            files, description, [row for row in rows if row is not None], leaves, budget
        )
        parsed.complete = len(parsed.rows) == len(rows) > 0
        custody_step(files, report)
        store = keys_step(files, trust, report, trust_bundle_keys=trust_bundle_keys)
        chains = checkpoints_step(files, description, store, report)
        proofs_step(files, chains, rows, leaves, report)
        for problem in parsed.opening[1] if parsed.complete else ():
            report.fail("records", problem, key=RECORD_KEYS)
        proven = parsed.complete and all(result.ok for result in report.records)
        if proven:
            csv_table_step(parsed, report)
            parquet_table_step(parsed, report)
            media_step(parsed, report)
        elif rows:
            report.warnings.append(
                "tables, transcripts and RSMF were not re-rendered and attachments not checked: "
                "some records did not verify"
            )
        anchors_step(files, description, store, report, tsas=tsas, witnesses=witnesses)
        failures, warnings = worker.failures(parsed, rendered=proven)
        report.failures.extend(failures)
        report.warnings.extend(warnings)
    finally:
        worker.close()
    if report.failures:
        # Steps ran in two processes and out of order: report them in the order of STEPS.
        report.failures.sort(key=lambda failure: STEPS.index(failure.step))
        raise BundleVerificationError(report)
    return report
