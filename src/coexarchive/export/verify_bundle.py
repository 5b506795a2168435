"""Offline verification of an evidence bundle, from the bundle alone, in numbered steps.

``verify_bundle`` returns a :class:`BundleReport` when every check holds and raises
:class:`BundleVerificationError` (carrying the same report) when any fails. Every failure names
its step and the file, chain and leaf index (``seq``) concerned; the report also has one entry per
record.

Steps:

1. ``layout``       ``BUNDLE.json`` and ``MANIFEST`` exist and parse; the format is known.
2. ``files``        every file in ``MANIFEST`` exists with that SHA-256; no file is unlisted.
3. ``custody``      ``CUSTODY.json`` names the SHA-256 of ``MANIFEST`` and the bundle's counts.
4. ``keys``         the trust store: ``--trust`` if given, else the bundle's own keys (integrity
                    only, not origin: the report says so).
5. ``checkpoints``  each chain's checkpoint is signed by a trusted key, for the chain's origin,
                    with the size and root ``BUNDLE.json`` states.
6. ``records``      each line of ``records.jsonl`` is a canonical (RFC 8785) sealed record; its
                    leaf hash is ``SHA-256(0x00 || line)``; no leaf index appears twice.
7. ``proofs``       each record has exactly one proof, naming its leaf hash and index; the proof's
                    checkpoint is the chain's; the RFC 6962 path folds to the signed root.
8. ``tables``       ``records.parquet`` and ``records.csv`` hold exactly the proven records.
9. ``transcripts``  every transcript page re-renders, byte for byte, from the proven records.
10. ``rsmf``        every RSMF file re-renders from the proven records (its manifest, attachments
                    and text; the zip's compressed bytes may differ between zlib builds).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import multiprocessing
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.errors import (
    CoexArchiveError,
    ConfigError,
    Failure,
    FormatError,
    VerificationError,
)
from coexarchive.export._rows import (
    SEALED_ORDER,
    ConversationKey,
    Row,
    conversations,
    leaf_of,
    parse_line,
    records_csv,
)
from coexarchive.export.bundle import BUNDLE_FORMAT, CUSTODY_FORMAT, NOT_IN_MANIFEST
from coexarchive.export.proofs import TLOG_PROOF_HEADER, decode_proof_hash, parse_tlog_proof
from coexarchive.export.rsmf import BOUNDARY, RsmfParts, render_rsmf_parts
from coexarchive.export.transcript import render_transcripts
from coexarchive.records import RECORD_SCHEMA
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import node_hash

__all__ = ["STEPS", "BundleReport", "BundleVerificationError", "RecordResult", "verify_bundle"]

STEPS = (
    "layout",
    "files",
    "custody",
    "keys",
    "checkpoints",
    "records",
    "proofs",
    "tables",
    "transcripts",
    "rsmf",
)
BUNDLE_KEYS_WARNING = (
    "verified against the public keys the bundle itself carries (keys/trust.txt): this proves "
    "the records were not altered after signing, NOT who signed them; pass --trust with the "
    "archive's keys, obtained from its owner by another channel, to prove origin"
)
CHAIN_HASH_WARNING = (
    "records.parquet has a chain_hash column, which a bundle cannot prove (it depends on records "
    "the bundle does not hold): that column was not checked; ignore it"
)
_MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  (\S(?:.*\S)?)")
_RECORDS = "records/records.jsonl"
_HEADER = TLOG_PROOF_HEADER.encode()


@dataclass
class RecordResult:
    """What was proven about one record (one line of ``records.jsonl``)."""

    line: int
    chain_id: str | None
    seq: int | None
    record_id: str | None
    leaf_hash: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "record_id": self.record_id,
            "leaf_hash": self.leaf_hash,
            "ok": self.ok,
            "problems": self.problems,
        }


@dataclass
class BundleReport:
    records: list[RecordResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chains: list[dict[str, Any]] = field(default_factory=list)
    trust_source: str = ""
    matter: str | None = None
    steps: tuple[str, ...] = STEPS

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(
        self,
        step: str,
        message: str,
        *,
        key: str | None = None,
        chain: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.failures.append(Failure(step, message, chain, key, seq))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "matter": self.matter,
            "steps": list(self.steps),
            "trust": self.trust_source,
            "warnings": self.warnings,
            "chains": self.chains,
            "records_verified": sum(1 for r in self.records if r.ok),
            "records_failed": sum(1 for r in self.records if not r.ok),
            "failures": [f.__dict__ for f in self.failures],
        }


class BundleVerificationError(VerificationError):
    """A bundle that did not verify, with the full report."""

    def __init__(self, report: BundleReport) -> None:
        self.report = report
        super().__init__(failures=list(report.failures))


@dataclass
class _Chain:
    chain_id: str
    checkpoint: Checkpoint | None
    note: bytes | None
    proofs_path: str


def verify_bundle(
    files: Mapping[str, bytes], *, trust: TrustStore | None = None, workers: int = 1
) -> BundleReport:
    """Verify a bundle given as path → bytes (see :func:`coexarchive.export.bundle.read_bundle`).

    ``workers=2`` checks the file hashes and re-renders the transcripts and RSMF files in a
    forked process while this one checks checkpoints, proofs and tables; the report is the same
    either way. Where ``fork`` is not available, or the worker dies, everything runs here.
    """
    with cyclic_gc_paused():
        return _verify(files, trust, workers)


_RENDERED = frozenset({"tables", "transcripts", "rsmf"})
# At least this long, the render worker is waited for before this process does its work.
WORKER_PATIENCE_S = 60.0


def _verify(files: Mapping[str, bytes], trust: TrustStore | None, workers: int) -> BundleReport:
    report = BundleReport()
    description = _layout(files, report)
    if description is None:
        raise BundleVerificationError(report)
    report.matter = str(description.get("matter"))
    worker = _Worker(files, description, (_files_step, _transcripts, _rsmf), workers)
    try:
        rows, leaves = _records(files, report)
        parsed = _Parsed(files, description, [row for row in rows if row is not None], leaves)
        parsed.complete = len(parsed.rows) == len(rows) > 0
        _custody(files, report)
        trust = _keys(files, trust, report)
        chains = _checkpoints(files, description, trust, report)
        _proofs(files, chains, rows, leaves, report)
        proven = parsed.complete and all(result.ok for result in report.records)
        if proven:
            _csv_table(parsed, report)
            _parquet_table(parsed, report)
        elif rows:
            report.warnings.append(
                "tables, transcripts and RSMF were not re-rendered: some records did not verify"
            )
        report.failures.extend(worker.failures(parsed, rendered=proven))
    finally:
        worker.close()
    if report.failures:
        # Steps ran in two processes and out of order: report them in the order of STEPS.
        report.failures.sort(key=lambda failure: STEPS.index(failure.step))
        raise BundleVerificationError(report)
    return report


@dataclass
class _Parsed:
    """What steps 2 and 8 to 10 work from: the files, the parsed records and their leaves.

    ``complete`` when every line of ``records.jsonl`` parsed; steps 8 to 10 run only then.
    """

    files: Mapping[str, bytes]
    description: Mapping[str, Any]
    rows: list[Row]
    leaves: Sequence[bytes]
    complete: bool = False

    @functools.cached_property
    def groups(self) -> dict[ConversationKey, list[int]]:
        return conversations(self.rows)


_Step = Callable[[_Parsed, "BundleReport"], None]


class _Worker:
    """Steps run in a forked process while this one checks the rest.

    The worker is forked once the layout is known and parses ``records.jsonl`` for itself (its
    own objects, so the two processes do not fault on each other's pages); it hashes the files
    and re-renders while this process checks records, checkpoints, proofs and tables, then
    sends back the failures it found. It renders before anyone knows whether every record is
    proven; when one is not, what it rendered is discarded, exactly as the single-process path
    skips rendering. Without ``fork``, with one worker, or if the worker dies before answering,
    the steps run here instead: the report is the same either way.
    """

    def __init__(
        self,
        files: Mapping[str, bytes],
        description: Mapping[str, Any],
        steps: Sequence[_Step],
        workers: int,
    ) -> None:
        self.files, self.description, self.steps = files, description, steps
        self.process: BaseProcess | None = None
        self.receiver: Connection | None = None
        self.started = time.monotonic()
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=self._work, args=(sender,), name="verify-bundle-worker", daemon=True
            )
            try:
                process.start()
            except (AssertionError, OSError):  # e.g. inside a daemon process: no children
                receiver.close()
            else:
                self.process, self.receiver = process, receiver
            sender.close()

    def _run(self, parsed: _Parsed, *, rendered: bool) -> list[Failure]:
        scratch = BundleReport()
        for step in self.steps:
            if rendered or step is _files_step:
                step(parsed, scratch)
        return scratch.failures

    def _work(self, sender: Connection) -> None:
        # Forked inside verify_bundle's cyclic_gc_paused(): the collector is off here too.
        parsed = _parse(self.files, self.description)
        sender.send(self._run(parsed, rendered=parsed.complete))
        sender.close()

    def failures(self, parsed: _Parsed, *, rendered: bool) -> list[Failure]:
        """The steps' failures; those of rendering only when ``rendered``."""
        if self.receiver is not None:
            # The worker does about as much as this process did meanwhile; one that is far
            # slower is stuck (a fork can inherit a held lock), and this process takes over.
            patience = max(WORKER_PATIENCE_S, 4 * (time.monotonic() - self.started))
            try:
                if self.receiver.poll(patience):
                    found: list[Failure] = self.receiver.recv()
                    return [f for f in found if rendered or f.step not in _RENDERED]
            except (EOFError, OSError):
                pass  # the worker died before answering: run the steps here instead
            if self.process is not None and self.process.is_alive():
                self.process.terminate()
        return self._run(parsed, rendered=rendered)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        if self.process is not None:
            if self.process.is_alive():
                self.process.terminate()
            self.process.join()


def _parse(files: Mapping[str, bytes], description: Mapping[str, Any]) -> _Parsed:
    """Step 6's parse without its report: the worker's own copy of the records."""
    lines, _ = _record_lines(files)
    parsed = _Parsed(files, description, [], [leaf_of(line) for line in lines])
    try:
        parsed.rows = [parse_line(line) for line in lines]
    except ValueError:
        return parsed
    parsed.complete = bool(lines)
    return parsed


# Step 1: the bundle says what it is, and lists its files.
def _layout(files: Mapping[str, bytes], report: BundleReport) -> dict[str, Any] | None:
    for name in ("BUNDLE.json", "MANIFEST", _RECORDS):
        if name not in files:
            report.fail("layout", "required file is missing", key=name)
    if "BUNDLE.json" not in files:
        return None
    try:
        description = orjson.loads(files["BUNDLE.json"])
    except orjson.JSONDecodeError as exc:
        report.fail("layout", f"not valid JSON ({exc})", key="BUNDLE.json")
        return None
    if not isinstance(description, dict) or description.get("format") != BUNDLE_FORMAT:
        found = description.get("format") if isinstance(description, dict) else None
        report.fail("layout", f"unknown bundle format {found!r}", key="BUNDLE.json")
        return None
    return description


# Step 2: every file is the one MANIFEST lists, and nothing else was added.
def _files_step(parsed: _Parsed, report: BundleReport) -> None:
    _files(parsed.files, report)


def _files(files: Mapping[str, bytes], report: BundleReport) -> dict[str, str]:
    listed: dict[str, str] = {}
    try:
        text = files.get("MANIFEST", b"").decode("utf-8")
    except UnicodeDecodeError:
        report.fail("files", "MANIFEST is not UTF-8 text", key="MANIFEST")
        return listed
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            report.fail("files", f"line {number} is not '<sha256>  <path>'", key="MANIFEST")
            continue
        listed[match.group(2)] = match.group(1)
    for path, digest in sorted(listed.items()):
        data = files.get(path)
        if data is None:
            report.fail("files", "listed in MANIFEST but missing from the bundle", key=path)
        elif hashlib.sha256(data).hexdigest() != digest:
            report.fail("files", "SHA-256 differs from MANIFEST: the file was altered", key=path)
    for path in sorted(files):
        if path not in listed and path not in NOT_IN_MANIFEST:
            report.fail("files", "file is not listed in MANIFEST", key=path)
    return listed


# Step 3: the custody entry names this MANIFEST.
def _custody(files: Mapping[str, bytes], report: BundleReport) -> None:
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
    lines = files.get(_RECORDS, b"").count(b"\n")
    counted = (custody.get("counts") or {}).get("records")
    if counted != lines:
        report.fail(
            "custody", f"counts {counted} records, the bundle holds {lines}", key="CUSTODY.json"
        )


# Step 4: which keys decide.
def _keys(files: Mapping[str, bytes], trust: TrustStore | None, report: BundleReport) -> TrustStore:
    if trust is not None:
        report.trust_source = "trust file given with --trust"
        return trust
    report.trust_source = "the bundle's own keys/trust.txt"
    report.warnings.append(BUNDLE_KEYS_WARNING)
    try:
        return TrustStore.parse(files.get("keys/trust.txt", b"").decode("utf-8"))
    except (ConfigError, UnicodeDecodeError) as exc:
        report.fail("keys", f"unreadable trust file ({exc})", key="keys/trust.txt")
        return TrustStore()


# Step 5: each chain's checkpoint is signed, for the chain, with the stated size and root.
def _checkpoints(
    files: Mapping[str, bytes],
    description: Mapping[str, Any],
    trust: TrustStore,
    report: BundleReport,
) -> dict[str, _Chain]:
    chains: dict[str, _Chain] = {}
    archive = str(description.get("archive"))
    for entry in description.get("chains") or []:
        chain_id = str(entry.get("chain_id"))
        path = str(entry.get("checkpoint"))
        chain = _Chain(chain_id, None, None, str(entry.get("proofs")))
        chains[chain_id] = chain
        note = files.get(path)
        if note is None:
            report.fail("checkpoints", "checkpoint file is missing", key=path, chain=chain_id)
            continue
        try:
            checkpoint = open_checkpoint(note, trust, origin=checkpoint_origin(archive, chain_id))
        except CoexArchiveError as exc:
            report.fail(
                "checkpoints", f"checkpoint does not verify: {exc}", key=path, chain=chain_id
            )
            continue
        if checkpoint.size != entry.get("tree_size") or base64.b64encode(
            checkpoint.root_hash
        ).decode() != entry.get("root_hash"):
            report.fail(
                "checkpoints", "size or root differs from BUNDLE.json", key=path, chain=chain_id
            )
            continue
        chain.checkpoint, chain.note = checkpoint, note
        report.chains.append(
            {"chain_id": chain_id, "tree_size": checkpoint.size, "origin": checkpoint.origin}
        )
    return chains


# Step 6: each record line is a canonical sealed record; its leaf hash follows from its bytes.
def _records(
    files: Mapping[str, bytes], report: BundleReport
) -> tuple[list[Row | None], list[bytes]]:
    lines, terminated = _record_lines(files)
    if not terminated:
        report.fail("records", "does not end with a newline", key=_RECORDS)
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
                key=_RECORDS,
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
                    "records", "leaf index appears twice", key=_RECORDS, chain=slot[0], seq=slot[1]
                )
            seen.add(slot)
        rows.append(row)
    return rows, leaves


def _record_lines(files: Mapping[str, bytes]) -> tuple[list[bytes], bool]:
    """The lines of ``records.jsonl``, and whether it ends with a newline."""
    lines = files.get(_RECORDS, b"").split(b"\n")
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


# Step 7: each record's leaf is in its chain's signed tree at its index.
def _proofs(
    files: Mapping[str, bytes],
    chains: Mapping[str, _Chain],
    rows: Sequence[Row | None],
    leaves: Sequence[bytes],
    report: BundleReport,
) -> None:
    proofs: dict[tuple[str, int], tuple[str, int, dict[str, Any]]] = {}
    for chain in chains.values():
        data = files.get(chain.proofs_path)
        if data is None:
            report.fail(
                "proofs", "proof file is missing", key=chain.proofs_path, chain=chain.chain_id
            )
            continue
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                entry = orjson.loads(line)
                slot = (str(entry["chain_id"]), int(entry["seq"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                report.fail("proofs", f"line {number} is not a proof entry", key=chain.proofs_path)
                continue
            if slot[0] != chain.chain_id or slot in proofs:
                report.fail(
                    "proofs",
                    f"line {number}: misplaced or repeated proof",
                    key=chain.proofs_path,
                    chain=slot[0],
                    seq=slot[1],
                )
                continue
            proofs[slot] = (chain.proofs_path, number, entry)
    checker = _ProofChecker()
    for row, leaf, result in zip(rows, leaves, report.records, strict=True):
        if row is None:
            continue
        slot = (row["chain_id"], row["seq"])
        found = proofs.pop(slot, None)
        chain_entry = chains.get(row["chain_id"])
        if found is None or chain_entry is None:
            _record_failure(
                report, result, "proofs", "no inclusion proof for this record", _RECORDS
            )
            continue
        path, number, entry = found
        if entry.get("leaf_hash") != leaf.hex():
            _record_failure(
                report,
                result,
                "records",
                f"line {result.line}: the record's bytes do not hash to the leaf hash its proof "
                f"names ({path} line {number}): the record was altered",
                _RECORDS,
            )
            continue
        problem = checker.check(str(entry.get("tlog_proof", "")), leaf, row["seq"], chain_entry)
        if problem is not None:
            _record_failure(report, result, "proofs", f"line {number}: {problem}", path)
    for (chain_id, seq), (path, number, _entry) in sorted(proofs.items()):
        report.fail(
            "proofs",
            f"line {number}: proof for a record the bundle does not hold",
            key=path,
            chain=chain_id,
            seq=seq,
        )


def _record_failure(
    report: BundleReport, result: RecordResult, step: str, message: str, key: str
) -> None:
    result.problems.append(message)
    report.fail(step, message, key=key, chain=result.chain_id, seq=result.seq)


class _ProofChecker:
    """Folds tlog-proof heads to their chain's signed root, sharing the work between neighbours.

    Folding (RFC 9162 section 2.1.3.2) is a pure function of the state ``(fn, sn, hash)`` and the
    audit-path lines still to come. ``sn`` strictly falls along a fold, so per chain and ``sn``
    the checker remembers the last state it saw on a path that reached the signed root, with that
    path's remaining lines. A proof arriving at the same state with byte-identical remaining
    lines would fold to the same root, so it stops there. Every line of every proof is thus
    either folded or compared byte for byte with lines that were folded, and every proof still
    ends at the root; neighbouring leaves cost about two hashes each instead of ``log2(size)``.
    """

    def __init__(self) -> None:
        self.verified: dict[tuple[str, int], tuple[int, bytes, list[bytes], int]] = {}

    def check(self, text: str, leaf: bytes, seq: int, chain: _Chain) -> str | None:
        raw = text.encode("utf-8")
        head, blank, rest = raw.partition(b"\n\n")
        lines = head.split(b"\n")
        if rest:
            return (
                "tlog-proof has text after its blank line: a bundle's proofs leave the "
                "checkpoint out (it is in checkpoints/)"
            )
        if not blank or len(lines) < 2 or lines[0] != _HEADER:
            try:
                parse_tlog_proof(raw)
            except FormatError as exc:
                return f"malformed tlog-proof ({exc})"
            return "tlog-proof with extra data is not produced by coexarchive"
        if lines[1] != b"index %d" % seq:
            return f"tlog-proof names {lines[1].decode(errors='replace')!r}, the record is {seq}"
        if chain.checkpoint is None:
            return "the chain's checkpoint did not verify"
        checkpoint = chain.checkpoint
        return self._fold(chain.chain_id, leaf, seq, checkpoint.size, lines, checkpoint.root_hash)

    def _fold(
        self, chain_id: str, leaf: bytes, index: int, size: int, lines: list[bytes], root: bytes
    ) -> str | None:
        if not 0 <= index < size:
            return f"leaf index {index} is outside a tree of size {size}"
        verified = self.verified
        fn, sn, result, line = index, size - 1, leaf, 2
        visited = []
        while True:
            seen = verified.get((chain_id, sn))
            if (
                seen is not None
                and seen[0] == fn
                and seen[1] == result
                and seen[2][seen[3] :] == lines[line:]
            ):
                break
            visited.append((sn, fn, result, line))
            if line == len(lines):
                if sn != 0:
                    return "inclusion proof is too short"
                if result != root:
                    return "inclusion proof does not reach the signed root"
                break
            if sn == 0:
                return "inclusion proof is too long"
            try:
                sibling = decode_proof_hash(lines[line])
            except FormatError as exc:
                return f"malformed tlog-proof hash line ({exc})"
            if fn & 1 or fn == sn:
                result = node_hash(sibling, result)
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
            else:
                result = node_hash(result, sibling)
            fn >>= 1
            sn >>= 1
            line += 1
        for state_sn, state_fn, state_result, state_line in visited:
            verified[(chain_id, state_sn)] = (state_fn, state_result, lines, state_line)
        return None


# Step 8: the tables hold exactly the proven records.
def _csv_table(proven: _Parsed, report: BundleReport) -> None:
    path = "records/records.csv"
    if path in proven.files:
        expected = records_csv(proven.rows, proven.leaves)
        _compare(report, "tables", path, expected, proven.files[path])
    else:
        report.fail("tables", "file is missing", key=path)


def _parquet_table(proven: _Parsed, report: BundleReport) -> None:
    path, files, rows = "records/records.parquet", proven.files, proven.rows
    if path not in files:
        report.fail("tables", "file is missing", key=path)
        return
    try:
        table = pq.read_table(pa.BufferReader(files[path]))
        problem = _schema_difference(table.schema)
    except (pa.ArrowException, OSError) as exc:
        problem = f"not a readable records table ({exc})"
    if problem is not None:
        report.fail("tables", problem, key=path)
        return
    if "chain_hash" in table.column_names:
        report.warnings.append(CHAIN_HASH_WARNING)
    if table.num_rows != len(rows):
        report.fail(
            "tables", f"holds {table.num_rows} rows, the bundle {len(rows)} records", key=path
        )
        return
    differing = [
        index
        for name in _differing_columns(table, files[_RECORDS], proven.leaves)
        if (index := _first_difference(table, name, rows, proven.leaves)) is not None
    ]
    if differing:
        row = rows[min(differing)]
        report.fail(
            "tables",
            f"row {min(differing) + 1} differs from the proven record",
            key=path,
            chain=row["chain_id"],
            seq=row["seq"],
        )


# records.jsonl parsed by Arrow into the record schema's types, times as integer milliseconds.
_JSONL_SCHEMA = pa.schema(
    [
        field.with_type(pa.int64()) if pa.types.is_timestamp(field.type) else field
        for field in map(RECORD_SCHEMA.field, SEALED_ORDER)
    ]
)


def _differing_columns(table: pa.Table, jsonl: bytes, leaves: Sequence[bytes]) -> list[str]:
    """Columns of the Parquet table that differ from the proven records, compared in Arrow.

    The proven ``records.jsonl`` (each line already parsed strictly and proven) is read again by
    Arrow's JSON reader into the record schema's types, so two columns are equal exactly when
    their values, and so their canonical bytes, are. Should Arrow refuse the file, every column
    is reported for the row-by-row comparison to settle.
    """
    try:
        expected = pa_json.read_json(
            pa.BufferReader(jsonl),
            read_options=pa_json.ReadOptions(block_size=4 << 20),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_JSONL_SCHEMA, unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowException:
        return [*SEALED_ORDER, "leaf_hash"]
    differing = []
    for name in SEALED_ORDER:
        stored = table.column(name)
        if pa.types.is_timestamp(stored.type):
            stored = stored.cast(pa.int64())
        if not stored.equals(expected.column(name)):
            differing.append(name)
    if not table.column("leaf_hash").equals(
        pa.chunked_array([pa.array(leaves, type=pa.binary(32))])
    ):
        differing.append("leaf_hash")
    return differing


def _first_difference(
    table: pa.Table, name: str, rows: Sequence[Row], leaves: Sequence[bytes]
) -> int | None:
    expected = leaves if name == "leaf_hash" else [row[name] for row in rows]
    stored = _sealed_column(table, name)
    return next((i for i, (a, b) in enumerate(zip(stored, expected, strict=True)) if a != b), None)


def _schema_difference(schema: pa.Schema) -> str | None:
    # Bundles from earlier versions also carry chain_hash (see CHAIN_HASH_WARNING).
    extra = sorted(set(schema.names) - {*SEALED_ORDER, "leaf_hash", "chain_hash"})
    if extra:
        return f"not a records table: column(s) {', '.join(extra)} hold nothing a record proves"
    for name in (*SEALED_ORDER, "leaf_hash"):
        wanted = RECORD_SCHEMA.field(name).type
        index = schema.get_field_index(name)
        if index < 0:
            return f"not a records table: column {name} is missing"
        if schema.field(index).type != wanted:
            return f"column {name} has type {schema.field(index).type}, not {wanted}"
    return None


def _sealed_column(table: pa.Table, name: str) -> list[Any]:
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values


# Step 9: each transcript is what the proven records render to.
def _transcripts(proven: _Parsed, report: BundleReport) -> None:
    description = proven.description
    try:
        expected = render_transcripts(
            proven.rows,
            proven.leaves,
            zone_name=str(description.get("time_zone")),
            matter=str(description.get("matter")),
            groups=proven.groups,
        )
    except ConfigError as exc:
        report.fail("transcripts", f"cannot render: {exc}", key="BUNDLE.json")
        return
    _compare_set(proven.files, expected, "transcripts/", "transcripts", report)


# Step 10: each RSMF file is what the proven records render to.
def _rsmf(proven: _Parsed, report: BundleReport) -> None:
    files = proven.files
    expected = render_rsmf_parts(proven.rows, proven.leaves, groups=proven.groups)
    for path in sorted(set(expected) | {p for p in files if p.startswith("rsmf/")}):
        if path not in files:
            report.fail("rsmf", "expected RSMF file is missing", key=path)
        elif path not in expected:
            report.fail("rsmf", "RSMF file renders from no record of the bundle", key=path)
        else:
            problem = _rsmf_difference(files[path], expected[path])
            if problem is not None:
                report.fail("rsmf", problem, key=path)


def _rsmf_parts(eml: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The message without its zip's base64, and the zip's members."""
    marker = b'filename="rsmf.zip"\r\n\r\n'
    start = eml.index(marker) + len(marker)
    end = eml.index(b"\r\n\r\n--" + BOUNDARY.encode(), start)
    payload = base64.b64decode(eml[start:end].replace(b"\r\n", b""), validate=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return eml[:start] + eml[end:], members


def _rsmf_difference(actual: bytes, expected: RsmfParts) -> str | None:
    try:
        text, members = _rsmf_parts(actual)
    except (ValueError, binascii.Error, zipfile.BadZipFile) as exc:
        return f"not a readable RSMF message ({exc})"
    if text != expected.before + expected.after:
        return "headers or extracted text differ from the proven records"
    if members != expected.members:
        names = sorted(
            n
            for n in set(members) | set(expected.members)
            if members.get(n) != expected.members.get(n)
        )
        return f"rsmf.zip differs from the proven records in {', '.join(names)}"
    return None


def _compare_set(
    files: Mapping[str, bytes],
    expected: Mapping[str, bytes],
    prefix: str,
    step: str,
    report: BundleReport,
) -> None:
    for path in sorted(set(expected) | {p for p in files if p.startswith(prefix)}):
        if path not in files:
            report.fail(step, "expected file is missing", key=path)
        elif path not in expected:
            report.fail(step, "file renders from no record of the bundle", key=path)
        else:
            _compare(report, step, path, expected[path], files[path])


def _compare(report: BundleReport, step: str, path: str, expected: bytes, actual: bytes) -> None:
    if expected == actual:
        return
    mine, theirs = expected.split(b"\n"), actual.split(b"\n")
    number = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False), start=1) if a != b),
        min(len(mine), len(theirs)) + 1,
    )
    report.fail(step, f"line {number} differs from what the proven records render to", key=path)
