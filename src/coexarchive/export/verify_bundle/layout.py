"""Steps 1 to 3: the bundle says what it is, lists exactly its files, and custody names the list."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from coexarchive.export.bundle import CUSTODY_FORMAT, NOT_IN_MANIFEST
from coexarchive.export.formats import FORMATS, known_formats
from coexarchive.export.verify_bundle.records import Parsed
from coexarchive.export.verify_bundle.report import RECORDS, BundleReport
from coexarchive.export.zipfiles import member_problem

__all__ = ["custody_step", "files_step", "layout_step"]

_MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  (\S(?:.*\S)?)")


# Step 1: the bundle says what it is, and lists its files.
def layout_step(files: Mapping[str, bytes], report: BundleReport) -> dict[str, Any] | None:
    refused = False
    for path in sorted(files):
        # read_bundle refuses these already; a mapping from elsewhere is checked here too.
        problem = member_problem(path)
        if problem is not None:
            report.fail("layout", f"member {problem}", key=path)
            refused = True
    for name in ("BUNDLE.json", "MANIFEST", RECORDS):
        if name not in files:
            report.fail("layout", "required file is missing", key=name)
    if "BUNDLE.json" not in files or refused:
        return None
    try:
        description = orjson.loads(files["BUNDLE.json"])
    except orjson.JSONDecodeError as exc:
        report.fail("layout", f"not valid JSON ({exc})", key="BUNDLE.json")
        return None
    found = description.get("format") if isinstance(description, dict) else None
    if not isinstance(description, dict) or not isinstance(found, str) or found not in FORMATS:
        report.fail(
            "layout",
            f"unknown bundle format {found!r}: this coexarchive verifies {known_formats()}; "
            "use a release that knows the bundle's format",
            key="BUNDLE.json",
        )
        return None
    report.format = found
    known: dict[str, Any] = description
    return known


# Step 2: every file is the one MANIFEST lists, and nothing else was added.
def files_step(parsed: Parsed, report: BundleReport) -> None:
    files = parsed.files
    listed: dict[str, str] = {}
    try:
        text = files.get("MANIFEST", b"").decode("utf-8")
    except UnicodeDecodeError:
        report.fail("files", "MANIFEST is not UTF-8 text", key="MANIFEST")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            report.fail("files", f"line {number} is not '<sha256>  <path>'", key="MANIFEST")
            continue
        path = match.group(2)
        problem = member_problem(path)
        if problem is not None:
            report.fail("files", f"line {number}: {path!r} {problem}", key="MANIFEST")
        elif path in listed:
            report.fail("files", f"line {number}: {path!r} is listed twice", key="MANIFEST")
        else:
            listed[path] = match.group(1)
    for path, digest in sorted(listed.items()):
        data = files.get(path)
        if data is None:
            report.fail("files", "listed in MANIFEST but missing from the bundle", key=path)
        elif hashlib.sha256(data).hexdigest() != digest:
            report.fail("files", "SHA-256 differs from MANIFEST: the file was altered", key=path)
    for path in sorted(files):
        if path not in listed and path not in NOT_IN_MANIFEST:
            report.fail("files", "file is not listed in MANIFEST", key=path)


# Step 3: the custody entry names this MANIFEST.
def custody_step(files: Mapping[str, bytes], report: BundleReport) -> None:
    data = files.get("CUSTODY.json")
    if data is None:
        report.fail("custody", "chain-of-custody entry is missing", key="CUSTODY.json")
        return
    try:
        custody = orjson.loads(data)
    except orjson.JSONDecodeError:
        report.fail("custody", "not valid JSON", key="CUSTODY.json")
        return
    if not isinstance(custody, dict) or custody.get("format") != CUSTODY_FORMAT:
        report.fail("custody", "unknown custody format", key="CUSTODY.json")
        return
    actual = hashlib.sha256(files.get("MANIFEST", b"")).hexdigest()
    if custody.get("manifest_sha256") != actual:
        report.fail(
            "custody",
            f"names MANIFEST SHA-256 {custody.get('manifest_sha256')}, the bundle's is {actual}",
            key="CUSTODY.json",
        )
    lines = files.get(RECORDS, b"").count(b"\n")
    counted = (custody.get("counts") or {}).get("records")
    if counted != lines:
        report.fail(
            "custody", f"counts {counted} records, the bundle holds {lines}", key="CUSTODY.json"
        )
