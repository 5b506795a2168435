"""Verification as a Beam job: segments checked in parallel, then joined per chain.

    chains ─PlanChain─▶ (chain, manifest) per segment ─Reshuffle─▶ CheckSegment (steps 2-5)
       │                                                               │
       └───────────────────────── CoGroupByChain ◀─────────────────────┘
                                       │
                                  VerifyChain (steps 1, 6-10, with the workers' 2-5) ─▶ results

Each ``CheckSegment`` element is one segment and its record index, so a worker holds one segment
at a time whatever the archive's size; ``VerifyChain`` holds only what the checks found. The
checks before the chains (Object Lock) and after them (archive heads, "nothing verified") run in
the submitting process, as in the local verify, which this returns the same report as: the steps
are the same code (``coexarchive.verify``), only where steps 2-5 run differs.

Results come back through files under ``output`` (default: a local temporary directory, which
suits runners whose workers share this machine's disk; on a cluster, a ``gs://`` or ``s3://``
prefix the workers can write and this process can read).

Run with ``coexarchive verify --runner …`` or ``python -m pipelines.verify --bucket … --trust …``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive._internal.beam_failures import expected_failure, quiet_expected_failures
from coexarchive.errors import Failure
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import ChainState, Manifest
from coexarchive.store.base import sha256_hex
from coexarchive.verify import (
    ChainReport,
    ChainScope,
    ChainsJob,
    Report,
    SegmentCheck,
    verify_archive,
)
from coexarchive.verify.archive import check_chain_media
from pipelines.specs import StoreSpec

log = logging.getLogger(__name__)

# One segment to check: (chain, (manifest key, manifest bytes, previous manifest bytes or None)).
Planned = tuple[str, tuple[str, bytes, bytes | None]]


def trust_text(trust: TrustStore) -> str:
    """The trust store as the text it parses from (workers rebuild it; keys do not pickle)."""
    return "".join(verifier.to_text() + "\n" for verifier in trust.verifiers)


class _ChainStep(beam.DoFn):
    def __init__(self, store_spec: StoreSpec, trust: str, scope: ChainScope) -> None:
        self.store_spec = store_spec
        self.trust_text = trust
        self.scope = scope

    def setup(self) -> None:
        self.store = self.store_spec.open()
        self.trust = TrustStore.parse(self.trust_text)


class PlanChain(_ChainStep):
    """One chain → one element per segment: its manifest and the one before it (step 1's list)."""

    def process(self, chain_id: str) -> Iterator[Planned]:
        verifier = self.scope.verifier(self.store, self.trust, chain_id)
        previous: bytes | None = None
        for manifest, _start in verifier.plan():
            data = self.store.get(manifest.key)
            if sha256_hex(data) != verifier.digests[manifest.key]:
                previous = None  # rewritten since step 1 read it: VerifyChain reports it
                continue
            yield chain_id, (manifest.key, data, previous)
            previous = data


class CheckSegment(_ChainStep):
    """Steps 2-5 for one segment, on whichever worker the runner gives it."""

    def process(self, element: Planned) -> Iterator[tuple[str, SegmentCheck]]:
        chain_id, (key, data, previous) = element
        verifier = self.scope.verifier(self.store, self.trust, chain_id)
        manifest = Manifest.from_bytes(data, key=key)
        verifier.digests[key] = sha256_hex(data)
        if previous is None or manifest.first_seq == 0:
            start = ChainState.empty(chain_id)
        else:
            start = ChainState.after(Manifest.from_bytes(previous))
        yield chain_id, verifier.check_one(manifest, start)


class VerifyChain(_ChainStep):
    """Every step for one chain, taking steps 2-5 from the segments' checks: one JSON line."""

    def process(self, element: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[str]:
        chain_id, joined = element
        checks = {check.manifest_key: check for check in joined["checks"]}
        verifier = self.scope.verifier(self.store, self.trust, chain_id)
        verifier.run(None, None, checked=checks)
        check_chain_media(verifier, self.scope.media)
        yield json.dumps(
            {
                "chain": verifier.chain.to_json(),
                "failures": [failure.__dict__ for failure in verifier.report.failures],
            },
            sort_keys=True,
        )


def chains_job(
    store_spec: StoreSpec,
    trust: TrustStore,
    options: PipelineOptions,
    *,
    output: str | None = None,
) -> ChainsJob:
    """A :data:`~coexarchive.verify.ChainsJob` running the chains' steps on Beam (``options``)."""

    def run(chain_ids: Sequence[str], scope: ChainScope) -> list[tuple[ChainReport, list[Failure]]]:
        if not chain_ids:
            return []
        with tempfile.TemporaryDirectory(prefix="coexarchive-verify-") as local:
            prefix = FileSystems.join(output or local, f"verify-{uuid.uuid4().hex}", "chains")
            lines = _run_job(store_spec, trust_text(trust), scope, chain_ids, options, prefix)
        return _results(chain_ids, lines)

    return run


def _run_job(
    store_spec: StoreSpec,
    trust: str,
    scope: ChainScope,
    chain_ids: Sequence[str],
    options: PipelineOptions,
    prefix: str,
) -> list[str]:
    pipeline = beam.Pipeline(options=options)
    chains = pipeline | "Chains" >> beam.Create(list(chain_ids))
    checks = (
        chains
        | "PlanChain" >> beam.ParDo(PlanChain(store_spec, trust, scope))
        # One chain's segments go to every worker, not to the one that planned them.
        | "SpreadSegments" >> beam.Reshuffle()
        | "CheckSegment" >> beam.ParDo(CheckSegment(store_spec, trust, scope))
    )
    keyed = chains | "KeyChains" >> beam.Map(lambda chain_id: (chain_id, None))
    _ = (
        {"chain": keyed, "checks": checks}
        | "CoGroupByChain" >> beam.CoGroupByKey()
        | "VerifyChain" >> beam.ParDo(VerifyChain(store_spec, trust, scope))
        | "WriteResults" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
    )
    try:
        with quiet_expected_failures():
            pipeline.run().wait_until_finish()
    except Exception as exc:
        expected = expected_failure(exc)
        if expected is None:
            raise
        raise expected from None
    lines: list[str] = []
    for match in FileSystems.match([prefix + "*"])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            lines += handle.read().decode("utf-8").splitlines()
    FileSystems.delete([m.path for m in FileSystems.match([prefix + "*"])[0].metadata_list])
    return lines


def _results(
    chain_ids: Sequence[str], lines: Iterable[str]
) -> list[tuple[ChainReport, list[Failure]]]:
    by_chain: dict[str, tuple[ChainReport, list[Failure]]] = {}
    for line in lines:
        found = json.loads(line)
        chain = ChainReport(**found["chain"])
        by_chain[chain.chain_id] = (chain, [Failure(**f) for f in found["failures"]])
    results = []
    for chain_id in chain_ids:
        if chain_id not in by_chain:
            # Fail closed: a chain the job did not answer for was not verified.
            missing = Failure("archive", "the verification job returned nothing for this chain")
            by_chain[chain_id] = (ChainReport(chain_id=chain_id), [_located(missing, chain_id)])
        results.append(by_chain[chain_id])
    return results


def _located(failure: Failure, chain_id: str) -> Failure:
    return Failure(failure.step, failure.message, chain_id, failure.key, failure.seq)


def verify_with_beam(
    store_spec: StoreSpec,
    trust: TrustStore,
    options: PipelineOptions,
    *,
    output: str | None = None,
    **verify_options: Any,
) -> Report:
    """``verify_archive`` with the chains' steps run as a Beam job (same report, same errors)."""
    job = chains_job(store_spec, trust, options, output=output)
    return verify_archive(store_spec.open(), trust, job=job, **verify_options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.verify",
        description="Verify an archive with the per-segment checks spread over a Beam runner's "
        "workers. `coexarchive verify --runner …` is the same job with the usual options.",
    )
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint_url", default=None)
    parser.add_argument("--region_name", default=None)
    parser.add_argument("--trust", required=True, help="trust file (verifier keys)")
    parser.add_argument("--archive_name", default=None)
    parser.add_argument(
        "--verify_output", default=None, help="where workers leave results (default: a temp dir)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from coexarchive.errors import ArchiveVerificationError

    args, beam_args = build_parser().parse_known_args(argv)
    spec = StoreSpec(args.bucket, args.endpoint_url, args.region_name)
    trust = TrustStore.from_file(Path(args.trust))
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    try:
        report = verify_with_beam(
            spec, trust, options, output=args.verify_output, archive_name=args.archive_name
        )
    except ArchiveVerificationError as exc:
        report = exc.report
    print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    return 0 if report.ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
