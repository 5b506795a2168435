"""The archive as DuckDB views, read straight from the object store.

Which files exist is decided by the manifests, never by listing ``archive/``: a crashed run can
leave segment files that no manifest names, and those must not be counted. Each segment becomes
one Parquet fragment whose partition expression comes from its manifest (chain, first and last
event time), so a filter on chain or time skips whole files before any byte of them is read;
row-group statistics then prune inside the files that remain.

On S3 the fragments are read through pyarrow's S3 filesystem (ranged GETs, filters and column
projections pushed down by DuckDB); any other :class:`ObjectStore` is wrapped in a small
read-only pyarrow filesystem so the memory twin behaves the same.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from coexarchive import quarantine
from coexarchive.errors import FormatError
from coexarchive.query.viewdefs import (
    ACCESS_DATASET,
    SEALED_DATASET,
    TABLE_DESCRIPTIONS,
    VIEWS,
    WINDOW_VIEWS,
    describe,
    suggest,
    window_sql,
)
from coexarchive.records import RECORD_SCHEMA
from coexarchive.segments import Manifest
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, sha256_hex

if TYPE_CHECKING:
    from coexarchive.disposition import DisposedSegment
from coexarchive.store.s3 import S3Store

__all__ = [
    "ACCESS_LOG_CHAIN",
    "TABLE_DESCRIPTIONS",
    "VIEWS",
    "ArchiveCatalog",
    "connect",
    "describe",
    "set_window",
    "suggest",
]

ACCESS_LOG_CHAIN = "access-log"
_TS = pa.timestamp("ms", tz="UTC")
# Manifests are small; fetching them in parallel hides S3's per-request latency.
_MANIFEST_FETCHERS = 32
_QUARANTINE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("raw_key", pa.string()),
        ("raw_line", pa.int64()),
        ("location", pa.string()),
        ("reason", pa.string()),
        ("payload_bytes", pa.int64()),
        ("date", pa.string()),
    ]
)


_SEGMENT_KEY = re.compile(
    r"^archive/v1/chain=(?P<chain>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<first>\d{20})-(?P<last>\d{20})-[0-9a-f]{16}\.parquet$"
)
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Segment:
    """A committed segment file and what is known of it without opening it."""

    chain_id: str
    first_seq: int
    last_seq: int
    key: str
    size: int | None
    min_event_time: int
    max_event_time: int

    @classmethod
    def of(cls, manifest: Manifest) -> Segment:
        return cls(
            manifest.chain_id,
            manifest.first_seq,
            manifest.last_seq,
            manifest.segment.key,
            manifest.segment.size,
            manifest.min_event_time,
            manifest.max_event_time,
        )

    @classmethod
    def from_key(cls, key: str, size: int | None) -> Segment | None:
        """From a content-addressed segment key; its date bounds the event times (UTC day)."""
        match = _SEGMENT_KEY.match(key)
        if match is None:
            return None
        day = datetime.strptime(match["date"], "%Y-%m-%d").replace(tzinfo=UTC)
        start = int(day.timestamp()) * 1000
        return cls(
            match["chain"],
            int(match["first"]),
            int(match["last"]),
            key,
            size,
            start,
            start + _DAY_MS - 1,
        )


def _first(segment: Segment) -> int:
    return segment.first_seq


@dataclass(frozen=True)
class Window:
    """An event-time window in ms (either end open); ``until`` is exclusive."""

    since: int | None = None
    until: int | None = None

    def overlaps(self, span: Segment | Manifest) -> bool:
        if self.since is not None and span.max_event_time < self.since:
            return False
        return not (self.until is not None and span.min_event_time >= self.until)

    def contains(self, span: Segment | Manifest) -> bool:
        if self.since is not None and span.min_event_time < self.since:
            return False
        return not (self.until is not None and span.max_event_time >= self.until)


class ArchiveCatalog:
    """The committed segments of an archive, from its manifests (read once per session)."""

    def __init__(self, store: ObjectStore, *, filesystem: pafs.FileSystem | None = None) -> None:
        self.store = store
        self._manifests: dict[str, Manifest] = {}
        self._committed: dict[tuple[str, int], str] = {}  # (chain, first seq) → manifest key
        self._segments: dict[tuple[str, int], Segment] = {}
        self._disposed: Mapping[tuple[str, int], DisposedSegment] | None = None
        # Grows whenever a business chain gains committed segments (``records`` is then stale).
        self.generation = 0
        # Segments of any other store (the in-memory twin) are copied into a native in-memory
        # filesystem as they are first read. A Python filesystem handler would do without the
        # copy, but Arrow calls it from its I/O threads, which must then take the GIL while
        # holding a scan's lock, and DuckDB starts scans holding the GIL: a deadlock.
        self._mirror_of: ObjectStore | None = None
        self._mirrored: set[str] = set()
        if filesystem is not None:
            self.filesystem, self._root = filesystem, ""
        elif isinstance(store, S3Store):
            self.filesystem, self._root = store.filesystem(), f"{store.bucket}/"
        else:
            self.filesystem, self._root = pafs._MockFileSystem(), ""
            self._mirror_of = store

    def refresh(self, chain_id: str | None = None) -> None:
        """Learn the segments committed since the last call (all chains, or one).

        The manifest listing says which (chain, first seq) are committed; one listing of the
        segment files then gives each one's key and size. Only where that is ambiguous (two files
        for one committed seq, none, or ranges that do not tile) are the chain's manifests read.
        """
        prefix = layout.manifest_prefix(chain_id) if chain_id else layout.MANIFEST_PREFIX
        # The access log gains a segment per statement; it is read only when it is queried.
        skip = None if chain_id else layout.manifest_prefix(ACCESS_LOG_CHAIN)
        new: dict[tuple[str, int], str] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The two listings are independent: the segment files are listed meanwhile.
            listing = pool.submit(self._segment_files, chain_id)
            for key in self.store.list(prefix):
                chain = layout.chain_of(key)
                if not key.endswith(".json") or chain is None or (skip and key.startswith(skip)):
                    continue
                committed = (chain, layout.number_of(key))
                if committed not in self._committed:
                    new[committed] = key
            files = listing.result()
        if not new:
            return
        self._committed.update(new)
        if any(chain != ACCESS_LOG_CHAIN for chain, _ in new):
            self.generation += 1
        for chain in sorted({c for c, _ in new}):
            self._resolve(chain, [first for c, first in new if c == chain], files)

    def _segment_files(self, chain_id: str | None) -> dict[tuple[str, int], list[Segment]]:
        prefix = layout.ARCHIVE_PREFIX + (f"chain={chain_id}/" if chain_id else "")
        found: dict[tuple[str, int], list[Segment]] = {}
        for key, size in self._list_sizes(prefix):
            segment = Segment.from_key(key, size)
            if segment is not None:
                found.setdefault((segment.chain_id, segment.first_seq), []).append(segment)
        return found

    def _list_sizes(self, prefix: str) -> Iterator[tuple[str, int | None]]:
        if self._root:
            selector = pafs.FileSelector(self._root + prefix, recursive=True, allow_not_found=True)
            for info in self.filesystem.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    yield info.path[len(self._root) :], info.size
        else:
            for key in self.store.list(prefix):
                yield key, None

    def _resolve(
        self, chain: str, firsts: list[int], files: Mapping[tuple[str, int], list[Segment]]
    ) -> None:
        resolved = [files.get((chain, first), []) for first in sorted(firsts)]
        if all(len(candidates) == 1 for candidates in resolved):
            for (segment,) in resolved:
                self._segments[(chain, segment.first_seq)] = segment
            if self._tiles(chain):
                return
        # Ambiguous: the manifests decide, leaving out segments a disposition deleted.
        for manifest in self.manifests(chain):
            if not files.get((chain, manifest.first_seq)) and self.is_disposed(manifest):
                self._segments.pop((chain, manifest.first_seq), None)
                continue
            self._segments[(chain, manifest.first_seq)] = Segment.of(manifest)

    def is_disposed(self, manifest: Manifest) -> bool:
        """Whether a disposition deleted this segment's content (so no query reads it)."""
        entry = self._dispositions().get((manifest.chain_id, manifest.first_seq))
        return (
            entry is not None
            and entry.segment == manifest.segment
            and not self.store.exists(manifest.segment.key)
        )

    def leaf_table(self, manifests: Sequence[Manifest]) -> pa.Table:
        """``seq`` and ``leaf_hash`` of every record of ``manifests``, disposed ones included
        (from their kept leaf hashes), in no particular order."""
        table = self.dataset(manifests).to_table(columns=["seq", "leaf_hash"])
        kept = [
            (manifest.first_seq + i, leaf)
            for manifest in manifests
            if self.is_disposed(manifest)
            for i, leaf in enumerate(self.kept_leaves(manifest))
        ]
        if not kept:
            return table
        extra = pa.table(
            {
                "seq": [seq for seq, _ in kept],
                "leaf_hash": pa.array([leaf for _, leaf in kept], pa.binary(32)),
            },
            schema=table.schema,
        )
        return pa.concat_tables([table, extra])

    def kept_leaves(self, manifest: Manifest) -> list[bytes]:
        """A disposed segment's leaf hashes, checked against the SHA-256 its disposition sealed."""
        from coexarchive.disposition import read_leaves

        entry = self._dispositions()[(manifest.chain_id, manifest.first_seq)]
        data = self.store.get(entry.leaves.key)
        if sha256_hex(data) != entry.leaves.sha256:
            raise FormatError(f"{entry.leaves.key}: differs from the disposition's SHA-256")
        return read_leaves(data, count=manifest.record_count, key=entry.leaves.key)

    def _dispositions(self) -> Mapping[tuple[str, int], DisposedSegment]:
        if self._disposed is None:
            from coexarchive.disposition import read_dispositions  # it reads this catalog's kin

            # Hints only (queries decide what not to read); verify checks the signatures.
            self._disposed = read_dispositions(self.store, None)
        return self._disposed

    def _tiles(self, chain: str) -> bool:
        mine = sorted((s for s in self._segments.values() if s.chain_id == chain), key=_first)
        return all(a.last_seq + 1 == b.first_seq for a, b in itertools.pairwise(mine))

    def _get(self, key: str) -> bytes:
        if self._root:
            # pyarrow's S3 client is not bound by boto3's pool of ten connections.
            with self.filesystem.open_input_stream(self._root + key) as stream:
                return bytes(stream.readall())
        return self.store.get(key)

    def chains(self) -> list[str]:
        return sorted({chain for chain, _ in self._committed})

    def manifests(self, chain_id: str) -> list[Manifest]:
        """The chain's committed manifests in ``seq`` order (read once, then cached)."""
        keys = sorted(k for (c, _), k in self._committed.items() if c == chain_id)
        return sorted(self._read_manifests(keys).values(), key=lambda m: m.first_seq)

    def _read_manifests(self, keys: Sequence[str]) -> dict[str, Manifest]:
        missing = [k for k in keys if k not in self._manifests]
        if missing:
            with ThreadPoolExecutor(max_workers=min(_MANIFEST_FETCHERS, len(missing))) as pool:
                blobs = list(pool.map(self._get, missing))
            for key, blob in zip(missing, blobs, strict=True):
                self._manifests[key] = Manifest.from_bytes(blob, key=key)
        return {key: self._manifests[key] for key in keys}

    def customer_segments(self, customer: str, segments: Sequence[Segment]) -> list[Segment]:
        """Those of ``segments`` that may hold records of ``customer``.

        Each chain's newest manifest carries a Bloom filter of the customers of its generation
        (``coexarchive.customer_filter``); the manifest just before a generation's first seq
        answers for the generation before. That is one manifest per generation per chain, read
        in parallel, instead of one Parquet footer per segment. A segment is dropped only when a
        filter covering all of it rules the customer out; without filters nothing is dropped.
        """
        chains = sorted({segment.chain_id for segment in segments})
        firsts = {c: sorted(f for chain, f in self._committed if chain == c) for c in chains}
        # chain → (first seq of the manifest to read, the last seq it must end at)
        pending: dict[str, tuple[int, int | None]] = {
            c: (firsts[c][-1], None) for c in chains if firsts[c]
        }
        excluded: dict[str, list[tuple[int, int]]] = {}
        while pending:
            keys = {chain: self._committed[(chain, first)] for chain, (first, _) in pending.items()}
            manifests = self._read_manifests(list(keys.values()))
            following: dict[str, tuple[int, int | None]] = {}
            for chain, key in keys.items():
                manifest, end = manifests[key], pending[chain][1]
                known = manifest.customers
                if end is not None and manifest.last_seq != end:
                    continue  # the generations do not tile here: rule nothing further out
                if known is None or known.first_seq > manifest.first_seq:
                    continue  # no filter here: nothing at or below this manifest is ruled out
                if not known.might_contain(customer):
                    excluded.setdefault(chain, []).append((known.first_seq, manifest.last_seq))
                earlier = bisect.bisect_right(firsts[chain], known.first_seq - 1) - 1
                if known.first_seq > 0 and earlier >= 0:
                    following[chain] = (firsts[chain][earlier], known.first_seq - 1)
            pending = following
        return [
            segment
            for segment in segments
            if not any(
                low <= segment.first_seq and segment.last_seq <= high
                for low, high in excluded.get(segment.chain_id, ())
            )
        ]

    def segments(
        self, *, chains: Iterable[str] | None = None, window: Window | None = None
    ) -> list[Segment]:
        wanted = set(chains) if chains is not None else None
        return [
            s
            for _, s in sorted(self._segments.items())
            if (wanted is None or s.chain_id in wanted) and (window is None or window.overlaps(s))
        ]

    def dataset(
        self, segments: Sequence[Segment | Manifest], *, whole_row_groups: bool = False
    ) -> ds.Dataset:
        """A Parquet dataset of exactly these segments, each tagged with its known facts.

        ``whole_row_groups`` fetches each row group read in one request, unwanted columns and
        all: fewer requests when a few row groups of a few files are read (one customer), more
        bytes when many are (a full scan of a few columns), so it is off by default.
        """
        parquet = ds.ParquetFileFormat(
            default_fragment_scan_options=_WHOLE_ROW_GROUPS if whole_row_groups else None
        )
        fragments = []
        for item in segments:
            segment = Segment.of(item) if isinstance(item, Manifest) else item
            if isinstance(item, Manifest) and self.is_disposed(item):
                continue  # its content was deleted under a signed disposition: no rows to read
            self._mirror(segment.key)
            fragments.append(
                parquet.make_fragment(
                    self._root + segment.key,
                    self.filesystem,
                    _partition_expression(segment),
                    # A known size saves a HEAD request per file.
                    file_size=segment.size,
                )
            )
        return ds.FileSystemDataset(fragments, RECORD_SCHEMA, parquet, self.filesystem)

    def _mirror(self, key: str) -> None:
        """Copy an object of the in-memory twin into the native filesystem scans read."""
        if self._mirror_of is None or key in self._mirrored:
            return
        self.filesystem.create_dir(key.rpartition("/")[0], recursive=True)
        with self.filesystem.open_output_stream(key) as sink:
            sink.write(self._mirror_of.get(key))
        self._mirrored.add(key)

    def read_rows(
        self, manifest: Manifest, seqs: Iterable[int], columns: Sequence[str] | None = None
    ) -> pa.Table:
        """Rows of one segment by ``seq`` (only the row groups that hold them are fetched)."""
        wanted = sorted(set(seqs))
        dataset = self.dataset([manifest])
        filter_ = ds.field("seq").isin(pa.array(wanted, pa.int64()))
        return dataset.to_table(columns=list(columns) if columns else None, filter=filter_)

    def quarantine_table(self) -> pa.Table:
        rows: dict[str, list[Any]] = {name: [] for name in _QUARANTINE_SCHEMA.names}
        for entry in quarantine.entries(self.store):
            item = entry.item
            rows["key"].append(entry.key)
            rows["raw_key"].append(item.raw_key)
            rows["raw_line"].append(item.raw_line)
            rows["location"].append(item.location)
            rows["reason"].append(item.reason)
            rows["payload_bytes"].append(len(item.payload))
            rows["date"].append(_date_of(item.raw_key))
        return pa.table(rows, schema=_QUARANTINE_SCHEMA)


_WHOLE_ROW_GROUPS = ds.ParquetFragmentScanOptions(
    pre_buffer=True,
    cache_options=pa.CacheOptions(hole_size_limit=4 << 20, range_size_limit=64 << 20),
)


def _partition_expression(manifest: Segment) -> ds.Expression:
    low = pa.scalar(manifest.min_event_time, _TS)
    high = pa.scalar(manifest.max_event_time, _TS)
    return (
        (ds.field("chain_id") == manifest.chain_id)
        & (ds.field("event_time") >= low)
        & (ds.field("event_time") <= high)
        & (ds.field("seq") >= manifest.first_seq)
        & (ds.field("seq") <= manifest.last_seq)
    )


def _date_of(raw_key: str) -> str | None:
    return next((p[5:] for p in raw_key.split("/") if p.startswith("date=")), None)


def connect(
    catalog: ArchiveCatalog,
    *,
    chains: Sequence[str] | None = None,
    window: Window | None = None,
    threads: int | None = None,
    records: bool = True,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every view registered (UTC, read-only over the archive).

    The connection is sealed off from the machine: no local file can be read or written, the
    temporary directory included, no extension installed or loaded, and no setting changed.

    With ``records``, the views hold only records with event time in ``window``.
    ``records=False`` leaves the sealed records empty for the caller to register with
    :func:`register_records` (the session does, per statement, for the segments that statement
    needs). The views themselves are :mod:`coexarchive.query.viewdefs`.

    The access log and ``quarantine`` start empty: reading them costs listings (and, for
    quarantine, every entry), so :func:`register_access_log` and :func:`register_quarantine`
    fill them in before a statement that names them (the session does).
    """
    config: dict[str, str | bool | int | float | list[str]] = {
        # Memory only: with no temporary directory DuckDB cannot spill, so a statement too big
        # for memory fails instead of writing its intermediate rows to disk.
        "temp_directory": "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "allow_persistent_secrets": False,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = int(threads)
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    # No statement reads or writes a local file (COPY, read_csv, ATTACH, EXPORT, glob, INSTALL):
    # the archive reaches DuckDB only as registered Arrow datasets. Locked, so no SET undoes it.
    con.execute("SET disabled_filesystems = 'LocalFileSystem'")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    if records:
        register_records(con, catalog, business_segments(catalog, chains=chains, window=window))
    else:
        con.register(SEALED_DATASET, RECORD_SCHEMA.empty_table())
    con.register(ACCESS_DATASET, RECORD_SCHEMA.empty_table())
    con.register("quarantine", _QUARANTINE_SCHEMA.empty_table())
    set_window(con, window if records else None)
    for name, (_, sql) in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    return con


def set_window(con: duckdb.DuckDBPyConnection, window: Window | None) -> None:
    """Restrict every view of ``con`` to records with event time in ``window`` (None: all).

    The views read the sealed records only through ``sealed_records`` and ``access_records``,
    which are re-created here with the window's bounds (integers) in their WHERE clause; DuckDB
    pushes them down to the Parquet scan like any other filter.
    """
    where = window_sql(window)
    for name, sql in WINDOW_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql.replace('{where}', where)}")


def business_segments(
    catalog: ArchiveCatalog,
    *,
    chains: Sequence[str] | None = None,
    window: Window | None = None,
) -> list[Segment]:
    """The committed segments of the business chains (every chain but the access log)."""
    business = [c for c in (chains or catalog.chains()) if c != ACCESS_LOG_CHAIN]
    return catalog.segments(chains=business, window=window)


def register_records(
    con: duckdb.DuckDBPyConnection,
    catalog: ArchiveCatalog,
    segments: Sequence[Segment],
    *,
    whole_row_groups: bool = False,
) -> None:
    """(Re-)register the sealed records every business view reads, over these segments."""
    con.register(SEALED_DATASET, _dataset_or_empty(catalog, segments, whole_row_groups))


def register_quarantine(con: duckdb.DuckDBPyConnection, catalog: ArchiveCatalog) -> None:
    """(Re-)register the quarantine table from the store's quarantine entries."""
    con.register("quarantine", catalog.quarantine_table())


def register_access_log(con: duckdb.DuckDBPyConnection, catalog: ArchiveCatalog) -> None:
    """(Re-)register the access-log chain, re-reading its manifests: it grows every query."""
    catalog.refresh(ACCESS_LOG_CHAIN)
    segments = catalog.segments(chains=[ACCESS_LOG_CHAIN])
    con.register(ACCESS_DATASET, _dataset_or_empty(catalog, segments))


def _dataset_or_empty(
    catalog: ArchiveCatalog,
    manifests: Sequence[Segment | Manifest],
    whole_row_groups: bool = False,
) -> Any:
    if manifests:
        return catalog.dataset(manifests, whole_row_groups=whole_row_groups)
    return RECORD_SCHEMA.empty_table()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def utc_ms(moment: datetime) -> int:
    """The first whole millisecond at or after ``moment``, as a window bound.

    Event times are whole milliseconds, so for a time ``t`` both ``t >= moment`` and
    ``t < moment`` hold exactly when they hold against this bound, fractions of a millisecond
    in ``--since``/``--until`` included. Integer arithmetic: no float rounding.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return -((_EPOCH - moment) // _MS)
