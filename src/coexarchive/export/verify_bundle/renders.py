"""Steps 9 and 10: each transcript and RSMF file is what the proven records render to."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from coexarchive.errors import ConfigError
from coexarchive.export.media import MEDIA_DIR, thumb_paths
from coexarchive.export.rsmf import (
    BOUNDARY,
    RsmfParts,
    render_rsmf_parts,
    unsafe_header_values,
)
from coexarchive.export.transcript import render_transcripts
from coexarchive.export.verify_bundle.records import Parsed
from coexarchive.export.verify_bundle.report import BundleReport
from coexarchive.export.zipfiles import Budget, BundleReadError, read_zip

__all__ = ["compare", "rsmf_step", "transcripts_step"]


# Step 9: each transcript is what the proven records render to.
def transcripts_step(proven: Parsed, report: BundleReport) -> None:
    description = proven.description
    try:
        expected = render_transcripts(
            proven.shown,
            proven.leaves,
            zone_name=str(description.get("time_zone")),
            matter=str(description.get("matter")),
            groups=proven.groups,
            rules=proven.rules,
            thumbs=thumb_paths(proven.files) if proven.rules.thumbnails else None,
        )
    except ConfigError as exc:
        report.fail("transcripts", f"cannot render: {exc}", key="BUNDLE.json")
        return
    _compare_set(proven.files, expected, "transcripts/", "transcripts", report)


# Step 10: each RSMF file is what the proven records render to.
def rsmf_step(proven: Parsed, report: BundleReport) -> None:
    files = proven.files
    media = {path: data for path, data in files.items() if path.startswith(MEDIA_DIR)}
    expected = render_rsmf_parts(
        proven.shown, proven.leaves, groups=proven.groups, rules=proven.rules, media=media
    )
    if not proven.rules.safe_headers:
        exposed = unsafe_header_values(proven.shown, proven.groups)
        if exposed:
            report.warnings.append(
                f"{proven.rules.format} RSMF headers of {len(exposed)} conversation(s) (first: "
                f"{exposed[0]!r}) hold control or direction characters as recorded: a reader "
                "loading these RSMF files (e.g. into Relativity) can be attacked through them; "
                "load a re-export in the current format instead"
            )
    for path in sorted(set(expected) | {p for p in files if p.startswith("rsmf/")}):
        if path not in files:
            report.fail("rsmf", "expected RSMF file is missing", key=path)
        elif path not in expected:
            report.fail("rsmf", "RSMF file renders from no record of the bundle", key=path)
        else:
            problem = _rsmf_difference(path, files[path], expected[path], proven.budget)
            if problem is not None:
                report.fail("rsmf", problem, key=path)


def _rsmf_difference(path: str, actual: bytes, expected: RsmfParts, budget: Budget) -> str | None:
    """Why the RSMF message ``actual`` is not ``expected``, or None.

    Its text is compared first; only then is its ``rsmf.zip`` read, within ``budget`` (the
    bundle's caps, one level deep: an archive inside it is refused).
    """
    marker = b'filename="rsmf.zip"\r\n\r\n'
    try:
        start = actual.index(marker) + len(marker)
        end = actual.index(b"\r\n\r\n--" + BOUNDARY.encode(), start)
        payload = base64.b64decode(actual[start:end].replace(b"\r\n", b""), validate=True)
    except (ValueError, binascii.Error) as exc:
        return f"not a readable RSMF message ({exc})"
    if actual[:start] + actual[end:] != expected.before + expected.after:
        return "headers or extracted text differ from the proven records"
    try:
        members = read_zip(payload, budget, where=f"{path} rsmf.zip", nested=True)
    except BundleReadError as exc:
        return str(exc)
    if members != expected.members:
        names = sorted(
            n
            for n in set(members) | set(expected.members)
            if members.get(n) != expected.members.get(n)
        )
        return f"rsmf.zip differs from the proven records in {', '.join(names)}"
    return None


def _compare_set(
    files: Mapping[str, bytes],
    expected: Mapping[str, bytes],
    prefix: str,
    step: str,
    report: BundleReport,
) -> None:
    for path in sorted(set(expected) | {p for p in files if p.startswith(prefix)}):
        if path not in files:
            report.fail(step, "expected file is missing", key=path)
        elif path not in expected:
            report.fail(step, "file renders from no record of the bundle", key=path)
        else:
            compare(report, step, path, expected[path], files[path])


def compare(report: BundleReport, step: str, path: str, expected: bytes, actual: bytes) -> None:
    if expected == actual:
        return
    mine, theirs = expected.split(b"\n"), actual.split(b"\n")
    number = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False), start=1) if a != b),
        min(len(mine), len(theirs)) + 1,
    )
    report.fail(step, f"line {number} differs from what the proven records render to", key=path)
