"""The review queue, folded from the ``reviews`` chain, and the sealed actions that change it.

Hits come from two places: ``policy rescan`` seals them in ``reviews``, ingest seals them in the
message's own chain (``supervision.at_ingest``). A hit has one id wherever it is sealed, so it is
one entry in the queue and is decided once; decisions are always sealed in ``reviews``.

A hit is *open* until a reviewer decides it (``no_action``, ``escalate`` or ``closed``); it can be
decided once, and only ``reopen`` (its own sealed event) makes it open again. ``assign`` names who
should review it. Every action is checked against the chain it extends (``Sealer.seal``), so two
reviewers deciding the same hit at once cannot both succeed.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from coexarchive.errors import ConfigError, FormatError
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind, Origin, Record
from coexarchive.seal.personal import ERASED, DataKey, KeyLookup
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.hit_sealing import SEALED, open_hit_detail, open_note, seal_note
from coexarchive.supervision.register import (
    REVIEWS_CHAIN,
    ChainRow,
    Sealer,
    detail_text,
    event_id,
    internal_record,
    read_chain,
)
from coexarchive.supervision.scan import IngestRow, ingest_rows

__all__ = [
    "DISPOSITIONS",
    "REPORTS",
    "HitState",
    "Queue",
    "act",
    "context_window",
    "fold",
    "report",
    "select",
    "sources",
]

DISPOSITIONS: Final = ("no_action", "escalate", "closed")
_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
_MIN_ID: Final = 6


@dataclass
class HitState:
    """A hit and what reviewers did with it."""

    id: str
    seq: int
    found_at: int
    detail: Mapping[str, Any]
    assignee: str | None = None
    disposition: str | None = None
    decided_by: str | None = None
    decided_at: int | None = None
    note: str | None = None
    first_decision_at: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    sealed_in: str = REVIEWS_CHAIN  # the chain holding the hit record (its seq is in that chain)

    @property
    def open(self) -> bool:
        return self.disposition is None

    @property
    def policy(self) -> str:
        return f"{self.detail['policy']}@{self.detail['version']}"

    @property
    def rule(self) -> str:
        return str(self.detail["rule"])

    @property
    def chain(self) -> str:
        return str(self.detail["chain"])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "sealed_in": self.sealed_in,
            "found_by": self.detail.get("found_by"),
            "found_at": self.found_at,
            "policy": self.policy,
            "rule": self.rule,
            "rule_type": self.detail.get("rule_type"),
            "chain": self.chain,
            "message_seq": self.detail.get("seq"),
            "message_record_id": self.detail.get("record_id"),
            "message_time": self.detail.get("message_time"),
            "customer": self.detail.get("customer"),
            "spans": self.detail.get("spans", []),
            "flags": self.detail.get("flags", []),
            "state": "open" if self.open else "decided",
            "assignee": self.assignee,
            "disposition": self.disposition,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "note": self.note,
            "history": self.history,
        }


@dataclass
class Queue:
    hits: dict[str, HitState] = field(default_factory=dict)
    scans: list[ChainRow] = field(default_factory=list)
    ingest_scans: list[IngestRow] = field(default_factory=list)
    gaps: list[IngestRow] = field(default_factory=list)  # messages ingest could not scan

    def find(self, prefix: str) -> HitState:
        """The hit whose id is ``prefix`` or starts with it (at least six hex digits)."""
        prefix = prefix.strip().lower()
        if len(prefix) < _MIN_ID:
            raise ConfigError(f"hit id {prefix!r} is too short: give at least {_MIN_ID} digits")
        if prefix in self.hits:
            return self.hits[prefix]
        found = [hit for key, hit in self.hits.items() if key.startswith(prefix)]
        if not found:
            raise ConfigError(f"no hit {prefix!r} in the review queue (`review list` shows them)")
        if len(found) > 1:
            raise ConfigError(f"hit id {prefix!r} is ambiguous ({len(found)} hits): give more")
        return found[0]


def sources(store: ObjectStore) -> tuple[list[ChainRow], list[IngestRow]]:
    """Where hits live: the ``reviews`` chain (rescans, decisions) and the business chains (ingest).

    Every reader of the queue (the CLI and the console) folds both, so a hit sealed at ingest is
    listed, shown and decided wherever the queue is worked.
    """
    return read_chain(store, REVIEWS_CHAIN), ingest_rows(ArchiveCatalog(store))


def fold(
    rows: Iterable[ChainRow],
    at_ingest: Iterable[IngestRow] = (),
    *,
    keys: KeyLookup | None = None,
) -> Queue:
    """The queue as the chain's records (in ``seq`` order) leave it, with ingest's hits first.

    What hits and notes quote of a customer is opened with ``keys`` (``[erased]`` after an
    erasure, ``[sealed]`` without keys; see ``supervision.hit_sealing``).
    """
    queue = Queue()
    for found in sorted(at_ingest, key=lambda f: (f.row.event_time, f.chain_id, f.row.seq)):
        row = found.row
        if row.kind == Kind.HIT:
            detail = open_hit_detail(row.detail, found.chain_id, row.record_id, keys)
            queue.hits.setdefault(
                row.record_id,
                HitState(row.record_id, row.seq, row.event_time, detail, sealed_in=found.chain_id),
            )
        elif row.detail.get("action") == "scan_gap":
            queue.gaps.append(found)
        elif row.detail.get("action") == "scan":
            queue.ingest_scans.append(found)
    for row in rows:
        if row.kind == Kind.HIT:
            detail = open_hit_detail(row.detail, REVIEWS_CHAIN, row.record_id, keys)
            queue.hits.setdefault(
                row.record_id, HitState(row.record_id, row.seq, row.event_time, detail)
            )
        elif row.kind == Kind.REVIEW:
            _apply(queue, row, keys)
    return queue


def _apply(queue: Queue, row: ChainRow, keys: KeyLookup | None) -> None:
    detail: Mapping[str, Any] = row.detail
    if "note" in detail:
        detail = {**detail, "note": open_note(detail["note"], REVIEWS_CHAIN, row.record_id, keys)}
    action = detail.get("action")
    if action == "scan":
        queue.scans.append(row)
        return
    hit = queue.hits.get(str(row.ref_record_id))
    if hit is None:
        raise FormatError(f"reviews seq {row.seq}: {action} of unknown hit {row.ref_record_id}")
    who = str(detail.get("who"))
    hit.history.append({"seq": row.seq, "at": row.event_time, **detail})
    if action == "assign":
        hit.assignee = str(detail.get("to"))
    elif action == "decide" and hit.open:
        hit.disposition = str(detail.get("disposition"))
        hit.decided_by, hit.decided_at = who, row.event_time
        hit.note = detail.get("note")
        if hit.first_decision_at is None:
            hit.first_decision_at = row.event_time
    elif action == "reopen":
        hit.disposition = hit.decided_by = hit.decided_at = None
        hit.note = detail.get("note")


def act(
    sealer: Sealer,
    hit_id: str,
    action: str,
    *,
    who: str,
    now_ms: int,
    disposition: str | None = None,
    note: str | None = None,
    to: str | None = None,
    at_ingest: Sequence[IngestRow] = (),
    keys: KeyLookup | None = None,
    note_key: Callable[[str], DataKey | None] | None = None,
) -> tuple[HitState, int]:
    """Seal ``assign``, ``decide`` or ``reopen`` of a hit; returns the hit after it and the seq.

    A note may quote the customer: when ``note_key(customer)`` gives the hit's customer's live
    data key, the note is sealed under it, as the hit's own quote is.
    """
    if action == "decide" and disposition not in DISPOSITIONS:
        raise ConfigError(f"--disposition must be one of {', '.join(DISPOSITIONS)}")
    if action == "assign" and not (to and to.strip()):
        raise ConfigError("review assign needs --to USER")
    if action in ("decide", "reopen") and not (note and note.strip()):
        raise ConfigError(f"review {action} needs --note: the reason is part of the record")
    found: list[HitState] = []

    def build(rows: list[ChainRow]) -> list[Record]:
        hit = fold(rows, at_ingest, keys=keys).find(hit_id)
        found[:] = [hit]
        if action == "decide" and not hit.open:
            raise ConfigError(
                f"hit {hit.id[:12]} was already decided ({hit.disposition}) by {hit.decided_by}; "
                "`review reopen` it first (that is sealed too)"
            )
        if action == "reopen" and hit.open:
            raise ConfigError(f"hit {hit.id[:12]} is open: nothing to reopen")
        detail: dict[str, Any] = {"action": action, "hit": hit.id, "who": who}
        if disposition is not None:
            detail["disposition"] = disposition
        if to is not None:
            detail["to"] = to.strip()
        customer = hit.detail.get("customer")
        key = None
        if note is not None and note_key is not None and customer not in (None, ERASED, SEALED):
            key = note_key(str(customer))
        # The id digests the detail without a note that is to be sealed (the envelope is
        # keyed by the id, and the id must not digest the plaintext).
        if note is not None and key is None:
            detail["note"] = note
        record = internal_record(
            REVIEWS_CHAIN,
            Kind.REVIEW.value,
            event_id("review", action, hit.id, who, now_ms, detail=detail),
            detail,
            now_ms=now_ms,
            origin=Origin.AUDITOR,
            ref_record_id=hit.id,
            status=action,
        )
        if note is not None and key is not None:
            detail["note"] = seal_note(note, key, REVIEWS_CHAIN, record.record_id)
            record = dataclasses.replace(record, detail=detail_text(detail))
        return [record]

    _, manifest = sealer.seal(REVIEWS_CHAIN, build)
    assert manifest is not None
    hit = found[0]
    return hit, manifest.last_seq


def select(
    queue: Queue,
    *,
    policy: str | None = None,
    chain: str | None = None,
    assignee: str | None = None,
    state: str = "open",
    older_than_ms: int | None = None,
    now_ms: int,
) -> list[HitState]:
    """The hits matching every filter given, oldest first."""
    chosen = []
    for hit in queue.hits.values():
        if state != "all" and (state == "open") != hit.open:
            continue
        if policy is not None and policy not in (hit.policy, str(hit.detail["policy"])):
            continue
        if chain is not None and hit.chain != chain:
            continue
        if assignee is not None and hit.assignee != assignee:
            continue
        if older_than_ms is not None and now_ms - hit.found_at < older_than_ms:
            continue
        chosen.append(hit)
    return sorted(chosen, key=lambda h: (h.found_at, h.seq))


# --- reports -------------------------------------------------------------------------------------

_AGES: Final = (("under_1d", _DAY_MS), ("1d_7d", 7 * _DAY_MS), ("7d_30d", 30 * _DAY_MS))


def _backlog(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for hit in queue.hits.values():
        if not hit.open:
            continue
        row = rows.setdefault(
            (hit.policy, hit.rule),
            {"policy": hit.policy, "rule": hit.rule, **{n: 0 for n, _ in _AGES}, "over_30d": 0},
        )
        age = now_ms - hit.found_at
        bucket = next((name for name, limit in _AGES if age < limit), "over_30d")
        row[bucket] += 1
    for row in rows.values():
        row["open"] = sum(row[n] for n, _ in _AGES) + row["over_30d"]
    return [rows[key] for key in sorted(rows)]


def _time_to_review(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    waits: dict[str, list[int]] = {}
    pending: dict[str, int] = {}
    for hit in queue.hits.values():
        if hit.first_decision_at is None:
            pending[hit.policy] = pending.get(hit.policy, 0) + 1
        else:
            waits.setdefault(hit.policy, []).append(hit.first_decision_at - hit.found_at)
    out = []
    for policy in sorted(set(waits) | set(pending)):
        found = waits.get(policy, [])
        out.append(
            {
                "policy": policy,
                "reviewed": len(found),
                "never_reviewed": pending.get(policy, 0),
                "median_hours": _hours(statistics.median(found)) if found else None,
                "max_hours": _hours(max(found)) if found else None,
            }
        )
    return out


def _hours(ms: float) -> str:
    return f"{ms / _HOUR_MS:.1f}"


def _escalations(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "id": hit.id,
            "policy": hit.policy,
            "rule": hit.rule,
            "chain": hit.chain,
            "message_seq": hit.detail.get("seq"),
            "decided_by": hit.decided_by,
            "decided_at": hit.decided_at,
            "note": hit.note,
        }
        for hit in sorted(queue.hits.values(), key=lambda h: h.seq)
        if hit.disposition == "escalate"
    ]


def _activity(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(policy: str, reviewer: str) -> dict[str, Any]:
        blank = {"hits": 0, "decisions": 0, **dict.fromkeys(DISPOSITIONS, 0), "reopened": 0}
        return rows.setdefault(
            (policy, reviewer), {"policy": policy, "reviewer": reviewer, **blank}
        )

    for hit in queue.hits.values():
        row(hit.policy, "")["hits"] += 1
        for event in hit.history:
            if event.get("action") == "decide":
                entry = row(hit.policy, str(event["who"]))
                entry["decisions"] += 1
                entry[str(event["disposition"])] += 1
            elif event.get("action") == "reopen":
                row(hit.policy, str(event["who"]))["reopened"] += 1
    return [rows[key] for key in sorted(rows)]


def _sample_coverage(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    scanned: dict[tuple[str, str], int] = {}
    for scan in queue.scans:  # the latest scan of each policy version and chain
        label = f"{scan.detail['policy']}@{scan.detail['version']}"
        for chain, counts in scan.detail.get("chains", {}).items():
            scanned[(label, chain)] = int(counts["scanned"])
    at_ingest: dict[tuple[str, str], int] = {}
    for found in queue.ingest_scans:  # every message ingest scanned, per policy version
        for label in found.row.detail.get("policies", {}):
            key = (str(label), found.chain_id)
            at_ingest[key] = at_ingest.get(key, 0) + int(found.row.detail.get("scanned", 0))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for hit in queue.hits.values():
        if hit.detail.get("rule_type") != "sample":
            continue
        key = (hit.policy, hit.chain)
        entry = rows.setdefault(
            key, {"policy": key[0], "chain": key[1], "sampled": 0, "reviewed": 0}
        )
        entry["sampled"] += 1
        entry["reviewed"] += hit.first_decision_at is not None
    for key, entry in rows.items():
        entry["scanned_last"] = scanned.get(key)
        entry["scanned_at_ingest"] = at_ingest.get(key, 0)
        entry["reviewed_share"] = f"{entry['reviewed'] / entry['sampled']:.2f}"
    return [rows[key] for key in sorted(rows)]


def _gaps(queue: Queue, now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "chain": found.chain_id,
            "seq": found.row.seq,
            "sealed_at": found.row.event_time,
            "unscanned": found.row.detail.get("unscanned"),
            "first_message_time": found.row.detail.get("first_message_time"),
            "last_message_time": found.row.detail.get("last_message_time"),
            "reason": found.row.detail.get("reason"),
        }
        for found in queue.gaps
    ]


REPORTS: Final = {
    "backlog": ("open hits by policy, rule and age (since the hit was found)", _backlog),
    "time-to-review": ("time from a hit to its first decision, per policy", _time_to_review),
    "escalations": ("hits whose current disposition is escalate", _escalations),
    "activity": ("hits per policy; decisions and re-openings per policy and reviewer", _activity),
    "sample-coverage": (
        "sampled hits per policy and chain, how many were reviewed, messages in the last scan",
        _sample_coverage,
    ),
    "gaps": (
        "messages ingest sealed but could not scan (policies unverified): rescan their window",
        _gaps,
    ),
}


def report(name: str, queue: Queue, *, now_ms: int) -> list[dict[str, Any]]:
    if name not in REPORTS:
        raise ConfigError(f"no review report {name!r} (reports: {', '.join(REPORTS)})")
    return REPORTS[name][1](queue, now_ms)


def context_window(rows: Sequence[Any], index: int, around: int) -> Sequence[Any]:
    return rows[max(0, index - around) : index + around + 1]
