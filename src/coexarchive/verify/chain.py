"""Steps 1-2 and 6-10 for one chain; steps 3-5 run per segment (``segment.py``)."""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from coexarchive.disposition import DisposedSegment, read_leaves
from coexarchive.errors import (
    CoexArchiveError,
    Failure,
    FormatError,
    ObjectMissingError,
    SignatureError,
)
from coexarchive.seal.chain import genesis
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import (
    CHAIN_HASH_EXTENSION,
    ChainState,
    Manifest,
    content_segment_key,
    list_manifests,
)
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, sha256_hex
from coexarchive.verify.media import MediaRow
from coexarchive.verify.report import ChainReport, Head, Report
from coexarchive.verify.segment import SegmentOutcome, check_leaves, check_segment
from coexarchive.verify.tail import check_tail

MAX_SEGMENTS_IN_FLIGHT = 4


@dataclass(frozen=True)
class SegmentCheck:
    """Steps 2-5 for one manifest, done apart from its chain (a worker of the verify job).

    ``manifest_sha256`` names the manifest bytes the check started from: the chain's own pass
    accepts the check only for the manifest it reads itself.
    """

    manifest_key: str
    manifest_sha256: str
    failures: tuple[Failure, ...]  # step 2's, then steps 3-5's, in the order the local run has
    objects_checked: int
    rows: int
    head_roots: Mapping[int, bytes]
    disposed: int = 0  # records whose content a signed disposition deleted (leaves checked)
    media: tuple[MediaRow, ...] = ()  # the segment's ``media`` records, for step 12


class ChainVerifier:
    def __init__(
        self,
        store: ObjectStore,
        trust: TrustStore,
        chain_id: str,
        report: Report,
        since: int | None,
        until: int | None,
        heads: Sequence[Head],
        held: AbstractSet[str],
        *,
        archive_name: str | None = None,
        disposed: Mapping[tuple[str, int], DisposedSegment] | None = None,
    ) -> None:
        self.archive_name = archive_name
        # Segments a signed disposition names (read and verified by ``verify_archive``).
        self.disposed = disposed or {}
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
        self.digests: dict[str, str] = {}  # manifest key → SHA-256 of its bytes
        self.signed_sizes: set[int] = set()  # sizes whose checkpoint verified and matched
        self.media: list[MediaRow] = []  # the verified segments' media records, for step 12
        self.manifests: list[Manifest] = []

    def fail(self, step: str, message: str, key: str | None = None, seq: int | None = None) -> None:
        self.report.failures.append(Failure(step, message, self.chain_id, key, seq))

    def warn(self, message: str, key: str) -> None:
        self.chain.warnings.append(f"{message} ({key})")

    def run(
        self,
        executor: Executor | None,
        on_segment: Callable[[int], None] | None,
        *,
        checked: Mapping[str, SegmentCheck] | None = None,
    ) -> None:
        """Every step for this chain; with ``checked``, steps 2-5 as workers did them, by key."""
        manifests = self._manifests()
        self.manifests = manifests
        states = self._link(manifests)
        if checked is None:
            self._segments(manifests, states, executor, on_segment)
        else:
            self._segments_checked(manifests, checked)
        self._checkpoints(manifests)
        self._forks(manifests)
        self._head(manifests)
        self._retention(manifests)
        # Step 10: nothing past the last signed checkpoint, and nothing unsigned beside it.
        signed = max(self.signed_sizes, default=0)
        check_tail(
            self.store,
            self.trust,
            self.chain_id,
            manifests,
            self.digests,
            signed,
            fail=self.fail,
            warn=self.warn,
        )
        if not self.signed_sizes:
            self.fail("checkpoint", "no checkpoint of this chain verifies: nothing was verified")
        for manifest in manifests:
            if manifest.tree_size == signed:
                self.chain.tree_size = signed
                self.chain.root_hash = base64.b64encode(manifest.root_hash).decode()

    # Step 1: manifests parse and cover seq 0..n-1 with no gap or overlap.
    def _manifests(self) -> list[Manifest]:
        manifests: list[Manifest] = []
        for key in list_manifests(self.store, self.chain_id):
            try:
                data = self.store.get(key)
                manifest = Manifest.from_bytes(data, key=key)
            except (FormatError, ObjectMissingError) as exc:
                self.fail("manifests", str(exc), key)
                continue
            self.digests[key] = sha256_hex(data)
            if manifest.chain_id != self.chain_id or manifest.key != key:
                self.fail("manifests", "manifest is stored under another chain or seq", key)
                continue
            if self.archive_name is not None and manifest.archive != self.archive_name:
                # A checkpoint's origin names the archive, so a chain copied in from another
                # archive signed by the same key would otherwise verify here.
                self.fail(
                    "manifests",
                    f"manifest belongs to archive {manifest.archive!r}, not "
                    f"{self.archive_name!r} (COEXARCHIVE_NAME)",
                    key,
                )
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
        jobs: deque[tuple[Manifest, Future[SegmentOutcome]]] = deque()
        for manifest, start in zip(manifests, states, strict=True):
            entry = self._disposed_entry(manifest)
            if entry is not None:
                self._check_disposed(entry, manifest, start, head_sizes)
                if on_segment:
                    on_segment(manifest.record_count)
                continue
            data, index = self._fetch_checked(manifest)
            must_check = any(start.size < size <= manifest.tree_size for size in head_sizes)
            if data is None or not (self._in_range(manifest) or must_check):
                if on_segment:
                    on_segment(manifest.record_count)
                continue
            if executor is None:
                outcome = check_segment(data, manifest, start, head_sizes, index)
                self._absorb(outcome, on_segment, manifest)
            else:
                future = executor.submit(check_segment, data, manifest, start, head_sizes, index)
                jobs.append((manifest, future))
                if len(jobs) >= MAX_SEGMENTS_IN_FLIGHT:
                    done, oldest = jobs.popleft()
                    self._absorb(oldest.result(), on_segment, done)
        for manifest, future in jobs:
            self._absorb(future.result(), on_segment, manifest)

    def check_one(self, manifest: Manifest, start: ChainState) -> SegmentCheck:
        """Steps 2-5 for one manifest (of :meth:`plan`), exactly as :meth:`_segments` does them."""
        failures_before = len(self.report.failures)
        objects_before = self.chain.objects_checked
        head_sizes = [head.checkpoint.size for head in self.heads]
        entry = self._disposed_entry(manifest)
        if entry is not None:
            roots_before = set(self.head_roots)
            disposed_before = self.chain.records_disposed
            self._check_disposed(entry, manifest, start, head_sizes)
            return SegmentCheck(
                manifest_key=manifest.key,
                manifest_sha256=self.digests[manifest.key],
                failures=tuple(self.report.failures[failures_before:]),
                objects_checked=self.chain.objects_checked - objects_before,
                rows=0,
                head_roots={
                    size: root for size, root in self.head_roots.items() if size not in roots_before
                },
                disposed=self.chain.records_disposed - disposed_before,
            )
        data, index = self._fetch_checked(manifest)
        must_check = any(start.size < size <= manifest.tree_size for size in head_sizes)
        outcome = None
        if data is not None and (self._in_range(manifest) or must_check):
            outcome = check_segment(data, manifest, start, head_sizes, index)
        failures = self.report.failures[failures_before:]
        return SegmentCheck(
            manifest_key=manifest.key,
            manifest_sha256=self.digests[manifest.key],
            failures=tuple(failures + (outcome.failures if outcome else [])),
            objects_checked=self.chain.objects_checked - objects_before,
            rows=outcome.rows if outcome else 0,
            head_roots=dict(outcome.head_roots) if outcome else {},
            media=tuple(outcome.media) if outcome else (),
        )

    def plan(self) -> list[tuple[Manifest, ChainState]]:
        """Step 1's manifests, each with the state before it: what :meth:`check_one` takes."""
        manifests = self._manifests()
        return list(zip(manifests, self._link(manifests), strict=True))

    def _segments_checked(
        self, manifests: Sequence[Manifest], checked: Mapping[str, SegmentCheck]
    ) -> None:
        for manifest in manifests:
            found = checked.get(manifest.key)
            if found is None or found.manifest_sha256 != self.digests[manifest.key]:
                # Written or rewritten after the workers read the chain: unchecked, so no pass.
                self.fail(
                    "objects",
                    "segment was not checked: its manifest appeared or changed while the "
                    "verification ran (verify again)",
                    manifest.key,
                    manifest.first_seq,
                )
                continue
            self.report.failures.extend(found.failures)
            self.chain.objects_checked += found.objects_checked
            self.chain.records_checked += found.rows
            self.chain.records_disposed += found.disposed
            self.head_roots.update(found.head_roots)
            self.media.extend(found.media)

    def _disposed_entry(self, manifest: Manifest) -> DisposedSegment | None:
        """The signed disposition naming this segment, when its content is gone."""
        entry = self.disposed.get((self.chain_id, manifest.first_seq))
        if entry is None or self.store.exists(manifest.segment.key):
            return None
        return entry

    def _check_disposed(
        self,
        entry: DisposedSegment,
        manifest: Manifest,
        start: ChainState,
        head_sizes: Sequence[int],
    ) -> None:
        """Steps 2, 4 and 5 for a segment whose content a signed disposition deleted."""
        if not entry.names(manifest, self.digests.get(manifest.key, "")):
            self.fail(
                "objects",
                "segment content is missing, and the disposition naming seq "
                f"{entry.first_seq}..{entry.last_seq} is about other bytes (manifest replaced?)",
                manifest.segment.key,
                manifest.first_seq,
            )
            return
        try:
            data = self.store.get(entry.leaves.key)
        except ObjectMissingError:
            self.fail(
                "objects",
                "leaf hashes of a disposed segment are missing: the records after it no longer "
                "prove into the checkpoints",
                entry.leaves.key,
                manifest.first_seq,
            )
            return
        self.chain.objects_checked += 1
        if len(data) != entry.leaves.size or sha256_hex(data) != entry.leaves.sha256:
            self.fail(
                "objects",
                "kept leaf hashes differ from the SHA-256 the disposition sealed",
                entry.leaves.key,
                manifest.first_seq,
            )
            return
        try:
            leaves = read_leaves(data, count=manifest.record_count, key=entry.leaves.key)
        except FormatError as exc:
            self.fail("objects", str(exc), entry.leaves.key, manifest.first_seq)
            return
        if self.store.info(entry.leaves.key).retention is None:
            self.fail(
                "retention", "kept leaf hashes have no Object Lock retention", entry.leaves.key
            )
        outcome = check_leaves(leaves, manifest, start, head_sizes)
        self.report.failures.extend(outcome.failures)
        self.head_roots.update(outcome.head_roots)
        self.chain.records_disposed += manifest.record_count

    def _absorb(
        self, outcome: SegmentOutcome, on_segment: Callable[[int], None] | None, manifest: Manifest
    ) -> None:
        self.report.failures.extend(outcome.failures)
        self.chain.records_checked += outcome.rows
        self.head_roots.update(outcome.head_roots)
        self.media.extend(outcome.media)
        if on_segment:
            on_segment(manifest.record_count)

    def _in_range(self, manifest: Manifest) -> bool:
        if self.since is not None and manifest.max_event_time < self.since:
            return False
        return not (self.until is not None and manifest.min_event_time >= self.until)

    # Step 2: every object a manifest lists exists with its recorded size and SHA-256.
    def _fetch_checked(self, manifest: Manifest) -> tuple[bytes | None, bytes | None]:
        segment: bytes | None = None
        index: bytes | None = None
        for ref in (manifest.segment, manifest.record_index):
            try:
                data = self.store.get(ref.key)
            except ObjectMissingError:
                self.fail(
                    "objects",
                    "object listed in the manifest is missing, and no signed disposition names "
                    "it (deleted without a disposition?)",
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
            else:
                index = data
        return segment, index

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
            matches = True
            if checkpoint.size != manifest.tree_size or checkpoint.root_hash != manifest.root_hash:
                self.fail("checkpoint", "signed root differs from the segment's Merkle root", key)
                matches = False
            head_line = f"{CHAIN_HASH_EXTENSION} {base64.b64encode(manifest.chain_hash).decode()}"
            if head_line not in checkpoint.extensions:
                self.fail("checkpoint", "signed chain head differs from the segment's", key)
                matches = False
            if matches:
                self.signed_sizes.add(manifest.tree_size)

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
