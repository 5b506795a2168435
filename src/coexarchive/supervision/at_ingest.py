"""Scanning messages as ingest seals them, without giving the ingest job the audit key.

The ``reviews`` chain is sealed with the audit key, which the ingest job does not hold (and
must not: DESIGN §8, principle 2, a signer signs only what it derived itself). So ingest seals
what it finds in the chain of the message itself, with the ingest key, in the same append as the
message: the hits are derived from authenticated raw evidence in the same run, just as the
consent events it derives from opt-out keywords are.

1. The active policies are the newest sealed version of each policy name in the ``policies``
   chain, read only after that chain verified against the trust file (every segment, the chain
   hashes and a checkpoint signed by a trusted key) and only up to its verified size.
2. Each message of the batch (inbound, echoes, Cloud API sends, history, edits; text, captions,
   document names) is matched with every active policy, its flags being those enrichment just
   gave it; each (policy version, rule, message) is one ``hit`` record, whose id is the one a
   ``policy rescan`` would give it, so a hit is found once and decided once wherever it is sealed.
3. One ``review`` record (``scan``) states what was scanned with which versions; when the
   ``policies`` chain exists but does not verify, nothing is scanned and a ``review`` record
   (``scan_gap``) names the gap and how many messages it leaves unscanned, instead of silence.
   An archive with no ``policies`` chain has no supervision to do: nothing is added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from coexarchive.errors import CoexArchiveError
from coexarchive.records import Kind, Origin, Record
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import list_manifests
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.hit_sealing import seal_hit_detail
from coexarchive.supervision.library import SealedPolicy, parse_sealed
from coexarchive.supervision.matcher import Match, Matcher
from coexarchive.supervision.register import (
    POLICIES_CHAIN,
    detail_text,
    internal_record,
    read_chain,
)
from coexarchive.supervision.scan import iso_ms, message_fields_of
from coexarchive.verify import ArchiveVerificationError, verify_archive

__all__ = [
    "FOUND_BY_INGEST",
    "SCAN_GAP",
    "ActivePolicies",
    "IngestScan",
    "load_active_policies",
    "scan_batch",
]

FOUND_BY_INGEST: Final = "ingest"
SCAN_GAP: Final = "scan_gap"
_MESSAGE_KINDS: Final = frozenset(
    {
        Kind.MESSAGE.value,
        Kind.ECHO.value,
        Kind.OUTBOUND.value,
        Kind.HISTORY_MESSAGE.value,
        Kind.MESSAGE_EDIT.value,
    }
)
log = logging.getLogger(__name__)


@dataclass
class ActivePolicies:
    """The policies ingest scans with, or why it cannot scan (``gap``)."""

    policies: tuple[SealedPolicy, ...] = ()
    verified_size: int = 0  # the size of the policies chain that verified
    gap: str | None = None
    _matchers: list[Matcher] = field(default_factory=list, repr=False)

    @property
    def labels(self) -> list[str]:
        return [sealed.policy.label for sealed in self.policies]

    def matchers(self) -> list[Matcher]:
        if len(self._matchers) != len(self.policies):
            self._matchers = [Matcher(sealed.policy) for sealed in self.policies]
        return self._matchers


def _chain_exists(store: ObjectStore, chain_id: str) -> bool:
    if list_manifests(store, chain_id):
        return True
    prefix = layout.checkpoint_prefix(chain_id)
    return next(iter(store.list(prefix)), None) is not None


def load_active_policies(
    store: ObjectStore, trust: TrustStore, *, archive_name: str
) -> ActivePolicies:
    """The newest version of each sealed policy, from a ``policies`` chain that verified.

    Fails closed: any doubt about the chain gives no policies and a ``gap`` saying why.
    """
    if not _chain_exists(store, POLICIES_CHAIN):
        return ActivePolicies()
    # Step 1: the whole chain verifies against the trust file (not merely "continues the chain").
    try:
        report = verify_archive(store, trust, chains=[POLICIES_CHAIN], archive_name=archive_name)
    except ArchiveVerificationError as exc:
        failures = exc.report.failures
        first = failures[0] if failures else None
        reason = f"{first.step}: {first.message}" if first is not None else str(exc)
        return ActivePolicies(
            gap=f"policies chain does not verify against the trust file ({reason})"
        )
    except CoexArchiveError as exc:
        return ActivePolicies(gap=f"policies chain could not be verified ({exc})")
    size = next((c.tree_size for c in report.chains if c.chain_id == POLICIES_CHAIN), None) or 0
    # Step 2: read it back, each row checked against its leaf hash, only up to the verified size
    # (a segment appended since then is not trusted by this run).
    try:
        rows = [row for row in read_chain(store, POLICIES_CHAIN) if row.seq < size]
        sealed = [parse_sealed(row) for row in rows if row.kind == Kind.POLICY]
    except CoexArchiveError as exc:
        return ActivePolicies(gap=f"policies chain could not be read ({exc})")
    newest: dict[str, SealedPolicy] = {}
    for policy in sealed:
        known = newest.get(policy.policy.name)
        if known is None or policy.policy.version > known.policy.version:
            newest[policy.policy.name] = policy
    return ActivePolicies(tuple(newest[name] for name in sorted(newest)), verified_size=size)


@dataclass
class IngestScan:
    """What scanning one chain's batch added: hits, and one ``scan`` or ``scan_gap`` record."""

    records: list[Record] = field(default_factory=list)
    scanned: int = 0
    hits: int = 0
    unscanned: int = 0
    gap: str | None = None


def _hit(
    sealed: SealedPolicy,
    match: Match,
    message: Record,
    found_at: int,
    personal: PersonalSealer | None,
) -> Record:
    policy = sealed.policy
    detail: dict[str, Any] = {
        "policy": policy.name,
        "version": policy.version,
        "policy_seq": sealed.seq,
        "rule": match.rule,
        "rule_type": match.rule_type,
        "chain": message.chain_id,
        "record_id": message.record_id,
        "message_kind": message.kind,
        "message_time": _iso(message.event_time),
        "customer": message.customer_id,
        "spans": [span.to_json() for span in match.spans],
        "flags": list(match.flags),
        "found_by": FOUND_BY_INGEST,
    }
    hit = internal_record(
        message.chain_id,
        Kind.HIT.value,
        ("hit", policy.name, policy.version, match.rule, message.record_id),
        detail,
        now_ms=found_at,
        origin=Origin.SYSTEM,
        ref_record_id=message.record_id,
        status=match.rule_type,
    )
    if personal is None or not message.customer_id:
        return hit
    # The message is sealed as version 2 in this same append: what the hit quotes of it goes
    # under the same customer's data key (supervision.hit_sealing).
    key = personal.data_key(message.customer_id)
    sealed_detail = seal_hit_detail(detail, key, hit.chain_id, hit.record_id)
    return dataclasses.replace(hit, detail=detail_text(sealed_detail))


def _iso(ms: int) -> str:
    return iso_ms(ms) or ""


def _seen(record: Record) -> int:
    return record.received_time if record.received_time is not None else record.event_time


def scan_batch(
    chain_id: str,
    records: Sequence[Record],
    active: ActivePolicies,
    *,
    personal: PersonalSealer | None = None,
) -> IngestScan:
    """Hits of ``records`` (about to be sealed on ``chain_id``) and the record of the scan.

    With ``personal`` (the chain's writer seals personal content), each hit's customer and
    matched words are sealed under the customer's data key.
    """
    messages = [r for r in records if r.kind in _MESSAGE_KINDS]
    outcome = IngestScan()
    if not messages or (not active.policies and active.gap is None):
        return outcome
    at = max(map(_seen, messages))
    ids = hashlib.sha256("\n".join(sorted(r.record_id for r in messages)).encode()).hexdigest()
    if active.gap is not None:
        outcome.unscanned, outcome.gap = len(messages), active.gap
        detail: dict[str, Any] = {
            "action": SCAN_GAP,
            "found_by": FOUND_BY_INGEST,
            "reason": active.gap,
            "unscanned": len(messages),
            "messages_sha256": ids,
            "first_message_time": _iso(min(r.event_time for r in messages)),
            "last_message_time": _iso(max(r.event_time for r in messages)),
        }
        outcome.records.append(
            internal_record(
                chain_id,
                Kind.REVIEW.value,
                (SCAN_GAP, FOUND_BY_INGEST, chain_id, ids),
                detail,
                now_ms=at,
                origin=Origin.SYSTEM,
                status=SCAN_GAP,
            )
        )
        return outcome
    counts: dict[str, dict[str, int]] = {}
    for sealed, matcher in zip(active.policies, active.matchers(), strict=True):
        tally = counts.setdefault(sealed.policy.label, {"hits": 0, "sampled": 0})
        for message in messages:
            for match in matcher.match(
                record_id=message.record_id,
                chain_id=chain_id,
                fields=message_fields_of(message.text, message.detail),
                flags=message.flags,
            ):
                tally["hits"] += 1
                tally["sampled"] += match.rule_type == "sample"
                outcome.records.append(_hit(sealed, match, message, _seen(message), personal))
    outcome.scanned = len(messages)
    outcome.hits = len(outcome.records)
    summary = {
        "action": "scan",
        "found_by": FOUND_BY_INGEST,
        "policies": {
            s.policy.label: {"policy_seq": s.seq, **counts[s.policy.label]} for s in active.policies
        },
        "policies_size": active.verified_size,
        "scanned": len(messages),
        "hits": outcome.hits,
        "messages_sha256": ids,
    }
    outcome.records.append(
        internal_record(
            chain_id,
            Kind.REVIEW.value,
            ("scan", FOUND_BY_INGEST, chain_id, ids, *active.labels),
            summary,
            now_ms=at,
            origin=Origin.SYSTEM,
            status="scan",
        )
    )
    return outcome
