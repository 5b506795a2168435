"""Steps 3-5 for one segment: rows, chain and Merkle root, recomputed from the segment's bytes.

Pure functions of the segment bytes, its manifest and the committed state before it, so they run
in worker processes (and in ``query --verify``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from coexarchive._internal.clock import utc_date
from coexarchive.errors import Failure, FormatError
from coexarchive.findings import findings_of_table
from coexarchive.seal.chain import chain_step, recompute_leaf_hashes
from coexarchive.segments import INDEX_FORMAT, ChainState, Manifest, read_segment
from coexarchive.verify.media import MediaRow, media_rows

_sha256 = hashlib.sha256
_INDEX_HEADER = (INDEX_FORMAT + "\n").encode()


@dataclass(frozen=True)
class SegmentOutcome:
    failures: list[Failure]
    rows: int
    # Root of the tree at each pinned-head size that falls inside this segment.
    head_roots: dict[int, bytes]
    # The segment's ``media`` records, for step 12 (the attachments they name).
    media: list[MediaRow] = field(default_factory=list)


def check_segment(
    data: bytes,
    manifest: Manifest,
    start: ChainState,
    head_sizes: Sequence[int] = (),
    index: bytes | None = None,
) -> SegmentOutcome:
    """Steps 3-5 for one segment, given the committed state before it (pure; runs in workers).

    With ``index`` (the segment's record-id index, whose bytes step 2 matched to the manifest),
    also check that it states its content size and lists exactly the segment's records: ingest
    trusts it to recognise records already sealed, so a wrong one would make it skip new records.

    Whole-column comparisons decide the common case; only a segment that fails one goes through
    the row-by-row pass that names every offending ``seq``.
    """
    chain_id, key = manifest.chain_id, manifest.segment.key
    failures: list[Failure] = []

    def fail(step: str, message: str, seq: int | None = None) -> None:
        failures.append(Failure(step, message, chain_id, key, seq))

    try:
        table = read_segment(data, key=key)
    except FormatError as exc:
        fail("rows", str(exc))
        return SegmentOutcome(failures, 0, {})
    table = table.sort_by("seq")
    rows = table.num_rows
    if index is not None:
        problem = record_index_problem(index, table)
        if problem is not None:
            failures.append(Failure("objects", problem, chain_id, manifest.record_index.key))
    recomputed = recompute_leaf_hashes(table)

    # Step 3: rows — seq contiguous within the manifest's range, right chain, leaf recomputes.
    seq_column = table.column("seq")
    seqs_ok = (
        rows == manifest.record_count
        and rows > 0
        and seq_column[0].as_py() == manifest.first_seq
        and bool(np.all(np.diff(seq_column.to_numpy()) == 1))
    )
    chain_ok = bool(pc.all(pc.equal(table.column("chain_id"), chain_id)).as_py())
    leaves_ok = _fixed_bytes(table.column("leaf_hash")) == b"".join(recomputed)
    seqs: list[int] = seq_column.to_pylist()
    if not seqs_ok:
        _seq_failures(seqs, manifest, fail)
    if not chain_ok:
        for seq, row_chain in zip(seqs, table.column("chain_id").to_pylist(), strict=True):
            if row_chain != chain_id:
                fail("rows", f"row belongs to chain {row_chain!r}", seq)
    if not leaves_ok:
        stored_leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
        for seq, stored, actual in zip(seqs, stored_leaves, recomputed, strict=True):
            if stored != actual:
                fail("rows", "row content does not match its leaf hash (field edited?)", seq)

    # The manifest's event times and date are the rows' (period queries skip files by them).
    if rows:
        times = pc.min_max(table.column("event_time").cast(pa.int64())).as_py()
        low, high = times["min"], times["max"]
        if (low, high) != (manifest.min_event_time, manifest.max_event_time):
            fail(
                "manifests",
                "event-time range differs from the segment's rows: a period query would skip "
                "or count the segment wrongly",
            )
        if {utc_date(low), utc_date(high)} != {manifest.date}:
            fail("manifests", f"date {manifest.date} is not the UTC date of the segment's events")

    # The manifest's customer filter holds every customer of the segment (queries rely on it;
    # writers leave empty ids out, as no report can ask for one).
    if manifest.customers is not None:
        ids = table.column("customer_id").drop_null()
        customers = pc.unique(ids.filter(pc.not_equal(ids, ""))).to_pylist()
        absent = manifest.customers.missing(customers)
        if absent:
            fail(
                "manifests",
                f"customer filter lacks {len(absent)} customer(s) the segment holds: a "
                "customer's report would skip their records",
            )

    # The manifest's compliance findings are the segment's (the compliance summary sums them).
    if manifest.findings is not None and findings_of_table(table) != dict(manifest.findings):
        fail(
            "manifests",
            "findings differ from the segment's records: the compliance summary would "
            "misstate them",
        )

    # The manifest's kind counts are the segment's (verify-on-query finds assessments by them).
    if manifest.kinds and _kind_counts(table) != dict(manifest.kinds):
        fail(
            "manifests",
            "kind counts differ from the segment's records: a query proving current flags "
            "would miss an assessment",
        )

    # Step 4: chain — each chain hash links the previous one to this row's recomputed leaf.
    if manifest.prev_chain_hash != start.chain_hash:
        fail("chain", "manifest's prev_chain_hash is not the previous segment's head")
    linked = []
    previous = start.chain_hash
    for leaf in recomputed:
        previous = _sha256(previous + leaf).digest()
        linked.append(previous)
    stored_chain_bytes = _fixed_bytes(table.column("chain_hash"))
    if stored_chain_bytes != b"".join(linked):
        stored_chain = [bytes(v) for v in table.column("chain_hash").to_pylist()]
        previous = start.chain_hash
        for seq, leaf, stored in zip(seqs, recomputed, stored_chain, strict=True):
            previous = chain_step(previous, leaf)
            if stored != previous:
                fail("chain", "chain hash does not link to the previous row", seq)
                previous = stored  # report each break once, not every row after it
    if linked and stored_chain_bytes[-32:] != manifest.chain_hash:
        fail("chain", "manifest's chain head differs from the segment's last row")

    # Step 5: merkle — the recomputed leaves extend the previous frontier to the manifest root.
    frontier = start.frontier.copy()
    head_roots: dict[int, bytes] = {}
    pending = sorted(size for size in head_sizes if start.size < size <= start.size + rows)
    if not pending:
        frontier.extend(recomputed)
    for leaf in recomputed if pending else ():
        frontier.append(leaf)
        if pending and frontier.size == pending[0]:
            head_roots[pending.pop(0)] = frontier.root()
    if frontier.root() != manifest.root_hash or tuple(frontier.hashes) != manifest.frontier:
        fail("merkle", "segment leaves do not produce the manifest's Merkle root")
    media = media_rows(table) if not manifest.kinds or manifest.kinds.get("media") else []
    return SegmentOutcome(failures, rows, head_roots, media)


def check_leaves(
    leaves: Sequence[bytes],
    manifest: Manifest,
    start: ChainState,
    head_sizes: Sequence[int] = (),
) -> SegmentOutcome:
    """Steps 4-5 for a disposed segment, from its kept leaf hashes (its rows are gone).

    The chain still links from the previous segment's head to the manifest's, and the leaves
    still extend the previous frontier to the manifest's root: so the checkpoints that sign
    that root still cover every remaining record.
    """
    chain_id, key = manifest.chain_id, manifest.segment.key
    failures: list[Failure] = []
    if len(leaves) != manifest.record_count:
        failures.append(
            Failure("rows", "kept leaf hashes do not count the segment's records", chain_id, key)
        )
        return SegmentOutcome(failures, 0, {})
    if manifest.prev_chain_hash != start.chain_hash:
        failures.append(
            Failure(
                "chain",
                "manifest's prev_chain_hash is not the previous segment's head",
                chain_id,
                key,
            )
        )
    previous = start.chain_hash
    for leaf in leaves:
        previous = _sha256(previous + leaf).digest()
    if previous != manifest.chain_hash:
        failures.append(
            Failure(
                "chain", "kept leaf hashes do not link to the manifest's chain head", chain_id, key
            )
        )
    frontier = start.frontier.copy()
    head_roots: dict[int, bytes] = {}
    pending = sorted(size for size in head_sizes if start.size < size <= manifest.tree_size)
    for leaf in leaves:
        frontier.append(leaf)
        if pending and frontier.size == pending[0]:
            head_roots[pending.pop(0)] = frontier.root()
    if frontier.root() != manifest.root_hash or tuple(frontier.hashes) != manifest.frontier:
        failures.append(
            Failure(
                "merkle",
                "kept leaf hashes do not produce the manifest's Merkle root",
                chain_id,
                key,
            )
        )
    return SegmentOutcome(failures, 0, head_roots)


def _kind_counts(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(table.column("kind")).to_pylist()
    return {str(item["values"]): int(item["counts"]) for item in counts}


def _fixed_bytes(column: pa.ChunkedArray) -> bytes:
    """The concatenated values of a non-null fixed-size binary column."""
    array = column.combine_chunks()
    if array.null_count:
        return b""
    width = array.type.byte_width
    buffer = array.buffers()[1]
    data: bytes = buffer.to_pybytes()
    return data[array.offset * width : (array.offset + len(array)) * width]


def _seq_failures(seqs: Sequence[int], manifest: Manifest, fail: Callable[..., None]) -> None:
    expected = list(range(manifest.first_seq, manifest.last_seq + 1))
    if seqs == expected:
        return
    missing = sorted(set(expected) - set(seqs))
    extra = sorted(set(seqs) - set(expected))
    dupes = len(seqs) - len(set(seqs))
    parts = []
    if missing:
        parts.append(f"rows missing at seq {_ranges(missing)}")
    if extra:
        parts.append(f"rows outside the manifest's range at seq {_ranges(extra)}")
    if dupes:
        parts.append(f"{dupes} duplicated seq value(s)")
    located = missing or extra
    fail("rows", "; ".join(parts) or "seq values out of order", located[0] if located else None)


def _ranges(values: Sequence[int]) -> str:
    spans: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        spans.append(str(start) if start == prev else f"{start}..{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(spans[:5]) + (" …" if len(spans) > 5 else "")


def record_index_problem(index: bytes, table: pa.Table) -> str | None:
    """Why a record-id index does not match its segment's rows, or None when it does."""
    try:
        declared = zstandard.get_frame_parameters(index).content_size
        if declared == zstandard.CONTENTSIZE_UNKNOWN:
            return "record index's zstd frame does not state its content size"
        text = zstandard.ZstdDecompressor().decompress(index)
    except zstandard.ZstdError as exc:
        return f"record index is unreadable ({exc})"
    if text != _index_text_of(table):
        return (
            "record index does not list exactly the segment's records (ingest reads it to "
            "recognise records already sealed)"
        )
    return None


def _index_text_of(table: pa.Table) -> bytes:
    """The index text a segment's rows call for, built in Arrow: UTF-8 byte order is code point
    order, so Arrow's sort is the one ``index_text`` makes with Python strings."""
    joined = pc.binary_join_element_wise(
        table.column("record_id").cast(pa.binary()), table.column("kind").cast(pa.binary()), b" "
    )
    if isinstance(joined, pa.ChunkedArray):
        joined = joined.combine_chunks()
    ordered = joined.take(pc.sort_indices(joined))
    if len(ordered) > 1 and pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py():
        ordered = pc.unique(ordered)  # the index lists each line once
    lines = pa.ListArray.from_arrays(pa.array([0, len(ordered)], pa.int32()), ordered)
    body: bytes = pc.binary_join(lines, b"\n")[0].as_py()
    return _INDEX_HEADER + body + b"\n"
