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

Then, for the archive as a whole (``coexarchive.archive_head``):

10. ``archive-head`` the signed archive heads link from the first to the newest, and every chain
                   the newest (or a pinned) head lists is still there, at least as long, with the
                   same root at the stated size.
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from coexarchive.archive_head import HeadSummary, PinnedHead, check_archive_heads
from coexarchive.errors import (
    CoexArchiveError,
    Failure,
    FormatError,
    ObjectMissingError,
    SignatureError,
    VerificationError,
)
from coexarchive.findings import findings_of_table
from coexarchive.seal.chain import chain_step, genesis, recompute_leaf_hashes
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import (
    CHAIN_HASH_EXTENSION,
    ChainState,
    Manifest,
    content_segment_key,
    list_manifests,
    read_segment,
)
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, sha256_hex

_sha256 = hashlib.sha256
MAX_SEGMENTS_IN_FLIGHT = 4

STEPS = (
    "manifests",
    "objects",
    "rows",
    "chain",
    "merkle",
    "checkpoint",
    "fork",
    "head",
    "retention",
    "archive-head",
)


@dataclass
class ChainReport:
    chain_id: str
    segments: int = 0
    records: int = 0
    records_checked: int = 0
    tree_size: int = 0
    root_hash: str = ""
    checkpoints: int = 0
    objects_checked: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """What was verified; ``failures`` is empty when everything held."""

    chains: list[ChainReport] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    steps: tuple[str, ...] = STEPS
    archive_head: HeadSummary | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def records_checked(self) -> int:
        return sum(chain.records_checked for chain in self.chains)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "steps": list(self.steps),
            "chains": [chain.to_json() for chain in self.chains],
            "failures": [failure.__dict__ for failure in self.failures],
            "archive_head": self.archive_head.to_json() if self.archive_head else None,
        }


class ArchiveVerificationError(VerificationError):
    """A verification that failed, with the full report of what was and was not verified."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(failures=list(report.failures))


@dataclass(frozen=True)
class Head:
    """A checkpoint held outside the writer's reach, pinned by the verifier."""

    chain_id: str
    checkpoint: Checkpoint


def chains_in(store: ObjectStore) -> list[str]:
    """Every chain that has a manifest or a checkpoint."""
    found: set[str] = set()
    for prefix in (layout.MANIFEST_PREFIX, layout.CHECKPOINT_PREFIX):
        for key in store.list(prefix):
            chain = layout.chain_of(key)
            if chain:
                found.add(chain)
    return sorted(found)


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
) -> Report:
    """Verify the archive (or ``chains``); ``since``/``until`` (ms) limit the row checks."""
    report = Report()
    held = set(held_keys)
    for chain_id in chains if chains is not None else chains_in(store):
        chain_heads = [head for head in heads if head.chain_id == chain_id]
        verifier = _ChainVerifier(store, trust, chain_id, report, since, until, chain_heads, held)
        verifier.run(executor, on_segment)
        report.chains.append(verifier.chain)
    for head in heads:
        if chains is not None and head.chain_id not in chains:
            continue
        if not any(chain.chain_id == head.chain_id for chain in report.chains):
            report.failures.append(Failure("head", "pinned chain is missing", head.chain_id))
    report.archive_head = check_archive_heads(
        store, trust, report, archive_name=archive_name, chains=chains, pins=archive_heads
    )
    if report.failures:
        raise ArchiveVerificationError(report)
    return report


def count_segments(store: ObjectStore, chains: Sequence[str] | None = None) -> int:
    return sum(len(list_manifests(store, c)) for c in (chains or chains_in(store)))


def parse_head(note: bytes, trust: TrustStore) -> Head:
    """A pinned head: a signed checkpoint whose origin names its chain."""
    checkpoint = open_checkpoint(note, trust)
    marker = "/coexarchive/v1/chain/"
    if marker not in checkpoint.origin:
        raise FormatError(f"head origin {checkpoint.origin!r} is not a coexarchive chain")
    return Head(chain_id=checkpoint.origin.rsplit(marker, 1)[1], checkpoint=checkpoint)


@dataclass(frozen=True)
class _SegmentOutcome:
    failures: list[Failure]
    rows: int
    # Root of the tree at each pinned-head size that falls inside this segment.
    head_roots: dict[int, bytes]


def check_segment(
    data: bytes,
    manifest: Manifest,
    start: ChainState,
    head_sizes: Sequence[int] = (),
) -> _SegmentOutcome:
    """Steps 3-5 for one segment, given the committed state before it (pure; runs in workers).

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
        return _SegmentOutcome(failures, 0, {})
    table = table.sort_by("seq")
    rows = table.num_rows
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
        if {_utc_date(low), _utc_date(high)} != {manifest.date}:
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
    return _SegmentOutcome(failures, rows, head_roots)


def _utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


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


class _ChainVerifier:
    def __init__(
        self,
        store: ObjectStore,
        trust: TrustStore,
        chain_id: str,
        report: Report,
        since: int | None,
        until: int | None,
        heads: Sequence[Head],
        held: set[str],
    ) -> None:
        self.store = store
        self.trust = trust
        self.chain = ChainReport(chain_id=chain_id)
        self.report = report
        self.since = since
        self.until = until
        self.heads = heads
        self.held = held
        self.chain_id = chain_id
        self.head_roots: dict[int, bytes] = {}
        self.boundary_roots: dict[int, bytes] = {}

    def fail(self, step: str, message: str, key: str | None = None, seq: int | None = None) -> None:
        self.report.failures.append(Failure(step, message, self.chain_id, key, seq))

    def run(self, executor: Executor | None, on_segment: Callable[[int], None] | None) -> None:
        manifests = self._manifests()
        states = self._link(manifests)
        self._segments(manifests, states, executor, on_segment)
        self._checkpoints(manifests)
        self._forks(manifests)
        self._head(manifests)
        self._retention(manifests)
        if manifests:
            last = manifests[-1]
            self.chain.tree_size = last.tree_size
            self.chain.root_hash = base64.b64encode(last.root_hash).decode()

    # Step 1: manifests parse and cover seq 0..n-1 with no gap or overlap.
    def _manifests(self) -> list[Manifest]:
        manifests: list[Manifest] = []
        for key in list_manifests(self.store, self.chain_id):
            try:
                manifest = Manifest.from_bytes(self.store.get(key), key=key)
            except (FormatError, ObjectMissingError) as exc:
                self.fail("manifests", str(exc), key)
                continue
            if manifest.chain_id != self.chain_id or manifest.key != key:
                self.fail("manifests", "manifest is stored under another chain or seq", key)
                continue
            manifests.append(manifest)
        if not manifests and any(
            True for _ in self.store.list(layout.checkpoint_prefix(self.chain_id))
        ):
            self.fail("manifests", "chain has checkpoints but no segment manifests")
        expected = 0
        for manifest in manifests:
            if manifest.first_seq > expected:
                self.fail(
                    "manifests",
                    f"segment missing: seq {expected}..{manifest.first_seq - 1} is in no manifest",
                    manifest.key,
                    expected,
                )
            elif manifest.first_seq < expected:
                self.fail(
                    "manifests",
                    "segment overlaps the previous one",
                    manifest.key,
                    manifest.first_seq,
                )
            expected = manifest.last_seq + 1
            named = content_segment_key(
                manifest.chain_id,
                manifest.date,
                manifest.first_seq,
                manifest.last_seq,
                manifest.root_hash,
            )
            if manifest.segment.key != named:
                self.fail(
                    "manifests",
                    "segment key does not name the manifest's date, seq range and root (queries "
                    "read the date from the key)",
                    manifest.key,
                    manifest.first_seq,
                )
        self._customer_generations(manifests)
        self.chain.segments = len(manifests)
        self.chain.records = sum(m.record_count for m in manifests)
        return manifests

    def _customer_generations(self, manifests: Sequence[Manifest]) -> None:
        """Each customer filter starts a generation at its segment or grows the previous one.

        With each segment's customers in its own filter (checked per segment), this makes every
        filter hold every customer from its ``first_seq`` on, which is what queries assume.
        """
        previous: Manifest | None = None
        for manifest in manifests:
            known = manifest.customers
            if known is not None and known.first_seq != manifest.first_seq:
                before = previous.customers if previous is not None else None
                if not (
                    previous is not None
                    and before is not None
                    and previous.last_seq + 1 == manifest.first_seq
                    and before.first_seq == known.first_seq
                    and known.contains_filter(before)
                ):
                    self.fail(
                        "manifests",
                        f"customer filter claims seq {known.first_seq} on, but does not hold "
                        "the previous manifest's filter: a customer's report could skip records",
                        manifest.key,
                        manifest.first_seq,
                    )
            previous = manifest

    def _link(self, manifests: Sequence[Manifest]) -> list[ChainState]:
        """The state before each segment, taken from the previous manifest (checked in step 5)."""
        states = []
        previous = ChainState.empty(self.chain_id)
        for manifest in manifests:
            if manifest.first_seq == 0:
                previous = ChainState.empty(self.chain_id)
            states.append(previous)
            previous = ChainState.after(manifest)
            self.boundary_roots[manifest.tree_size] = manifest.root_hash
        if (
            manifests
            and manifests[0].first_seq == 0
            and manifests[0].prev_chain_hash != genesis(self.chain_id)
        ):
            self.fail(
                "chain",
                "first segment does not start at the chain's genesis value",
                manifests[0].key,
                0,
            )
        return states

    # Steps 2-5, segment by segment (in worker processes when an executor is given).
    def _segments(
        self,
        manifests: Sequence[Manifest],
        states: Sequence[ChainState],
        executor: Executor | None,
        on_segment: Callable[[int], None] | None,
    ) -> None:
        head_sizes = [head.checkpoint.size for head in self.heads]
        # Few segments in flight at once: the parent holds each one's bytes until its worker
        # answers, and memory must stay bounded by segment size, not archive size.
        jobs: deque[tuple[Manifest, Future[_SegmentOutcome]]] = deque()
        for manifest, start in zip(manifests, states, strict=True):
            data = self._fetch_checked(manifest)
            must_check = any(start.size < size <= manifest.tree_size for size in head_sizes)
            if data is None or not (self._in_range(manifest) or must_check):
                if on_segment:
                    on_segment(manifest.record_count)
                continue
            if executor is None:
                self._absorb(check_segment(data, manifest, start, head_sizes), on_segment, manifest)
            else:
                future = executor.submit(check_segment, data, manifest, start, head_sizes)
                jobs.append((manifest, future))
                if len(jobs) >= MAX_SEGMENTS_IN_FLIGHT:
                    done, oldest = jobs.popleft()
                    self._absorb(oldest.result(), on_segment, done)
        for manifest, future in jobs:
            self._absorb(future.result(), on_segment, manifest)

    def _absorb(
        self, outcome: _SegmentOutcome, on_segment: Callable[[int], None] | None, manifest: Manifest
    ) -> None:
        self.report.failures.extend(outcome.failures)
        self.chain.records_checked += outcome.rows
        self.head_roots.update(outcome.head_roots)
        if on_segment:
            on_segment(manifest.record_count)

    def _in_range(self, manifest: Manifest) -> bool:
        if self.since is not None and manifest.max_event_time < self.since:
            return False
        return not (self.until is not None and manifest.min_event_time >= self.until)

    # Step 2: every object a manifest lists exists with its recorded size and SHA-256.
    def _fetch_checked(self, manifest: Manifest) -> bytes | None:
        segment: bytes | None = None
        for ref in (manifest.segment, manifest.record_index):
            try:
                data = self.store.get(ref.key)
            except ObjectMissingError:
                self.fail(
                    "objects",
                    "object listed in the manifest is missing",
                    ref.key,
                    manifest.first_seq,
                )
                continue
            self.chain.objects_checked += 1
            if len(data) != ref.size or sha256_hex(data) != ref.sha256:
                self.fail(
                    "objects",
                    f"object bytes differ from the manifest's SHA-256 (listed by {manifest.key})",
                    ref.key,
                    manifest.first_seq,
                )
                continue
            if ref is manifest.segment:
                segment = data
        return segment

    # Step 6: each segment's checkpoint is trusted and matches its manifest.
    def _checkpoints(self, manifests: Sequence[Manifest]) -> None:
        for manifest in manifests:
            key = manifest.checkpoint_key
            if key != layout.checkpoint_key(self.chain_id, manifest.tree_size):
                self.fail(
                    "checkpoint", "manifest names a checkpoint for another size", manifest.key
                )
                continue
            try:
                note = self.store.get(key)
                checkpoint = open_checkpoint(
                    note, self.trust, origin=checkpoint_origin(manifest.archive, self.chain_id)
                )
            except ObjectMissingError:
                self.fail("checkpoint", "segment has no checkpoint", key, manifest.last_seq)
                continue
            except (SignatureError, FormatError) as exc:
                self.fail(
                    "checkpoint", f"checkpoint does not verify: {exc}", key, manifest.last_seq
                )
                continue
            self.chain.checkpoints += 1
            if checkpoint.size != manifest.tree_size or checkpoint.root_hash != manifest.root_hash:
                self.fail("checkpoint", "signed root differs from the segment's Merkle root", key)
            head_line = f"{CHAIN_HASH_EXTENSION} {base64.b64encode(manifest.chain_hash).decode()}"
            if head_line not in checkpoint.extensions:
                self.fail("checkpoint", "signed chain head differs from the segment's", key)

    # Step 7: no checkpoint disagrees with the tree, and no checkpoint key holds two versions.
    def _forks(self, manifests: Sequence[Manifest]) -> None:
        archive = manifests[0].archive if manifests else None
        for key in self.store.list(layout.checkpoint_prefix(self.chain_id)):
            try:
                size = layout.number_of(key)
            except ValueError:
                self.fail("fork", "unexpected object among the checkpoints", key)
                continue
            versions = self.store.versions(key)
            if len(versions) > 1:
                self.fail("fork", f"checkpoint key holds {len(versions)} versions", key)
            root = self.boundary_roots.get(size)
            if root is None:
                self.fail("fork", f"checkpoint for size {size} matches no sealed segment", key)
                continue
            try:
                origin = checkpoint_origin(archive, self.chain_id) if archive else None
                checkpoint = open_checkpoint(self.store.get(key), self.trust, origin=origin)
            except CoexArchiveError:
                continue  # reported by step 6 when a manifest names it
            if checkpoint.root_hash != root:
                self.fail("fork", f"two different trees signed for size {size}", key)

    # Step 8: the archive still holds everything a pinned head vouched for.
    def _head(self, manifests: Sequence[Manifest]) -> None:
        size = manifests[-1].tree_size if manifests else 0
        for head in self.heads:
            pinned = head.checkpoint
            if pinned.size > size:
                self.fail(
                    "head",
                    f"tail truncated: archive has {size} records, "
                    f"the pinned head vouches for {pinned.size}",
                    seq=size,
                )
                continue
            root = self.boundary_roots.get(pinned.size, self.head_roots.get(pinned.size))
            if root is None:
                self.fail("head", f"could not rebuild the tree at the pinned size {pinned.size}")
            elif root != pinned.root_hash:
                self.fail(
                    "head",
                    f"archive's tree at size {pinned.size} differs from the pinned head (fork)",
                )

    # Step 9: every object carries the Object Lock its manifest requires.
    def _retention(self, manifests: Sequence[Manifest]) -> None:
        for manifest in manifests:
            keys = (
                manifest.segment.key,
                manifest.record_index.key,
                manifest.key,
                manifest.checkpoint_key,
            )
            for key in keys:
                try:
                    info = self.store.info(key)
                except ObjectMissingError:
                    continue  # reported by steps 2 and 6
                required = manifest.retention
                if info.retention is None:
                    self.fail("retention", "object has no Object Lock retention", key)
                elif required.mode == "COMPLIANCE" and info.retention.mode != "COMPLIANCE":
                    self.fail(
                        "retention", f"retention mode is {info.retention.mode}, not COMPLIANCE", key
                    )
                elif info.retention.retain_until < required.retain_until:
                    self.fail(
                        "retention",
                        f"retained only until {info.retention.retain_until:%Y-%m-%d}, "
                        f"needs {required.retain_until:%Y-%m-%d}",
                        key,
                    )
                if key in self.held and not info.legal_hold:
                    self.fail(
                        "retention", "legal hold is registered but not set on the object", key
                    )


def default_executor(workers: int) -> Executor | None:
    return ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
