"""The ingest pipeline: raw landing objects → normalised, de-duplicated, sealed Parquet segments.

    raw objects ─ReadAndNormalize─▶ (chain, records) per object ─GroupByChain─▶ PlanChain
                       └─quarantine─▶ WriteQuarantine
    PlanChain ─plan────────────────────────────────────────────────┐
    PlanChain ─work units─SpreadUnits─▶ EncodeUnits ─parts─────────┴─GroupForCommit─▶ CommitChain

Elements are raw objects, per-object record batches and work units, never single events: Beam's
per-element cost is paid once per object or unit. The decisions on a chain are serial (one key
of ``GroupByChain``: de-duplication, enrichment, supervision, segments and seqs) and so are its
writes (``CommitChain``: chain hashes, Parquet, manifest, checkpoint); the per-record hashing and
columns between them (``EncodeUnits``) run on every worker even for one chain, and chains run in
parallel. Every step is idempotent, so re-running a job changes nothing.

Run locally with ``python -m pipelines.ingest --bucket … --endpoint_url …`` (FnApiRunner);
``--runner`` selects Flink, Spark or Dataflow exactly as for any Beam pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import operator
import os
import pickle
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.transforms import combiners

from coexarchive import quarantine as quarantine_store
from coexarchive._internal.beam_failures import expected_failure, quiet_expected_failures
from coexarchive._internal.clock import now_ms
from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive._internal.progress import LiveStatus
from coexarchive.anchor.tsa import load_tsa_file
from coexarchive.anchor.witness import load_witness_policy
from coexarchive.archive_head import write_head_after
from coexarchive.enrich import EnrichConfig, collect_side_events
from coexarchive.errors import CoexArchiveError, SealError
from coexarchive.export.holds import NewDataHolds
from coexarchive.normalize import Quarantined
from coexarchive.raw import DeliveryAuth
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import EncodedPart, encode_records, own_trust
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.at_ingest import load_active_policies
from pipelines.normalize_step import normalize_object, pack_records, unpack_records
from pipelines.seal_step import (
    ChainPlan,
    commit_chain,
    encode_and_commit,
    plan_chain,
    seal_chain,
    work_units,
)
from pipelines.specs import SealSpec, StoreSpec
from pipelines.summary import (
    DERIVED_PREFIX,
    NAMESPACE,
    SUPERVISION_GAP_NAMESPACE,
    UNSIGNED_TAIL_NAMESPACE,
    IngestSummary,
    summary_from,
    summary_json,
)

# The job's parts live beside it; these names stay importable from here.
__all__ = [
    "DERIVED_PREFIX",
    "NAMESPACE",
    "UNSIGNED_TAIL_NAMESPACE",
    "Ingest",
    "IngestSummary",
    "SealSpec",
    "StoreSpec",
    "build_parser",
    "normalize_object",
    "pack_records",
    "run",
    "run_pipeline",
    "seal_chain",
    "summary_from",
    "summary_json",
    "unpack_records",
]

QUARANTINE_TAG = "quarantine"
SIDE_EVENTS_TAG = "side_events"
UNITS_TAG = "units"
COMMITTED_TAG = "committed"
log = logging.getLogger(__name__)


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
        with cyclic_gc_paused():  # packing builds a tuple per record (see PlanChain)
            yield from self._normalize(key)

    def _normalize(self, key: str) -> Iterator[Any]:
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


class PlanChain(beam.DoFn):
    """All new records of one chain → de-duplicated, enriched, scanned, split into segments and
    work units (serial per chain). Writes nothing but a crashed run's commit (a resume).

    A chain with at most ``SealSpec.spread_above`` new records is encoded and committed here and
    comes out as its summary (``COMMITTED_TAG``): spreading it would move its records through the
    runner twice more, while the run's other chains keep the workers busy. Both ways write the
    same bytes (``tests/unit/test_split_sealing``, ``tests/integration/test_ingest_split``).
    """

    def __init__(
        self, store_spec: StoreSpec, seal_spec: SealSpec, enrich: EnrichConfig | None = None
    ) -> None:
        self.store_spec = store_spec
        self.seal_spec = seal_spec
        self.enrich = enrich or EnrichConfig()

    def setup(self) -> None:
        self.store = self.store_spec.open()
        self.signer = Ed25519Signer.from_file(Path(self.seal_spec.key_file))
        self.policy = RetentionPolicy.parse(self.seal_spec.retention)
        self.trust = (
            TrustStore.from_file(self.seal_spec.trust_file) if self.seal_spec.trust_file else None
        )
        self.personal = self.seal_spec.personal_sealer(self.store, clock=now_ms)
        # Read once per worker: the policies sealed (with the audit key) before this run began,
        # from a chain that verified against the trust file; else a named gap, never silence.
        self.supervision = load_active_policies(
            self.store,
            self.trust or TrustStore([self.signer.verifier()]),
            archive_name=self.seal_spec.archive_name,
        )
        if self.supervision.gap is not None:
            log.warning("supervision at ingest is off: %s", self.supervision.gap)

    def start_bundle(self) -> None:
        # The legal holds, read from the sealed register, and the run's side events, unpacked,
        # once per bundle of chains, not once per chain: both are the same for every chain.
        self.holds: NewDataHolds | None = None
        self.side: list[Record] | None = None

    def process(
        self,
        element: tuple[str, Iterable[bytes]],
        side_events: Iterable[bytes] = (),
    ) -> Iterator[Any]:
        chain_id, batches = element
        # Hundreds of thousands of acyclic records are built and packed here: the cyclic
        # collector would re-traverse them all every few thousand allocations.
        with cyclic_gc_paused():
            yield from self._plan(chain_id, batches, side_events)

    def _plan(
        self, chain_id: str, batches: Iterable[bytes], side_events: Iterable[bytes]
    ) -> Iterator[Any]:
        records = [record for batch in batches for record in unpack_records(batch)]
        if self.holds is None:
            self.holds = NewDataHolds.load(self.store, own_trust(self.signer, self.trust))
        if self.side is None:
            self.side = [record for batch in side_events for record in unpack_records(batch)]
        plan, stored = plan_chain(
            self.store,
            chain_id,
            records,
            signer=self.signer,
            spec=self.seal_spec,
            policy=self.policy,
            side_events=self.side,
            enrich=self.enrich,
            trust=self.trust,
            personal=self.personal,
            supervision=self.supervision,
            holds=self.holds,
        )
        del records
        if sum(map(len, stored)) <= self.seal_spec.spread_above:
            summary = encode_and_commit(
                self.store, plan, stored, signer=self.signer, spec=self.seal_spec, trust=self.trust
            )
            yield beam.pvalue.TaggedOutput(COMMITTED_TAG, count_commit(summary))
            return
        yield chain_id, (_PLAN, pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
        for unit in work_units(plan, stored, unit_records=self.seal_spec.unit_records):
            # One key per unit: the runner spreads a grouping's keys over its workers.
            key = f"{chain_id}/{unit.first_seq}"
            yield beam.pvalue.TaggedOutput(
                UNITS_TAG,
                (
                    key,
                    (
                        chain_id,
                        unit.segment,
                        unit.first_seq,
                        unit.record_version,
                        pack_records(unit.records),
                    ),
                ),
            )


class EncodeUnit(beam.DoFn):
    """A run of one segment's records → leaf hashes, Arrow columns, index lines (parallel)."""

    def process(
        self, element: tuple[str, Iterable[tuple[str, int, int, int, bytes]]]
    ) -> Iterator[Any]:
        _, units = element
        for chain_id, segment, first_seq, version, packed in units:
            with cyclic_gc_paused():
                part = encode_records(unpack_records(packed), first_seq, version)
            yield chain_id, (_PART, segment, part.to_bytes())


class CommitChain(beam.DoFn):
    """One chain's plan and encoded parts → chain hashes, Parquet, the writes (serial per chain)."""

    def __init__(self, store_spec: StoreSpec, seal_spec: SealSpec) -> None:
        self.store_spec = store_spec
        self.seal_spec = seal_spec

    def setup(self) -> None:
        self.store = self.store_spec.open()
        self.signer = Ed25519Signer.from_file(Path(self.seal_spec.key_file))
        self.trust = (
            TrustStore.from_file(self.seal_spec.trust_file) if self.seal_spec.trust_file else None
        )

    def process(self, element: tuple[str, Iterable[tuple[Any, ...]]]) -> Iterator[dict[str, Any]]:
        chain_id, items = element
        plan: ChainPlan | None = None
        parts: dict[int, list[EncodedPart]] = {}
        for item in items:
            if item[0] == _PLAN:
                # Only this job's own PlanChain writes these bytes, as Beam pickles its elements.
                plan = pickle.loads(item[1])  # noqa: S301
            else:
                _, segment, data = item
                parts.setdefault(segment, []).append(EncodedPart.from_bytes(data))
        if plan is None:
            raise SealError(f"chain {chain_id}: encoded records arrived without their plan")
        by_segment = [
            sorted(parts.pop(number, []), key=_first_seq_of) for number in range(len(plan.segments))
        ]
        if parts:
            raise SealError(f"chain {chain_id}: encoded records of a segment it did not plan")
        with cyclic_gc_paused():  # a list of hashes per record (see PlanChain)
            summary = commit_chain(
                self.store,
                plan,
                by_segment,
                signer=self.signer,
                spec=self.seal_spec,
                trust=self.trust,
            )
        yield count_commit(summary)


def count_commit(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` of one chain's commit, counted in the job's metrics (and the live status)."""
    if summary.get("unsigned_tail"):
        Metrics.counter(UNSIGNED_TAIL_NAMESPACE, summary["unsigned_tail"]).inc()
    if summary.get("supervision_gap"):
        Metrics.counter(SUPERVISION_GAP_NAMESPACE, summary["supervision_gap"]).inc()
    _counter("chains").inc()
    for name in ("sealed", "observations", "duplicates", "concurrent", "held_back", "segments"):
        _counter(name).inc(summary[name])
    for kind, count in summary["derived"].items():
        _counter(DERIVED_PREFIX + kind).inc(count)
    _live(chains=1, sealed=summary["sealed"])
    return summary


_PLAN, _PART = "plan", "part"
_first_seq_of = operator.attrgetter("first_seq")


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
            tsas=load_tsa_file(Path(spec.tsa_file)) if spec.tsa_file else (),
            witnesses=(
                load_witness_policy(Path(spec.witness_file)).witnesses if spec.witness_file else ()
            ),
        )
        if head is not None:
            yield head.seq


class WriteQuarantine(beam.DoFn):
    def __init__(self, store_spec: StoreSpec, retention: str) -> None:
        self.store_spec = store_spec
        self.retention = retention

    def setup(self) -> None:
        # Opened at the first quarantined object: most runs have none, and creating an S3
        # client costs every worker a tenth of a second or more.
        self.store: ObjectStore | None = None
        self.policy = RetentionPolicy.parse(self.retention)

    def process(self, element: tuple[str, list[Quarantined]]) -> Iterator[str]:
        raw_key, items = element
        if self.store is None:
            self.store = self.store_spec.open()
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
        planned = (
            normalized.records
            | "GroupByChain" >> beam.GroupByKey()
            | "PlanChain"
            >> beam.ParDo(
                PlanChain(self.store_spec, self.seal_spec),
                side_events=beam.pvalue.AsList(side_events),
            ).with_outputs(UNITS_TAG, COMMITTED_TAG, main="plans")
        )
        # One key per work unit: even one chain's records are encoded on every worker.
        encoded = (
            planned[UNITS_TAG]
            | "SpreadUnits" >> beam.GroupByKey()
            | "EncodeUnits" >> beam.ParDo(EncodeUnit())
        )
        committed = (
            (planned.plans, encoded)
            | "PlansAndParts" >> beam.Flatten()
            | "GroupForCommit" >> beam.GroupByKey()
            | "CommitChain" >> beam.ParDo(CommitChain(self.store_spec, self.seal_spec))
        )
        summaries = (planned[COMMITTED_TAG], committed) | "AllCommits" >> beam.Flatten()
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
    parser.add_argument(
        "--tsa_file",
        default=None,
        help="timestamp authorities asked for a token over each new archive head",
    )
    parser.add_argument(
        "--witness_file",
        default=None,
        help="C2SP witnesses each new archive head is submitted to",
    )
    parser.add_argument("--retention", default="COMPLIANCE:7")
    parser.add_argument("--max_segment_records", type=int, default=100_000)
    parser.add_argument(
        "--spread_above",
        type=int,
        default=SealSpec.spread_above,
        help="a chain with more new records than this has its hashing and Parquet columns "
        "spread over every worker, in units of --unit_records; smaller chains are sealed where "
        "they are planned (default: %(default)s; lower it on a runner with many workers)",
    )
    parser.add_argument(
        "--unit_records",
        type=int,
        default=SealSpec.unit_records,
        help="records per unit when a chain is spread (default: %(default)s)",
    )
    parser.add_argument(
        "--data_keys_dir",
        default=None,
        help="per-customer data keys, for archives that seal personal content encrypted",
    )
    parser.add_argument("--data_key_kms", default=None, help="KMS key that wraps the data keys")
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
        tsa_file=args.tsa_file,
        witness_file=args.witness_file,
        data_keys_dir=args.data_keys_dir,
        data_key_kms=args.data_key_kms,
        spread_above=args.spread_above,
        unit_records=args.unit_records,
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


if __name__ == "__main__":
    import sys

    from coexarchive.errors import CoexArchiveError

    logging.basicConfig(level=logging.WARNING)
    try:
        print("\n".join(run().lines()))
    except CoexArchiveError as error:
        print(f"python -m pipelines.ingest: {error.diagnostics()}", file=sys.stderr)
        sys.exit(2)
