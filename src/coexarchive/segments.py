"""Sealed segments: records → Parquet segment + dedup index + manifest + signed checkpoint.

Write order per segment (each object create-only, each under Object Lock):

1. the Parquet segment,
2. its record-id index (used for de-duplication),
3. the signed intent naming the SHA-256 of the manifest about to be written (``intents``),
4. the manifest that names both with their SHA-256, the chain head and the Merkle frontier,
5. the signed checkpoint — the commit point.

The invariant (``schemas/SEALING.md``): the signer signs only a tree whose every new leaf it
derived itself, in this run, from authenticated raw evidence, or that a signed note of a trusted
key already covers (a checkpoint, or its own intent for exactly those manifest bytes). So a
resuming writer trusts the chain head only through a checkpoint that verifies, and commits a
crashed run's manifest only if a trusted intent names its bytes; anything else past the last
checkpoint is an *unsigned tail*, possibly forged by someone with write access to the bucket,
and the writer stops on that chain (``coexarchive.resume``).

A crash before 4 leaves unreferenced objects that nothing reads. Two writers racing on one chain
both try to create the same manifest key; the store lets one win and the other fails.
"""

from __future__ import annotations

import base64
import bisect
import calendar
import hashlib
import io
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from coexarchive.customer_filter import CustomerFilter
from coexarchive.errors import (
    ConfigError,
    FormatError,
    ObjectExistsError,
    SealError,
)
from coexarchive.findings import Finding, findings_from_json, findings_json, findings_of
from coexarchive.intents import Intent, intent_key
from coexarchive.records import (
    RECORD_FIELDS,
    RECORD_SCHEMA,
    RECORD_VERSION,
    Record,
    SealedRecord,
)
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.chain import genesis, seal_records
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, sign_note
from coexarchive.seal.keys import Signer, TrustStore, Verifier
from coexarchive.seal.merkle import Frontier
from coexarchive.seal.personal import PersonalSealer
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, Retention, sha256_hex

MANIFEST_FORMAT = "coexarchive.manifest/v1"
INDEX_FORMAT = "coexarchive.record-index/v1"
CHAIN_HASH_EXTENSION = "chain-hash"
DEFAULT_SEGMENT_RECORDS = 100_000
# The archive's own bookkeeping chains: they name customers (whom a hold or an erasure concerns)
# but hold no conversation, and they must stay readable after an erasure. Never sealed encrypted.
OVERSIGHT_CHAINS = frozenset({"holds", "access-log", "policies", "reviews", "erasures"})
# Small row groups let DuckDB and pyarrow skip most of a file when auditors filter on a customer.
ROW_GROUP_SIZE = 8_192


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class ObjectRef:
    """An object a manifest vouches for."""

    key: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ObjectRef:
        return cls(key=str(value["key"]), sha256=str(value["sha256"]), size=int(value["size"]))


@dataclass(frozen=True)
class Manifest:
    """What one sealed segment holds and where it leaves its chain (``schemas/SEALING.md``)."""

    archive: str
    chain_id: str
    first_seq: int
    last_seq: int
    date: str
    min_event_time: int
    max_event_time: int
    segment: ObjectRef
    record_index: ObjectRef
    prev_chain_hash: bytes
    chain_hash: bytes
    root_hash: bytes
    frontier: tuple[bytes, ...]
    checkpoint_key: str
    retention: Retention
    kinds: Mapping[str, int] = field(default_factory=dict)
    # Which customers seq customers.first_seq..last_seq of the chain may hold (absent in
    # manifests written before filters existed).
    customers: CustomerFilter | None = None
    # The segment's compliance findings (None in manifests written before they were recorded).
    findings: Mapping[str, Finding] | None = None

    @property
    def tree_size(self) -> int:
        return self.last_seq + 1

    @property
    def record_count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def key(self) -> str:
        return layout.manifest_key(self.chain_id, self.first_seq)

    @property
    def intent_key(self) -> str:
        """Where the writer's signed intent for exactly these manifest bytes lives."""
        return intent_key(self.chain_id, self.first_seq, sha256_hex(self.to_bytes()))

    def to_bytes(self) -> bytes:
        document = {
            "format": MANIFEST_FORMAT,
            "archive": self.archive,
            "chain_id": self.chain_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "record_count": self.record_count,
            "tree_size": self.tree_size,
            "date": self.date,
            "min_event_time": self.min_event_time,
            "max_event_time": self.max_event_time,
            "segment": self.segment.to_json(),
            "record_index": self.record_index.to_json(),
            "prev_chain_hash": b64(self.prev_chain_hash),
            "chain_hash": b64(self.chain_hash),
            "root_hash": b64(self.root_hash),
            "frontier": [b64(node) for node in self.frontier],
            "checkpoint_key": self.checkpoint_key,
            "retention": {
                "mode": self.retention.mode,
                "retain_until": self.retention.retain_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "kinds": dict(sorted(self.kinds.items())),
        }
        if self.customers is not None:
            document["customers"] = self.customers.to_json()
        if self.findings is not None:
            document["findings"] = findings_json(self.findings)
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, key: str = "manifest") -> Manifest:
        try:
            doc = orjson.loads(data)
            if doc.get("format") != MANIFEST_FORMAT:
                raise FormatError(f"{key}: unknown manifest format {doc.get('format')!r}")
            retention = doc["retention"]
            until = datetime.strptime(retention["retain_until"], "%Y-%m-%dT%H:%M:%SZ")
            manifest = cls(
                archive=str(doc["archive"]),
                chain_id=str(doc["chain_id"]),
                first_seq=int(doc["first_seq"]),
                last_seq=int(doc["last_seq"]),
                date=str(doc["date"]),
                min_event_time=int(doc["min_event_time"]),
                max_event_time=int(doc["max_event_time"]),
                segment=ObjectRef.from_json(doc["segment"]),
                record_index=ObjectRef.from_json(doc["record_index"]),
                prev_chain_hash=unb64(doc["prev_chain_hash"], what=f"{key}: prev_chain_hash"),
                chain_hash=unb64(doc["chain_hash"], what=f"{key}: chain_hash"),
                root_hash=unb64(doc["root_hash"], what=f"{key}: root_hash"),
                frontier=tuple(unb64(n, what=f"{key}: frontier") for n in doc["frontier"]),
                checkpoint_key=str(doc["checkpoint_key"]),
                retention=Retention(mode=retention["mode"], retain_until=until.replace(tzinfo=UTC)),
                kinds={str(k): int(v) for k, v in doc.get("kinds", {}).items()},
                customers=CustomerFilter.from_json(doc["customers"], what=f"{key}: customers")
                if "customers" in doc
                else None,
                findings=findings_from_json(doc["findings"], what=f"{key}: findings")
                if "findings" in doc
                else None,
            )
        except FormatError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"{key}: not a valid segment manifest ({exc})") from exc
        if manifest.last_seq < manifest.first_seq or manifest.first_seq < 0:
            raise FormatError(
                f"{key}: seq range {manifest.first_seq}..{manifest.last_seq} is empty"
            )
        hashes = (
            manifest.prev_chain_hash,
            manifest.chain_hash,
            manifest.root_hash,
            *manifest.frontier,
        )
        if any(len(value) != 32 for value in hashes):
            raise FormatError(f"{key}: a hash is not 32 bytes")
        if len(manifest.frontier) != manifest.tree_size.bit_count():
            raise FormatError(f"{key}: frontier does not fit a tree of {manifest.tree_size} leaves")
        return manifest


@dataclass(frozen=True)
class ChainState:
    """Where a chain stands after its last committed segment."""

    chain_id: str
    size: int
    chain_hash: bytes
    frontier: Frontier
    last_manifest: Manifest | None = None

    @classmethod
    def empty(cls, chain_id: str) -> ChainState:
        return cls(chain_id=chain_id, size=0, chain_hash=genesis(chain_id), frontier=Frontier())

    @classmethod
    def after(cls, manifest: Manifest) -> ChainState:
        return cls(
            chain_id=manifest.chain_id,
            size=manifest.tree_size,
            chain_hash=manifest.chain_hash,
            frontier=Frontier(manifest.tree_size, manifest.frontier),
            last_manifest=manifest,
        )


@dataclass(frozen=True)
class PreparedSegment:
    """One segment's objects, made and signed, not yet written (``ChainWriter.prepare_segment``)."""

    held: bool  # a legal hold covers its records: hold each object before its checkpoint
    segment: bytes
    index: bytes
    manifest: Manifest  # names the segment and index keys, with their SHA-256
    manifest_bytes: bytes
    intent_key: str
    intent: bytes  # the signed note naming the manifest's bytes


@dataclass(frozen=True)
class SegmentResult:
    manifest: Manifest
    created: bool  # False when a re-run found the same segment already committed


@dataclass(frozen=True)
class SegmentPlan:
    """One segment as :meth:`ChainWriter.plan` decided it: its place, and what its manifest says
    about the plain records. Small and picklable: it travels to the job's commit step."""

    date: str
    first_seq: int
    last_seq: int
    record_version: int
    min_event_time: int
    max_event_time: int
    retention: Retention
    kinds: Mapping[str, int]
    customers: tuple[str, ...]  # sorted, unique
    findings: Mapping[str, Finding]
    held: bool  # an active legal hold covers its records

    @property
    def record_count(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True)
class EncodedPart:
    """The per-record work on consecutive stored records from ``first_seq``: their Arrow columns
    with leaf hashes (``chain_hash`` still unset) and their record-index lines, sorted."""

    first_seq: int
    table: pa.Table
    index_lines: list[str]

    def to_bytes(self) -> bytes:
        """Arrow IPC: what travels between the job's steps instead of Python records."""
        metadata = dict(self.table.schema.metadata or {})
        metadata[_PART_FIRST_SEQ] = str(self.first_seq).encode()
        metadata[_PART_INDEX] = "\n".join(self.index_lines).encode("utf-8")
        table = self.table.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        # Compressed (zstd, about 5:1 for a few ms): the runner copies it several times.
        with pa.ipc.new_stream(sink, table.schema, options=_PART_IPC_OPTIONS) as writer:
            writer.write_table(table)
        data: bytes = sink.getvalue().to_pybytes()
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedPart:
        try:
            table = pa.ipc.open_stream(data).read_all()
            metadata = dict(table.schema.metadata or {})
            first_seq = int(metadata.pop(_PART_FIRST_SEQ))
            index = metadata.pop(_PART_INDEX).decode("utf-8")
        except (pa.ArrowInvalid, KeyError, ValueError) as exc:
            raise FormatError(f"not an encoded part of a segment ({exc})") from exc
        return cls(
            first_seq=first_seq,
            # The schema's own metadata stays: the Parquet file records it.
            table=table.replace_schema_metadata(metadata),
            index_lines=index.split("\n") if index else [],
        )


_PART_FIRST_SEQ = b"coexarchive.part.first_seq"
_PART_INDEX = b"coexarchive.part.index"
_PART_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


def encode_records(stored: Sequence[Record], first_seq: int, record_version: int) -> EncodedPart:
    """Leaf hashes, Arrow columns and index lines of records sealed from ``first_seq``.

    A leaf hash depends only on the record and its seq (``schemas/SEALING.md``), so runs of a
    segment are encoded independently (in parallel in the ingest job) and the chain hashes are
    added at commit.
    """
    # seal_records also chains the leaves; from a placeholder, the commit recomputes the chain.
    sealed = seal_records(
        stored, first_seq=first_seq, prev_chain_hash=_UNCHAINED, record_version=record_version
    )
    table = records_table(sealed, record_version=record_version)
    return EncodedPart(
        first_seq=first_seq,
        table=table,
        index_lines=index_lines((r.record_id, r.kind) for r in stored),
    )


_UNCHAINED = bytes(32)


def _chain_hashes(prev: bytes, leaves: Sequence[bytes]) -> list[bytes]:
    """``chain_hash[n] = SHA-256(chain_hash[n-1] || leaf_hash[n])`` from ``prev``."""
    sha256 = hashlib.sha256
    out: list[bytes] = []
    append = out.append
    for leaf in leaves:
        prev = sha256(prev + leaf).digest()
        append(prev)
    return out


# --- Parquet --------------------------------------------------------------------------------------


def records_table(
    sealed: Sequence[SealedRecord], *, record_version: int = RECORD_VERSION
) -> pa.Table:
    """The Arrow table of sealed records, in ``seq`` order, with the normative schema."""
    # One tuple of fields per record, transposed into columns in C: no per-field Python loop.
    values = map(_record_values, [item.record for item in sealed])
    # No records give no columns (``strict=False``); the missing ones are filled empty below.
    columns: dict[str, Sequence[Any]] = dict(
        zip(RECORD_FIELDS, zip(*values, strict=True), strict=False)
    )
    columns["seq"] = [item.seq for item in sealed]
    columns["leaf_hash"] = [item.leaf_hash for item in sealed]
    columns["chain_hash"] = [item.chain_hash for item in sealed]
    columns["record_version"] = [record_version] * len(sealed)
    arrays = [pa.array(columns.get(f.name, ()), type=f.type) for f in RECORD_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)


_record_values = operator.attrgetter(*RECORD_FIELDS)


# Rows are stored by customer and time, not by seq: a transcript reads a few row groups instead of
# every one, through the Parquet statistics. Readers that need seq order sort (verify does).
STORAGE_ORDER = [("customer_id", "ascending"), ("event_time", "ascending"), ("seq", "ascending")]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(
        table.sort_by(STORAGE_ORDER),
        sink,
        compression="zstd",
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
        use_dictionary=["chain_id", "kind", "origin", "direction", "msg_type", "status"],
    )
    return sink.getvalue()


def read_segment(data: bytes, *, key: str = "segment") -> pa.Table:
    """Read a segment and check it has the record schema (hash columns included)."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"{key}: not a readable Parquet file ({exc})") from exc
    missing = [name for name in RECORD_SCHEMA.names if name not in table.column_names]
    if missing:
        raise FormatError(f"{key}: missing columns {', '.join(missing)}")
    return table.select(RECORD_SCHEMA.names)


# --- record-id index -----------------------------------------------------------------------------


def index_bytes(records: Sequence[Record]) -> bytes:
    """Sorted ``record_id kind`` lines, zstd-compressed: what de-duplication reads back."""
    return index_bytes_of_lines(index_lines((r.record_id, r.kind) for r in records))


def index_bytes_of_lines(lines: Iterable[str]) -> bytes:
    """The record index of ``record_id kind`` lines (in any order, repeats allowed)."""
    text = INDEX_FORMAT + "\n" + "".join(line + "\n" for line in sorted(set(lines)))
    # One frame stating its content size (the zstd default), which readers rely on.
    return zstandard.ZstdCompressor(level=3).compress(text.encode("utf-8"))


def index_lines(records: Iterable[tuple[str, str]]) -> list[str]:
    """The sorted unique ``record_id kind`` lines of ``(record_id, kind)`` pairs."""
    return sorted({f"{record_id} {kind}" for record_id, kind in records})


def index_text(records: Iterable[tuple[str, str]]) -> str:
    """The record index's text for ``(record_id, kind)`` pairs: format line, sorted unique lines."""
    return INDEX_FORMAT + "\n" + "".join(line + "\n" for line in index_lines(records))


def read_index(data: bytes, *, key: str = "record index") -> Iterator[tuple[str, str]]:
    try:
        text = zstandard.ZstdDecompressor().decompress(data).decode("utf-8")
    except (zstandard.ZstdError, UnicodeDecodeError) as exc:
        raise FormatError(f"{key}: unreadable record index ({exc})") from exc
    header, _, body = text.partition("\n")
    if header != INDEX_FORMAT:
        raise FormatError(f"{key}: unknown record index format {header!r}")
    for line in body.splitlines():
        record_id, _, kind = line.partition(" ")
        yield record_id, kind


def index_key(chain_id: str, date: str, first_seq: int, root_hash: bytes) -> str:
    return (
        f"{layout.DEDUP_PREFIX}v1/chain={layout.check_chain_id(chain_id)}/date={date}/"
        f"{layout.pad(first_seq)}-{root_hash.hex()[:16]}.ids.zst"
    )


def content_segment_key(chain_id: str, date: str, first: int, last: int, root: bytes) -> str:
    # The root prefix makes the key content-addressed, so a crashed run's leftover segment can
    # never block a later run whose input differs.
    base = layout.segment_key(chain_id, date, first, last)
    return base.removesuffix(".parquet") + f"-{root.hex()[:16]}.parquet"


# --- the writer ----------------------------------------------------------------------------------


class ChainWriter:
    """Appends sealed segments to one chain; serial per chain by construction."""

    def __init__(
        self,
        store: ObjectStore,
        chain_id: str,
        *,
        signer: Signer,
        archive_name: str,
        policy: RetentionPolicy | None = None,
        max_segment_records: int = DEFAULT_SEGMENT_RECORDS,
        trust: TrustStore | None = None,
        personal: PersonalSealer | None = None,
        legal_holds: LegalHolds | None = None,
    ) -> None:
        self.store = store
        # Asked of every new segment: must its objects carry a legal hold (an active hold covers
        # its records)? Held before the checkpoint commits them, so no committed segment a hold
        # covers is ever without it (``coexarchive.export.holds.NewDataHolds``).
        self.legal_holds = legal_holds
        self.chain_id = layout.check_chain_id(chain_id)
        self.signer = signer
        self.archive_name = archive_name
        self.policy = policy or RetentionPolicy()
        self.max_segment_records = max_segment_records
        # Whose checkpoints and intents a resume accepts: the writer's own key, plus the trust
        # file's keys when given (so a chain signed by a rotated-out key can be continued).
        self.trust = own_trust(signer, trust)
        # Seals the personal fields of records naming a customer as envelopes (record
        # version 2); None seals them as they are (version 1).
        self.personal = personal
        self._state: ChainState | None = None

    def state(self) -> ChainState:
        """The chain's committed state, committing a crashed run's last manifest if its intent
        verifies; :class:`UnsignedTailError` if the chain ends in anything unsigned."""
        if self._state is None:
            from coexarchive.resume import load_state  # resume reads manifests: imported late

            self._check_personal_sealing()

            self._state = load_state(
                self.store,
                self.chain_id,
                trust=self.trust,
                archive_name=self.archive_name,
                commit=self._commit,
            )
        return self._state

    def _check_personal_sealing(self) -> None:
        """Fail closed: never seal a conversation chain in plaintext in an archive whose
        setting says personal content is sealed encrypted."""
        if self.personal is not None or self.chain_id in OVERSIGHT_CHAINS:
            return
        from coexarchive.datakeys import personal_sealing_enabled  # reads the setting object

        if personal_sealing_enabled(self.store):
            raise ConfigError(
                f"chain {self.chain_id}: this archive seals personal content encrypted "
                "(settings/personal-sealing) and this writer was given no data-key store; "
                "set COEXARCHIVE_DATA_KEYS (and COEXARCHIVE_DATA_KEY_KMS in production)"
            )

    def with_state(self, state: ChainState) -> ChainWriter:
        """Continue from ``state``, which :meth:`plan` read from this chain (another process).

        The commit step of the ingest job uses this: it writes after the state the plan was made
        against, and a writer that committed in between makes its puts fail as they would here.
        """
        if state.chain_id != self.chain_id:
            raise SealError(f"state of chain {state.chain_id} given to chain {self.chain_id}")
        self._state = state
        return self

    def append(self, records: Sequence[Record]) -> list[SegmentResult]:
        """Seal ``records`` after the chain's head: one segment per UTC event date.

        :meth:`plan`, then :func:`encode_records` and :meth:`commit_segment` per segment (the
        next segment encoded while one is written): the ingest job runs the same three steps,
        the middle one spread over its workers.
        """
        return self.commit_segments(
            (plan, [encode_records(stored, plan.first_seq, plan.record_version)])
            for plan, stored in self.plan(records)
        )

    def plan(self, records: Sequence[Record]) -> list[tuple[SegmentPlan, list[Record]]]:
        """The segments ``records`` go into, in order, each with the records it stores.

        Every decision is made here, serially: the seal order, one segment per UTC date of at
        most ``max_segment_records``, the seqs (after the committed state), the stored form of
        personal fields, and what the manifest says about the plain records (retention, kinds,
        customers, findings, whether a legal hold covers them). Nothing is hashed or written.
        """
        if set(map(_chain_of, records)) - {self.chain_id}:
            for record in records:
                if record.chain_id != self.chain_id:
                    raise SealError(f"record {record.record_id} belongs to chain {record.chain_id}")
        ordered = sorted(records, key=_seal_order)
        seq = self.state().size
        personal = self.personal if self.chain_id not in OVERSIGHT_CHAINS else None
        plans: list[tuple[SegmentPlan, list[Record]]] = []
        for date, group in _by_date(ordered):
            for start in range(0, len(group), self.max_segment_records):
                chunk = group[start : start + self.max_segment_records]
                version = RECORD_VERSION
                stored: list[Record] = chunk
                if personal is not None:
                    stored, version = personal.seal(chunk), personal.record_version
                plan = SegmentPlan(
                    date=date,
                    first_seq=seq,
                    last_seq=seq + len(chunk) - 1,
                    record_version=version,
                    # Chunks are in event-time order.
                    min_event_time=chunk[0].event_time,
                    max_event_time=chunk[-1].event_time,
                    retention=_retention(self.policy, chunk),
                    kinds=dict(Counter(map(_kind_of, chunk))),
                    customers=tuple(sorted({r.customer_id for r in chunk if r.customer_id})),
                    findings=findings_of(chunk),
                    held=self.legal_holds is not None and self.legal_holds(self.chain_id, chunk),
                )
                plans.append((plan, stored))
                seq += len(chunk)
        return plans

    def commit_segment(self, plan: SegmentPlan, parts: Sequence[EncodedPart]) -> SegmentResult:
        """Write one planned segment from its encoded parts (in seq order, covering it exactly).

        The chain hashes (one SHA-256 of 64 bytes per record), the Merkle frontier and the
        Parquet file are made here from the parts' leaf hashes and columns; then the objects are
        written in the order the module docstring states.
        """
        return self.write_segment(self.prepare_segment(plan, parts, self.state()))

    def commit_segments(
        self, segments: Iterable[tuple[SegmentPlan, Sequence[EncodedPart]]]
    ) -> list[SegmentResult]:
        """Commit planned segments in order, each exactly as :meth:`commit_segment` does, making
        each segment's objects while the one before it is written.

        The writes keep their order and go one at a time on one other thread: a segment's first
        write starts only after the one before it has committed, and the first failure stops them
        and is raised. ``segments`` is consumed on this thread, so encoding it lazily overlaps
        the store's waits as well.
        """
        results: list[SegmentResult] = []
        state = self.state()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-writer") as writer:
            pending: Future[SegmentResult] | None = None
            try:
                for plan, parts in segments:
                    prepared = self.prepare_segment(plan, parts, state)
                    state = ChainState.after(prepared.manifest)
                    if pending is not None:
                        results.append(pending.result())
                    pending = writer.submit(self.write_segment, prepared)
                if pending is not None:
                    results.append(pending.result())
            except BaseException as error:
                # A write that failed says more than what failed after it (a segment it made
                # moot); raised as it was, with its own cause.
                failed = pending.exception() if pending is not None else None
                if failed is None or failed is error:
                    raise
                raise failed  # noqa: B904
        return results

    def prepare_segment(
        self, plan: SegmentPlan, parts: Sequence[EncodedPart], state: ChainState
    ) -> PreparedSegment:
        """The objects of one planned segment after ``state``: hashed, encoded and signed, none
        written."""
        if plan.first_seq != state.size:
            raise SealError(
                f"chain {self.chain_id}: segment planned at seq {plan.first_seq} but the chain "
                f"stands at {state.size}"
            )
        expected = plan.first_seq
        for part in parts:
            if part.first_seq != expected:
                raise SealError(f"chain {self.chain_id}: encoded parts do not cover the segment")
            expected += part.table.num_rows
        if expected != plan.last_seq + 1:
            raise SealError(f"chain {self.chain_id}: encoded parts do not cover the segment")
        table = pa.concat_tables([part.table for part in parts]).combine_chunks()
        leaves = table.column("leaf_hash").to_pylist()
        chain_hashes = _chain_hashes(state.chain_hash, leaves)
        table = table.set_column(
            table.schema.get_field_index("chain_hash"),
            RECORD_SCHEMA.field("chain_hash"),
            pa.array(chain_hashes, type=RECORD_SCHEMA.field("chain_hash").type),
        )
        frontier = state.frontier.copy()
        frontier.extend(leaves)
        root = frontier.root()
        first, last, date = plan.first_seq, plan.last_seq, plan.date
        retention = plan.retention

        segment = parquet_bytes(table)
        del table
        segment_key = content_segment_key(self.chain_id, date, first, last, root)
        index = index_bytes_of_lines(line for part in parts for line in part.index_lines)
        ikey = index_key(self.chain_id, date, first, root)
        manifest = Manifest(
            archive=self.archive_name,
            chain_id=self.chain_id,
            first_seq=first,
            last_seq=last,
            date=date,
            min_event_time=plan.min_event_time,
            max_event_time=plan.max_event_time,
            segment=ObjectRef(segment_key, sha256_hex(segment), len(segment)),
            record_index=ObjectRef(ikey, sha256_hex(index), len(index)),
            prev_chain_hash=state.chain_hash,
            chain_hash=chain_hashes[-1],
            root_hash=root,
            frontier=tuple(frontier.hashes),
            checkpoint_key=layout.checkpoint_key(self.chain_id, last + 1),
            retention=retention,
            kinds=plan.kinds,
            customers=CustomerFilter.next(
                state.last_manifest.customers if state.last_manifest else None,
                plan.customers,
                first_seq=first,
            ),
            findings=plan.findings,
        )
        manifest_bytes = manifest.to_bytes()
        # The intent before the manifest: a manifest without a checkpoint is committed later only
        # if this signed note names its exact bytes.
        intent = Intent.for_manifest(self.archive_name, self.chain_id, first, last, manifest_bytes)
        return PreparedSegment(
            held=plan.held,
            segment=segment,
            index=index,
            manifest=manifest,
            manifest_bytes=manifest_bytes,
            intent_key=intent_key(self.chain_id, first, intent.manifest_sha256),
            intent=intent.sign(self.signer),
        )

    def write_segment(self, prepared: PreparedSegment) -> SegmentResult:
        """Write a prepared segment's objects in the module docstring's order; the last, its
        checkpoint, commits it."""
        manifest, retention = prepared.manifest, prepared.manifest.retention
        state = self.state()
        if manifest.first_seq != state.size:
            raise SealError(
                f"chain {self.chain_id}: segment prepared at seq {manifest.first_seq} but the "
                f"chain stands at {state.size}"
            )
        created = self.store.put(manifest.segment.key, prepared.segment, retention=retention)
        self.store.put(manifest.record_index.key, prepared.index, retention=retention)
        if prepared.held:
            self._hold(manifest.segment.key, manifest.record_index.key)
        self.store.put(prepared.intent_key, prepared.intent, retention=retention)
        try:
            created = (
                self.store.put(manifest.key, prepared.manifest_bytes, retention=retention)
                and created
            )
        except ObjectExistsError as exc:
            raise SealError(
                f"chain {self.chain_id}: another writer committed seq {manifest.first_seq} first; "
                "re-run the job to continue after its segment"
            ) from exc
        if prepared.held:
            self._hold(manifest.key)
        self._commit(manifest)
        self._state = ChainState.after(manifest)
        return SegmentResult(manifest=manifest, created=created)

    def _hold(self, *keys: str) -> None:
        for key in keys:
            self.store.set_legal_hold(key, True)

    def _commit(self, manifest: Manifest) -> None:
        """Write the signed checkpoint, held when the segment it commits is."""
        checkpoint = Checkpoint(
            origin=checkpoint_origin(self.archive_name, self.chain_id),
            size=manifest.tree_size,
            root_hash=manifest.root_hash,
            extensions=(f"{CHAIN_HASH_EXTENSION} {b64(manifest.chain_hash)}",),
        )
        note = sign_note(checkpoint.body(), [self.signer])
        try:
            self.store.put(manifest.checkpoint_key, note, retention=manifest.retention)
        except ObjectExistsError as exc:
            raise SealError(
                f"chain {self.chain_id}: a different checkpoint for size {manifest.tree_size} "
                "already exists; refusing to sign a fork"
            ) from exc
        # The segment was held before its manifest was written if a hold covers it (also in a
        # crashed run whose manifest a resume commits now): its checkpoint follows it.
        if self.legal_holds and self.store.info(manifest.segment.key).legal_hold:
            self._hold(manifest.checkpoint_key)


class LegalHolds(Protocol):
    """Whether records about to be sealed into chain ``chain_id`` fall under an active hold."""

    def __call__(self, chain_id: str, records: Sequence[Record], /) -> bool: ...


_chain_of = operator.attrgetter("chain_id")
_kind_of = operator.attrgetter("kind")
_seal_order = operator.attrgetter("event_time", "record_id")


def _by_date(ordered: list[Record]) -> Iterator[tuple[str, list[Record]]]:
    """Runs of ``ordered`` (in event-time order) that share a UTC date, with that date."""
    times = list(map(_event_time_of, ordered))
    start = 0
    while start < len(ordered):
        day = times[start] // layout.DAY_MS
        end = bisect.bisect_left(times, (day + 1) * layout.DAY_MS, start)
        yield layout.utc_date(times[start]), ordered[start:end]
        start = end


_event_time_of = operator.attrgetter("event_time")


def _retention(policy: RetentionPolicy, chunk: Sequence[Record]) -> Retention:
    """``policy.retention_for(chunk)``, asked of the last-captured record of each kind only.

    Retention runs from the capture time, and a later capture never ends earlier — except across
    29 February (a lock from then ends on 1 March, as does one from 1 March), so chunks captured
    around a leap day ask about every record.
    """
    latest: dict[str, Record] = {}
    latest_at: dict[str, int] = {}
    first_at = last_at = chunk[0].event_time
    for record in chunk:
        kind = record.kind
        at = record.received_time if record.received_time is not None else record.event_time
        if at > latest_at.get(kind, _BEFORE_ALL):
            latest[kind], latest_at[kind] = record, at
        if at < first_at:
            first_at = at
        elif at > last_at:
            last_at = at
    if _near_leap_day(first_at, last_at):
        return policy.retention_for(chunk)
    return policy.retention_for(latest.values())


_BEFORE_ALL = -(2**63)
_LAST_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z


def _near_leap_day(first_ms: int, last_ms: int) -> bool:
    """Whether [first, last] (ms, widened by a day) touches a 29 February or leaves 1970–9999."""
    if first_ms < layout.DAY_MS or last_ms >= _LAST_MS - layout.DAY_MS:
        return True
    first = datetime.fromtimestamp(first_ms // 1000, tz=UTC)
    last = datetime.fromtimestamp(last_ms // 1000, tz=UTC)
    for year in range(first.year, last.year + 1):
        if calendar.isleap(year):
            leap_day = int(datetime(year, 2, 29, tzinfo=UTC).timestamp()) * 1000
            if leap_day - layout.DAY_MS <= last_ms and first_ms < leap_day + 2 * layout.DAY_MS:
                return True
    return False


def list_manifests(store: ObjectStore, chain_id: str) -> list[str]:
    return [k for k in store.list(layout.manifest_prefix(chain_id)) if k.endswith(".json")]


def own_trust(signer: Signer, trust: TrustStore | None = None) -> TrustStore:
    """``trust`` plus the signer's own verifier key (once): what a writer with ``signer``
    accepts as signed."""
    own = Verifier(signer.name, signer.public_key)
    verifiers = list(trust.verifiers) if trust is not None else []
    if trust is None or trust.find(own.name, own.key_id) is None:
        verifiers.append(own)
    return TrustStore(verifiers)


def checkpoint_hash(note: bytes) -> str:
    return hashlib.sha256(note).hexdigest()
