"""What a verification found: per-chain reports, failures, warnings, and the pinned head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coexarchive.anchor.timestamps import TimestampSummary
from coexarchive.anchor.witness import WitnessSummary
from coexarchive.archive_head import HeadSummary
from coexarchive.errors import ArchiveVerificationError as ArchiveVerificationError
from coexarchive.errors import Failure, FormatError
from coexarchive.seal.checkpoint import Checkpoint, open_checkpoint
from coexarchive.seal.keys import TrustStore

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
    "tail",
    "archive-head",
    "media",
)
# Checks of the outside anchors, run (and listed) only when a TSA file or witness file is given.
ANCHOR_STEPS = ("timestamp", "witness")


@dataclass
class ChainReport:
    chain_id: str
    segments: int = 0
    records: int = 0
    records_checked: int = 0
    records_disposed: int = 0  # records whose content a signed disposition deleted
    tree_size: int = 0
    root_hash: str = ""
    checkpoints: int = 0
    objects_checked: int = 0
    media_checked: int = 0  # stored attachments re-hashed (step 12)
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
    timestamps: TimestampSummary | None = None
    witnesses: WitnessSummary | None = None

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
            "timestamps": self.timestamps.to_json() if self.timestamps else None,
            "witnesses": self.witnesses.to_json() if self.witnesses else None,
        }


@dataclass(frozen=True)
class Head:
    """A checkpoint held outside the writer's reach, pinned by the verifier."""

    chain_id: str
    checkpoint: Checkpoint


def parse_head(note: bytes, trust: TrustStore) -> Head:
    """A pinned head: a signed checkpoint whose origin names its chain."""
    checkpoint = open_checkpoint(note, trust)
    marker = "/coexarchive/v1/chain/"
    if marker not in checkpoint.origin:
        raise FormatError(f"head origin {checkpoint.origin!r} is not a coexarchive chain")
    return Head(chain_id=checkpoint.origin.rsplit(marker, 1)[1], checkpoint=checkpoint)
