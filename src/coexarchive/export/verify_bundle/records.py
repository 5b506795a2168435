"""Step 6: each record line is a canonical sealed record; its leaf hash follows from its bytes."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from coexarchive.errors import FormatError
from coexarchive.export._rows import ConversationKey, Row, conversations, leaf_of, parse_line
from coexarchive.export.disclosure import RECORD_KEYS, open_rows, read_disclosures
from coexarchive.export.formats import CURRENT, Rendering, rendering_of
from coexarchive.export.verify_bundle.report import RECORDS, BundleReport, RecordResult
from coexarchive.export.zipfiles import Budget

__all__ = ["Parsed", "parse", "record_lines", "records_step"]


@dataclass
class Parsed:
    """What steps 2 and 8 to 10 work from: the files, the parsed records and their leaves.

    ``complete`` when every line of ``records.jsonl`` parsed; steps 8 to 10 run only then.
    ``budget`` is what the nested ``rsmf.zip`` archives may still make this process allocate.
    """

    files: Mapping[str, bytes]
    description: Mapping[str, Any]
    rows: list[Row]
    leaves: Sequence[bytes]
    budget: Budget
    complete: bool = False

    @functools.cached_property
    def rules(self) -> Rendering:
        """The rendering rules of the bundle's format (step 1 refused any other)."""
        return rendering_of(self.description) or CURRENT

    @functools.cached_property
    def groups(self) -> dict[ConversationKey, list[int]]:
        return conversations(self.rows)

    @functools.cached_property
    def opening(self) -> tuple[list[Row], list[str]]:
        """The rows as rendered (version-2 personal fields opened with the record keys the
        bundle discloses, ``[erased]`` where it discloses none) and what did not open."""
        try:
            disclosed = read_disclosures(self.files.get(RECORD_KEYS))
        except FormatError as exc:
            return list(self.rows), [str(exc)]
        return open_rows(self.rows, disclosed)

    @property
    def shown(self) -> list[Row]:
        return self.opening[0]


def parse(files: Mapping[str, bytes], description: Mapping[str, Any], budget: Budget) -> Parsed:
    """Step 6's parse without its report: the render worker's own copy of the records."""
    lines, _ = record_lines(files)
    parsed = Parsed(files, description, [], [leaf_of(line) for line in lines], budget)
    try:
        parsed.rows = [parse_line(line) for line in lines]
    except ValueError:
        return parsed
    parsed.complete = bool(lines)
    return parsed


def records_step(
    files: Mapping[str, bytes], report: BundleReport
) -> tuple[list[Row | None], list[bytes]]:
    """Step 6: one result per line; the parsed rows (None where a line failed) and leaves."""
    lines, terminated = record_lines(files)
    if not terminated:
        report.fail("records", "does not end with a newline", key=RECORDS)
    if not lines and RECORDS in files:
        report.fail("records", "holds no record: the bundle proves nothing", key=RECORDS)
    rows: list[Row | None] = []
    leaves: list[bytes] = []
    seen: set[tuple[str, int]] = set()
    for number, line in enumerate(lines, start=1):
        leaf = leaf_of(line)
        leaves.append(leaf)
        result = RecordResult(number, None, None, None, leaf.hex())
        report.records.append(result)
        try:
            row: Row | None = parse_line(line)
        except ValueError as exc:
            row = None
            loose = _loose(line)
            result.chain_id, result.seq = loose.get("chain_id"), loose.get("seq")
            result.problems.append(f"line {number}: {exc}")
            report.fail(
                "records",
                f"line {number}: {exc}",
                key=RECORDS,
                chain=result.chain_id,
                seq=result.seq,
            )
        if row is not None:
            result.chain_id, result.seq = row["chain_id"], row["seq"]
            result.record_id = row["record_id"]
            slot = (row["chain_id"], row["seq"])
            if slot in seen:
                result.problems.append("leaf index appears twice")
                report.fail(
                    "records", "leaf index appears twice", key=RECORDS, chain=slot[0], seq=slot[1]
                )
            seen.add(slot)
        rows.append(row)
    return rows, leaves


def record_lines(files: Mapping[str, bytes]) -> tuple[list[bytes], bool]:
    """The lines of ``records.jsonl``, and whether it ends with a newline."""
    lines = files.get(RECORDS, b"").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
        return lines, True
    return lines, False


def _loose(line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    chain, seq = value.get("chain_id"), value.get("seq")
    return {
        "chain_id": chain if isinstance(chain, str) else None,
        "seq": seq if isinstance(seq, int) else None,
    }
