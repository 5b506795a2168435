"""The ingest pipeline: raw landing objects → normalised, de-duplicated, sealed Parquet segments.

    raw objects ─ReadAndNormalize─▶ (chain, records) per object ─GroupByChain─▶ SealChain
                       └─quarantine─▶ WriteQuarantine

Elements are raw objects and per-object record batches, never single events: Beam's per-element
cost is paid once per object. Sealing is serial per chain (one key of ``GroupByChain``) and
parallel across chains. Every step is idempotent, so re-running a job changes nothing.

Run locally with ``python -m pipelines.ingest --bucket … --endpoint_url …`` (FnApiRunner);
``--runner`` selects Flink, Spark or Dataflow exactly as for any Beam pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import marshal
import operator
import os
import pickle
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.transforms import combiners

from coexarchive import quarantine as quarantine_store
from coexarchive._internal.beam_failures import expected_failure, quiet_expected_failures
from coexarchive._internal.progress import LiveStatus
from coexarchive.archive_head import write_head_after
from coexarchive.dedup import DedupIndex
from coexarchive.enrich import EnrichConfig, collect_side_events, enrich_for_seal
from coexarchive.errors import CoexArchiveError, SealError
from coexarchive.normalize import Quarantined, normalize_delivery
from coexarchive.raw import AUTH_MEMBER, VERIFIED, DeliveryAuth, decode_landing
from coexarchive.records import RECORD_FIELDS, Kind, Record
from coexarchive.resume import UnsignedTailError
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter, SegmentResult
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.store.s3 import S3Store

NAMESPACE = "coexarchive.ingest"
# One counter per chain that ends in an unsigned tail, named by its error line (keys, no content).
UNSIGNED_TAIL_NAMESPACE = "coexarchive.ingest.unsigned_tail"
QUARANTINE_TAG = "quarantine"
SIDE_EVENTS_TAG = "side_events"
DERIVED_PREFIX = "derived_"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSpec:
    """How a worker reaches the archive: picklable, no secrets (boto3's chain supplies them)."""

    bucket: str
    endpoint_url: str | None = None
    region_name: str | None = None
    sse_kms_key_id: str | None = None

    def open(self) -> ObjectStore:
        return S3Store(
            self.bucket,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            sse_kms_key_id=self.sse_kms_key_id,
        )


@dataclass(frozen=True)
class SealSpec:
    key_file: str
    archive_name: str
    retention: str = "COMPLIANCE:7"
    max_segment_records: int = 100_000
    # Keys besides the signing key's own whose checkpoints, intents and archive heads a resume
    # accepts (the previous archive head, a chain signed before a key rotation).
    trust_file: str | None = None


@dataclass
class IngestSummary:
    """What one run did, from the pipeline's metrics; it adds up (see :meth:`unaccounted`).

    Every normalised event ends as exactly one of: sealed by this run (``sealed``, of which
    ``observations`` are second sightings), a duplicate of what the archive already held
    (``duplicates``), or sealed by a concurrent run of the same data before this one could
    (``concurrent``), or held back unsealed because its chain ends in objects no trusted key
    signed (``held_back``, see ``unsigned_tails``). Input that never became an event is
    ``quarantined``. Records the archive
    derived itself (consent events from opt-out keywords, ...) are counted apart, by kind, in
    ``derived``: they are not input.
    """

    raw_objects: int = 0
    deliveries: int = 0
    unreadable_lines: int = 0
    events: int = 0
    sealed: int = 0
    observations: int = 0
    duplicates: int = 0
    concurrent: int = 0
    held_back: int = 0
    quarantined: int = 0
    segments: int = 0
    chains: int = 0
    derived: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)
    # One line per chain left unsealed because it ends in objects no trusted key signed.
    unsigned_tails: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise :class:`SealError` naming every chain this run refused to seal (if any)."""
        if self.unsigned_tails:
            raise SealError("\n".join(self.unsigned_tails))

    def add(self, other: IngestSummary) -> None:
        """Add ``other``'s counts to these (the passes of ``ingest --follow``)."""
        for name in _COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.derived, other.derived), (self.extra, other.extra)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.unsigned_tails = sorted({*self.unsigned_tails, *other.unsigned_tails})

    def unaccounted(self) -> int:
        """Normalised events not accounted for as sealed, duplicate, concurrent or held back."""
        return self.events - self.sealed - self.duplicates - self.concurrent - self.held_back

    def lines(self) -> list[str]:
        derived = sum(self.derived.values())
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(self.derived.items()))
        lines = [
            f"raw objects read:    {self.raw_objects:>10,}",
            f"deliveries:          {self.deliveries:>10,}",
            f"input events:        {self.events + self.quarantined:>10,}",
            f"  sealed (new):      {self.sealed:>10,}"
            f"  (of which observations, second sightings: {self.observations:,})",
            f"  duplicates:        {self.duplicates:>10,}  (already in the archive; skipped)",
        ]
        if self.concurrent:
            lines.append(
                f"  sealed by another: {self.concurrent:>10,}"
                "  (a concurrent run committed the same records first)"
            )
        if self.held_back:
            lines.append(
                f"  held back:         {self.held_back:>10,}"
                "  (their chain ends in unsigned objects: nothing sealed there)"
            )
        lines += [
            f"  quarantined:       {self.quarantined:>10,}"
            f"  (unreadable lines: {self.unreadable_lines:,}; kept under quarantine/)",
            f"derived records:     {derived:>10,}" + (f"  ({kinds})" if kinds else ""),
            f"segments written:    {self.segments:>10,}  across {self.chains:,} chain(s)",
        ]
        if self.unaccounted():
            lines.append(f"unaccounted events:  {self.unaccounted():>10,}  (a bug: please report)")
        return lines

    def pass_line(self) -> str:
        """One line for one pass of ``ingest --follow``."""
        parts = [
            f"{self.raw_objects:,} object(s)",
            f"{self.events + self.quarantined:,} event(s): {self.sealed:,} sealed",
            f"{self.duplicates:,} duplicate",
            f"{self.quarantined:,} quarantined",
        ]
        if self.concurrent:
            parts.append(f"{self.concurrent:,} sealed by another run")
        if self.held_back:
            parts.append(f"{self.held_back:,} held back")
        derived = sum(self.derived.values())
        if derived:
            parts.append(f"{derived:,} derived")
        return ", ".join(parts)


_COUNT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(IngestSummary)
    if f.name not in ("derived", "extra", "unsigned_tails")
)


def _counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


# --- steps ---------------------------------------------------------------------------------------


class NormalizeObject(beam.DoFn):
    """One raw object → one (chain, records) element per chain it touches, plus quarantine.

    Every delivery is authenticated first (``auth``); one that fails is quarantined, never sealed.
    """

    def __init__(self, store_spec: StoreSpec, auth: DeliveryAuth) -> None:
        self.store_spec = store_spec
        self.auth = auth
        self.objects = _counter("raw_objects")
        self.deliveries = _counter("deliveries")
        self.unreadable = _counter("unreadable_lines")
        self.events = _counter("events")
        self.quarantined = _counter("quarantined")
        self.signature_invalid = _counter("signature_invalid")
        self.unverified = _counter("unverified_deliveries")

    def setup(self) -> None:
        self.store = self.store_spec.open()

    def process(self, key: str) -> Iterator[Any]:
        by_chain, bad = normalize_object(key, self.store.get(key), self, auth=self.auth)
        self.objects.inc()
        _live(objects=1, events=sum(map(len, by_chain.values())), quarantined=len(bad))
        for chain_id, records in sorted(by_chain.items()):
            self.events.inc(len(records))
            yield chain_id, pack_records(records)
            side = collect_side_events(records)
            if side:
                yield beam.pvalue.TaggedOutput(SIDE_EVENTS_TAG, pack_records(side))
        if bad:
            self.quarantined.inc(len(bad))
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, (key, bad))


# Between the steps a batch travels as one bytes value: the records' field tuples, marshalled.
# Beam would otherwise pickle every Record (its slots, one by one), which costs more than
# normalising it. marshal keeps exact types and refuses what it cannot hold (a str subclass);
# such a batch goes as a pickle instead. Both ends run the same Python, as Beam requires.
_RECORD_VALUES = operator.attrgetter(*RECORD_FIELDS)
_MARSHAL, _PICKLE = b"M", b"P"


def pack_records(records: Sequence[Record]) -> bytes:
    """One batch of records as bytes for the next step (see :func:`unpack_records`)."""
    rows = [_RECORD_VALUES(record) for record in records]
    try:
        return _MARSHAL + marshal.dumps(rows)
    except ValueError:
        return _PICKLE + pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_records(data: bytes) -> list[Record]:
    """The records :func:`pack_records` packed, equal field by field."""
    # Only this job's own NormalizeObject writes these bytes, as Beam pickles its own elements.
    body = memoryview(data)[1:]
    rows = marshal.loads(body) if data[:1] == _MARSHAL else pickle.loads(body)  # noqa: S301,S302
    return [Record(*row) for row in rows]


def normalize_object(
    key: str, data: bytes, counters: Any = None, *, auth: DeliveryAuth
) -> tuple[dict[str, list[Record]], list[Quarantined]]:
    """Decode a landing object, authenticate and normalise every delivery in it.

    Pure apart from counters. A delivery whose signature does not verify under ``auth`` is
    quarantined whole, as its exact landing line, and gives no record.
    """
    by_chain: dict[str, list[Record]] = defaultdict(list)
    bad: list[Quarantined] = []
    with _cyclic_gc_paused():
        _normalize_lines(key, data, by_chain, bad, counters, auth)
    return by_chain, bad


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while one object is normalised.

    Parsed bodies and records are acyclic and freed by reference counting; left on, the
    collector re-traverses every live one each few hundred allocations (a tenth of the time).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _normalize_lines(
    key: str,
    data: bytes,
    by_chain: dict[str, list[Record]],
    bad: list[Quarantined],
    counters: Any,
    auth: DeliveryAuth,
) -> None:
    for line in decode_landing(data, key=key):
        if line.delivery is None:
            bad.append(
                Quarantined(key, line.line, f"unreadable landing line: {line.error}", "$", line.raw)
            )
            if counters is not None:
                counters.unreadable.inc()
            continue
        if counters is not None:
            counters.deliveries.inc()
        verdict = auth.check(line.delivery)
        if isinstance(verdict, str):
            # Not proven to come from Meta (or from a capturing sender): kept, never sealed.
            bad.append(Quarantined(key, line.line, verdict, "$", line.raw))
            if counters is not None:
                counters.signature_invalid.inc()
            continue
        if counters is not None and verdict.get(AUTH_MEMBER) != VERIFIED:
            counters.unverified.inc()
        result = normalize_delivery(
            line.delivery.body,
            raw_key=key,
            raw_line=line.line,
            received_time=line.delivery.received_at,
            source=line.delivery.source,
            auth=verdict,
        )
        for record in result.records:
            by_chain[record.chain_id].append(record)
        bad.extend(result.quarantined)


class SealChain(beam.DoFn):
    """All new records of one chain → de-duplicated → sealed segments (serial per chain)."""

    def __init__(
        self, store_spec: StoreSpec, seal_spec: SealSpec, enrich: EnrichConfig | None = None
    ) -> None:
        self.store_spec = store_spec
        self.seal_spec = seal_spec
        self.enrich = enrich or EnrichConfig()
        self.sealed = _counter("sealed")
        self.observations = _counter("observations")
        self.duplicates = _counter("duplicates")
        self.concurrent = _counter("concurrent")
        self.held_back = _counter("held_back")
        self.segments = _counter("segments")
        self.chains = _counter("chains")

    def setup(self) -> None:
        self.store = self.store_spec.open()
        self.signer = Ed25519Signer.from_file(Path(self.seal_spec.key_file))
        self.policy = RetentionPolicy.parse(self.seal_spec.retention)
        self.trust = (
            TrustStore.from_file(self.seal_spec.trust_file) if self.seal_spec.trust_file else None
        )

    def process(
        self,
        element: tuple[str, Iterable[bytes]],
        side_events: Iterable[bytes] = (),
    ) -> Iterator[dict[str, Any]]:
        chain_id, batches = element
        records = [record for batch in batches for record in unpack_records(batch)]
        summary = seal_chain(
            self.store,
            chain_id,
            records,
            signer=self.signer,
            spec=self.seal_spec,
            policy=self.policy,
            side_events=[record for batch in side_events for record in unpack_records(batch)],
            enrich=self.enrich,
            trust=self.trust,
        )
        if summary.get("unsigned_tail"):
            Metrics.counter(UNSIGNED_TAIL_NAMESPACE, summary["unsigned_tail"]).inc()
        self.chains.inc()
        self.sealed.inc(summary["sealed"])
        self.observations.inc(summary["observations"])
        self.duplicates.inc(summary["duplicates"])
        self.concurrent.inc(summary["concurrent"])
        self.held_back.inc(summary["held_back"])
        self.segments.inc(summary["segments"])
        for kind, count in summary["derived"].items():
            _counter(DERIVED_PREFIX + kind).inc(count)
        _live(chains=1, sealed=summary["sealed"])
        yield summary


def seal_chain(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    *,
    signer: Ed25519Signer,
    spec: SealSpec,
    policy: RetentionPolicy,
    side_events: Sequence[Record] = (),
    enrich: EnrichConfig | None = None,
    trust: TrustStore | None = None,
) -> dict[str, Any]:
    """De-duplicate ``records`` against the chain, enrich what is new, and seal it.

    ``side_events`` are this run's consent and template events from every chain: template events
    live on the WABA's chain, which may be sealed after the chains whose sends they govern.

    A chain that ends in objects no trusted key signed (:class:`UnsignedTailError`) is left
    unsealed and named in the summary's ``unsigned_tail``; the other chains of the run still seal.
    """
    writer = ChainWriter(
        store,
        chain_id,
        signer=signer,
        archive_name=spec.archive_name,
        policy=policy,
        max_segment_records=spec.max_segment_records,
        trust=trust,
    )
    try:
        state = writer.state()
    except UnsignedTailError as exc:
        log.warning("%s", exc)
        return {
            "chain_id": chain_id,
            "sealed": 0,
            "observations": 0,
            "duplicates": 0,
            "concurrent": 0,
            "held_back": len(records),  # this chain's events wait until the tail is resolved
            "derived": {},
            "segments": 0,
            "tree_size": None,
            "unsigned_tail": str(exc),
        }
    # A chain's batch is hundreds of thousands of acyclic records: the cyclic collector would
    # re-traverse all of them every few thousand allocations (a quarter of the time).
    with _cyclic_gc_paused():
        index = DedupIndex(store, chain_id, committed_size=state.size)
        # Arrival order (roughly event-time order) makes the writer's sort cheap. Enrichment
        # reads the batch as a whole, except for the WABA id, taken from the first record naming
        # one: when records name several, they go in classify's order, as they always have.
        classified = index.classify(records, ordered=False)
        if len(set(map(_waba_of, classified.to_seal)) - {None, ""}) > 1:
            classified = classified.in_priority_order()
        to_seal = enrich_for_seal(
            store,
            chain_id,
            classified.to_seal,
            config=enrich or EnrichConfig(),
            side_events=side_events,
        )
        results = writer.append(to_seal) if to_seal else []
    written = _written_by_this_run(to_seal, state.size, results)
    # Enrichment returns new objects for the records it flags: tell input from derived by id.
    inputs = set(map(_record_id_of, classified.to_seal))
    observation = Kind.OBSERVATION.value
    derived: Counter[str] = Counter()
    sealed = observations = 0
    for record in written:
        if record.record_id not in inputs:
            derived[record.kind] += 1  # consent events derived from opt-out keywords
        else:
            sealed += 1
            observations += record.kind == observation
    return {
        "chain_id": chain_id,
        "sealed": sealed,  # input events this run committed (observations included)
        "observations": observations,
        "duplicates": classified.duplicates,
        # Input events in segments a concurrent run had already committed, byte for byte.
        "concurrent": len(classified.to_seal) - sealed,
        "held_back": 0,
        "derived": dict(derived),
        "segments": sum(1 for result in results if result.created),
        "tree_size": writer.state().size,
        # What the archive head will state for this chain (its last committed manifest).
        "manifest": writer.state().last_manifest,
    }


# The order ChainWriter.append gives sealed records their seqs: the i-th of this order gets
# seq ``first + i``, which ties each record to the segment (and manifest) holding it.
_writer_order = operator.attrgetter("event_time", "record_id")


def _written_by_this_run(
    to_seal: Sequence[Record], first: int, results: Sequence[SegmentResult]
) -> list[Record]:
    """The records of ``to_seal`` in segments this run created (not found already committed).

    A concurrent run of the same input seals byte-identical segments; the one that commits
    second finds them in place (``created`` false) and must not claim their records as new.
    """
    if all(result.created for result in results):
        return list(to_seal)
    ordered = sorted(to_seal, key=_writer_order)
    written: list[Record] = []
    for result in results:
        if result.created:
            manifest = result.manifest
            written += ordered[manifest.first_seq - first : manifest.last_seq - first + 1]
    return written


_waba_of = operator.attrgetter("waba_id")
_record_id_of = operator.attrgetter("record_id")


class WriteArchiveHead(beam.DoFn):
    """After every chain is sealed: one archive head stating each chain this run touched."""

    def __init__(self, store_spec: StoreSpec, seal_spec: SealSpec) -> None:
        self.store_spec = store_spec
        self.seal_spec = seal_spec

    def process(self, summaries: list[dict[str, Any]]) -> Iterator[int]:
        manifests = [s["manifest"] for s in summaries if s.get("manifest") is not None]
        if not manifests:
            return
        spec = self.seal_spec
        head = write_head_after(
            self.store_spec.open(),
            manifests,
            signer=Ed25519Signer.from_file(Path(spec.key_file)),
            archive_name=spec.archive_name,
            trust=TrustStore.from_file(spec.trust_file) if spec.trust_file else None,
        )
        if head is not None:
            yield head.seq


class WriteQuarantine(beam.DoFn):
    def __init__(self, store_spec: StoreSpec, retention: str) -> None:
        self.store_spec = store_spec
        self.retention = retention

    def setup(self) -> None:
        self.store = self.store_spec.open()
        self.policy = RetentionPolicy.parse(self.retention)

    def process(self, element: tuple[str, list[Quarantined]]) -> Iterator[str]:
        raw_key, items = element
        yield quarantine_store.write(self.store, raw_key, items, policy=self.policy)


class Ingest(beam.PTransform):
    """Raw object keys → sealed archive; outputs per-chain summaries."""

    def __init__(
        self,
        store_spec: StoreSpec,
        seal_spec: SealSpec,
        *,
        auth: DeliveryAuth,
        raw_spec: StoreSpec | None = None,
    ) -> None:
        super().__init__()
        self.store_spec = store_spec
        self.raw_spec = raw_spec or store_spec
        self.seal_spec = seal_spec
        self.auth = auth

    def expand(self, keys: Any) -> Any:
        normalized = keys | "ReadAndNormalize" >> beam.ParDo(
            NormalizeObject(self.raw_spec, self.auth)
        ).with_outputs(QUARANTINE_TAG, SIDE_EVENTS_TAG, main="records")
        _ = normalized[QUARANTINE_TAG] | "WriteQuarantine" >> beam.ParDo(
            WriteQuarantine(self.store_spec, self.seal_spec.retention)
        )
        side_events = normalized[SIDE_EVENTS_TAG]
        summaries = (
            normalized.records
            | "GroupByChain" >> beam.GroupByKey()
            | "SealChain"
            >> beam.ParDo(
                SealChain(self.store_spec, self.seal_spec),
                side_events=beam.pvalue.AsList(side_events),
            )
        )
        # The commit: once every chain's checkpoints are written, one head states them all.
        _ = (
            summaries
            | "AllChains" >> combiners.ToList()
            | "WriteArchiveHead" >> beam.ParDo(WriteArchiveHead(self.store_spec, self.seal_spec))
        )
        return summaries


# --- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ingest",
        description="Seal raw landing objects from an S3 bucket into the archive beside them.",
    )
    parser.add_argument("--bucket", required=True, help="the archive bucket")
    parser.add_argument(
        "--raw_bucket", default=None, help="bucket holding raw/ when separate (default: --bucket)"
    )
    parser.add_argument("--endpoint_url", default=None)
    parser.add_argument("--region_name", default=None)
    parser.add_argument("--sse_kms_key_id", default=None)
    parser.add_argument("--input_prefix", default=layout.RAW_PREFIX, help="raw objects to read")
    parser.add_argument("--signing_key", required=True, help="Ed25519 note key file")
    parser.add_argument("--archive_name", required=True)
    parser.add_argument(
        "--trust_file",
        default=None,
        help="trust file: keys besides the signing key whose checkpoints, intents and archive "
        "heads a resume accepts",
    )
    parser.add_argument("--retention", default="COMPLIANCE:7")
    parser.add_argument("--max_segment_records", type=int, default=100_000)
    parser.add_argument(
        "--allow_unauthenticated",
        action="store_true",
        help="without COEXARCHIVE_APP_SECRETS, seal deliveries marked "
        '"delivery_auth": "unverified_no_secret" instead of refusing to run',
    )
    return parser


def run(
    argv: Sequence[str] | None = None,
    *,
    save_main_session: bool = False,
    env: Mapping[str, str] | None = None,
    auth: DeliveryAuth | None = None,
    progress: bool | None = None,
) -> IngestSummary:
    """Parse arguments (ours + Beam's), run the pipeline to completion, return its summary.

    The secrets that authenticate raw deliveries are ``auth``, else read from ``env`` (default:
    the process environment) as the receiver reads them; without any, this refuses to run
    unless ``--allow_unauthenticated`` is given. ``progress``: draw a live status line on stderr
    (None: only when stderr is a terminal).
    """
    args, beam_args = build_parser().parse_known_args(argv)
    if auth is None:
        auth = DeliveryAuth.from_env(
            os.environ if env is None else env, allow_unauthenticated=args.allow_unauthenticated
        )
    store_spec = StoreSpec(args.bucket, args.endpoint_url, args.region_name, args.sse_kms_key_id)
    seal_spec = SealSpec(
        args.signing_key,
        args.archive_name,
        args.retention,
        args.max_segment_records,
        trust_file=args.trust_file,
    )
    raw_spec = dataclasses.replace(store_spec, bucket=args.raw_bucket or args.bucket)
    keys = sorted(
        k for k in raw_spec.open().list(args.input_prefix) if k.endswith((".jsonl", ".jsonl.zst"))
    )
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    options.view_as(SetupOptions).save_main_session = save_main_session
    return run_pipeline(
        keys, store_spec, seal_spec, options, auth=auth, raw_spec=raw_spec, progress=progress
    )


def run_pipeline(
    keys: Sequence[str],
    store_spec: StoreSpec,
    seal_spec: SealSpec,
    options: PipelineOptions,
    *,
    auth: DeliveryAuth,
    raw_spec: StoreSpec | None = None,
    progress: bool | None = False,
) -> IngestSummary:
    """Run the job over ``keys``; an expected failure inside it is raised as itself.

    Beam re-raises a step's exception with the step's name appended, or, from a worker process,
    as a RuntimeError holding the remote traceback as text, and logs the traceback on the way.
    Here a :class:`~coexarchive.errors.CoexArchiveError` comes out as the original error (or,
    from another process, as a :class:`~coexarchive.errors.PipelineError` with its message),
    and Beam's log of it is held back: the caller prints one line, not a runner traceback.
    """
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "RawObjects" >> beam.Create(list(keys))
        | "Ingest" >> Ingest(store_spec, seal_spec, auth=auth, raw_spec=raw_spec)
    )
    status = LiveStatus(partial(_render_status, len(keys)), force=progress)
    global _LIVE_STATUS
    _LIVE_STATUS = status if status.enabled else None
    try:
        with status, quiet_expected_failures():
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as exc:
        expected = expected_failure(exc)
        if expected is None:
            raise
        raise expected from None
    finally:
        _LIVE_STATUS = None
    return summary_from(result)


# --- progress and failures -----------------------------------------------------------------------

_LIVE_STATUS: LiveStatus | None = None


def _live(**amounts: int) -> None:
    """Count work for the live status line, when one is shown (steps run in this process)."""
    status = _LIVE_STATUS
    if status is not None:
        status.add(**amounts)


def _render_status(total_objects: int, counts: dict[str, int], elapsed: float) -> str:
    line = (
        f"ingesting: {counts.get('objects', 0):,}/{total_objects:,} raw objects, "
        f"{counts.get('events', 0):,} events, {counts.get('quarantined', 0):,} quarantined, "
        f"{counts.get('chains', 0):,} chain(s) sealed"
    )
    return f"{line} [{elapsed:,.0f}s]"


def summary_from(result: Any) -> IngestSummary:
    summary = IngestSummary()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    names = set(_COUNT_FIELDS)
    for counter in counters:
        name, value = counter.key.metric.name, int(counter.committed or counter.attempted or 0)
        if name in names:
            setattr(summary, name, getattr(summary, name) + value)
        elif name.startswith(DERIVED_PREFIX):
            kind = name[len(DERIVED_PREFIX) :]
            summary.derived[kind] = summary.derived.get(kind, 0) + value
        else:
            summary.extra[name] = summary.extra.get(name, 0) + value
    tails = result.metrics().query(MetricsFilter().with_namespace(UNSIGNED_TAIL_NAMESPACE))
    summary.unsigned_tails = sorted(
        {c.key.metric.name for c in tails["counters"] if c.committed or c.attempted}
    )
    return summary


def summary_json(summary: IngestSummary) -> bytes:
    return orjson.dumps(dataclasses.asdict(summary), option=orjson.OPT_SORT_KEYS)


if __name__ == "__main__":
    import sys

    from coexarchive.errors import CoexArchiveError

    logging.basicConfig(level=logging.WARNING)
    try:
        print("\n".join(run().lines()))
    except CoexArchiveError as error:
        print(f"python -m pipelines.ingest: {error.diagnostics()}", file=sys.stderr)
        sys.exit(2)
