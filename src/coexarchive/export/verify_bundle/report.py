"""What verifying a bundle found: per record, per step, and which keys decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coexarchive.errors import BundleVerificationError, Failure

__all__ = [
    "BUNDLE_KEYS_WARNING",
    "CHAIN_HASH_WARNING",
    "RECORDS",
    "STEPS",
    "BundleReport",
    "BundleVerificationError",
    "RecordResult",
    "record_failure",
]

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
    "anchors",
    "media",
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
RECORDS = "records/records.jsonl"


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
    """Every check's outcome.

    ``ok``: every check held. ``trusted``: the keys that decided came from the caller (a trust
    file), not from the bundle. ``result`` combines them: ``OK`` only when both hold,
    ``UNTRUSTED`` when every check held against the bundle's own keys, else ``FAILED``.
    ``key_ids`` are the ``name+keyid`` of the keys whose signatures the checkpoints carried.
    ``format`` is the bundle format whose rendering rules steps 8 to 10 applied.
    """

    records: list[RecordResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chains: list[dict[str, Any]] = field(default_factory=list)
    trust_source: str = ""
    trusted: bool = False
    key_ids: list[str] = field(default_factory=list)
    matter: str | None = None
    format: str | None = None  # BUNDLE.json's, once step 1 knows it
    steps: tuple[str, ...] = STEPS
    # What the outside anchors proved (step 11): the head, times per TSA, cosigning witnesses.
    anchors: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def result(self) -> str:
        if not self.ok:
            return "FAILED"
        return "OK" if self.trusted else "UNTRUSTED"

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
            "result": self.result,
            "ok": self.ok,
            "trusted": self.trusted,
            "matter": self.matter,
            "format": self.format,
            "steps": list(self.steps),
            "trust": self.trust_source,
            "key_ids": self.key_ids,
            "warnings": self.warnings,
            "chains": self.chains,
            "records_verified": sum(1 for r in self.records if r.ok),
            "records_failed": sum(1 for r in self.records if not r.ok),
            "failures": [f.__dict__ for f in self.failures],
            "anchors": self.anchors,
        }


def record_failure(
    report: BundleReport, result: RecordResult, step: str, message: str, key: str
) -> None:
    """A failure of one record: in its result and in the report."""
    result.problems.append(message)
    report.fail(step, message, key=key, chain=result.chain_id, seq=result.seq)
