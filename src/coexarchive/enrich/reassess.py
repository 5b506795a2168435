"""Re-assessment: recompute sealed records' flags with everything the archive knows now.

Sealed records never change. Where today's flags differ from a record's current flags (its sealed
flags, or those of its latest assessment), an ``assessment`` record is sealed that references it
(``ref_record_id``), carries the new flags and as-of columns, and explains old against new in its
``detail``. Its id derives from the record, the assessment it supersedes and the new flags, so
running reassessment again seals nothing new.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from coexarchive.enrich.chain import knowledge_of
from coexarchive.enrich.context import load_context, read_records
from coexarchive.enrich.flags import EnrichConfig, assess, enrichment_detail
from coexarchive.records import Direction, Kind, Origin, Record, sort_flags, stable_id
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.personal import KeyLookup

__all__ = ["ASSESSED_KINDS", "ReassessResult", "assessment_records", "current_flags", "reassess"]

ASSESSED_KINDS: Final = frozenset({Kind.OUTBOUND.value, Kind.STATUS.value})
_ASSESSMENT: Final = Kind.ASSESSMENT.value


@dataclass
class ReassessResult:
    chain_id: str
    examined: int = 0
    changed: list[Record] = field(default_factory=list)  # new assessment records

    def counts(self) -> dict[str, int]:
        """Flags added and removed by this reassessment, by flag name."""
        counts: dict[str, int] = {}
        for record in self.changed:
            detail = orjson.loads(record.detail)
            for flag in detail["added"]:
                counts[f"+{flag}"] = counts.get(f"+{flag}", 0) + 1
            for flag in detail["removed"]:
                counts[f"-{flag}"] = counts.get(f"-{flag}", 0) + 1
        return dict(sorted(counts.items()))


def current_flags(sealed: Iterable[Record]) -> dict[str, tuple[str, ...]]:
    """Each record's flags now: its own, overridden by its latest assessment (records in ``seq``
    order). Keyed by the record id of the original."""
    flags: dict[str, tuple[str, ...]] = {}
    for record in sealed:
        if record.kind == _ASSESSMENT and record.ref_record_id is not None:
            flags[record.ref_record_id] = record.flags
        elif record.record_id not in flags:
            flags[record.record_id] = record.flags
    return flags


def assessment_records(
    originals: Sequence[Record],
    assessments: Sequence[Record],
    recomputed: dict[str, Any],
    *,
    now_ms: int,
) -> list[Record]:
    """Assessment records for originals whose recomputed flags differ from their current flags.

    ``recomputed`` maps a record id to its new :class:`~coexarchive.enrich.flags.Assessment`.
    """
    latest: dict[str, Record] = {}
    for assessment in assessments:  # in seq order: the last one wins
        if assessment.ref_record_id is not None:
            latest[assessment.ref_record_id] = assessment
    out = []
    for original in originals:
        new = recomputed.get(original.record_id)
        if new is None:
            continue
        previous = latest.get(original.record_id)
        old_flags = previous.flags if previous is not None else original.flags
        new_flags = sort_flags(new.flags)
        if new_flags == tuple(old_flags):
            continue
        out.append(_assessment(original, previous, old_flags, new_flags, new, now_ms))
    return out


def _assessment(
    original: Record,
    previous: Record | None,
    old_flags: Sequence[str],
    new_flags: tuple[str, ...],
    new: Any,
    now_ms: int,
) -> Record:
    previous_id = previous.record_id if previous is not None else None
    detail = {
        "v": 1,
        "field": "assessment",
        "path": "$",
        "time_source": "original",
        "assessed_record_id": original.record_id,
        "assessed_kind": original.kind,
        "previous_assessment_id": previous_id,
        "previous_flags": list(old_flags),
        "flags": list(new_flags),
        "added": sorted(set(new_flags) - set(old_flags)),
        "removed": sorted(set(old_flags) - set(new_flags)),
        "why": "events that reached the archive after this record was sealed change its flags",
        "assessed_at": now_ms,
        "enrichment": enrichment_detail(new),
    }
    return Record(
        chain_id=original.chain_id,
        record_id=stable_id(
            "assessment", original.chain_id, original.record_id, previous_id, ",".join(new_flags)
        ),
        kind=_ASSESSMENT,
        origin=Origin.SYSTEM.value,
        direction=Direction.NONE.value,
        event_time=original.event_time,
        received_time=now_ms,
        waba_id=original.waba_id,
        business_phone=original.business_phone,
        customer_id=original.customer_id,
        customer_wa_id=original.customer_wa_id,
        customer_user_id=original.customer_user_id,
        wamid=original.wamid,
        msg_type=original.msg_type,
        template_name=original.template_name,
        template_language=original.template_language,
        template_category=new.template_category,
        template_status=new.template_status,
        status=original.status,
        ref_record_id=original.record_id,
        consent_state=new.consent_state,
        window_open=new.window_open,
        flags=new_flags,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
    )


def reassess(
    store: Any,
    chain_id: str,
    *,
    since_ms: int,
    until_ms: int,
    now_ms: int,
    config: EnrichConfig,
    trust: TrustStore,
    keys: KeyLookup | None = None,
) -> ReassessResult:
    """Assessment records (not yet sealed) for the chain's records with event time in
    [since, until) whose flags differ under today's knowledge. Seal them with
    :func:`coexarchive.enrich.sealing.seal_new`.

    Only what the chain's checkpoints commit under ``trust`` is read, records and knowledge
    alike: a record nobody signed is never assessed."""
    rows = read_records(
        store,
        chain_id,
        kinds={*ASSESSED_KINDS, _ASSESSMENT},
        since_ms=since_ms,
        until_ms=until_ms,
        trust=trust,
        keys=keys,
    )
    originals = [record for _, record in rows if record.kind in ASSESSED_KINDS]
    assessments = [record for _, record in rows if record.kind == _ASSESSMENT]
    result = ReassessResult(chain_id, examined=len(originals))
    if not originals:
        return result
    waba_id = next((r.waba_id for r in originals if r.waba_id), None) or config.waba_ids.get(
        chain_id
    )
    context = load_context(
        store,
        chain_id,
        since_ms=min(r.event_time for r in originals),
        until_ms=max(r.event_time for r in originals),
        trust=trust,
        waba_id=waba_id,
        config=config,
    )
    knowledge = knowledge_of(context, horizon_ms=now_ms)
    recomputed = {}
    for record in originals:
        found = assess(record, knowledge, config)
        if found is not None:
            # Flags other rules set at ingest (none today) would be kept; enrichment owns these.
            recomputed[record.record_id] = dataclasses.replace(found, flags=sort_flags(found.flags))
    result.changed = assessment_records(originals, assessments, recomputed, now_ms=now_ms)
    return result
