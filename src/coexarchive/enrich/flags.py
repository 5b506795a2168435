"""Compliance flags: the exact rule of each, applied to one record with what the archive knows.

Every rule is documented in ``schemas/ENRICHMENT.md``; the names below are the sealed values.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from coexarchive.enrich.consent import (
    DEFAULT_KEYWORDS,
    MARKETING,
    OPTED_OUT,
    OTHER,
    UNKNOWN,
    ConsentLedger,
    KeywordConfig,
    customer_keys,
    state_of,
)
from coexarchive.enrich.templates import APPROVED_STATUSES, TemplateRegistry
from coexarchive.enrich.window import DAY_MS, EchoIndex, InboundIndex
from coexarchive.records import RECORD_FIELDS, Kind, Origin, Record, sort_flags

__all__ = [
    "ALL_FLAGS",
    "CAPTURED_KINDS",
    "CAPTURE_GAP",
    "DISCONNECT_EVENTS",
    "ENRICHED_KINDS",
    "FREEFORM_OUTSIDE_WINDOW",
    "HISTORY_DECLINED",
    "MARKETING_WITHOUT_CONSENT",
    "SENT_AFTER_OPT_OUT",
    "STATUS_WITHOUT_MESSAGE",
    "TEMPLATE_NOT_APPROVED",
    "Assessment",
    "EnrichConfig",
    "Knowledge",
    "apply",
    "assess",
]

MARKETING_WITHOUT_CONSENT: Final = "marketing_without_consent"
SENT_AFTER_OPT_OUT: Final = "sent_after_opt_out"
FREEFORM_OUTSIDE_WINDOW: Final = "freeform_outside_window"
TEMPLATE_NOT_APPROVED: Final = "template_not_approved"
STATUS_WITHOUT_MESSAGE: Final = "status_without_message"
HISTORY_DECLINED: Final = "history_declined"
CAPTURE_GAP: Final = "capture_gap"
ALL_FLAGS: Final = (
    CAPTURE_GAP,
    FREEFORM_OUTSIDE_WINDOW,
    HISTORY_DECLINED,
    MARKETING_WITHOUT_CONSENT,
    SENT_AFTER_OPT_OUT,
    STATUS_WITHOUT_MESSAGE,
    TEMPLATE_NOT_APPROVED,
)

# account_update events after which the business app's traffic is no longer captured.
DISCONNECT_EVENTS: Final = frozenset({"PARTNER_REMOVED", "ACCOUNT_OFFBOARDED"})
# Kinds whose record id is a wamid's message identity: the message's content was captured.
CAPTURED_KINDS: Final = frozenset(
    {
        Kind.OUTBOUND.value,
        Kind.ECHO.value,
        Kind.MESSAGE.value,
        Kind.HISTORY_MESSAGE.value,
        Kind.UNSUPPORTED.value,
        Kind.MESSAGE_EDIT.value,
        Kind.MESSAGE_REVOKE.value,
    }
)
ENRICHMENT_VERSION: Final = 1
_OUTBOUND: Final = Kind.OUTBOUND.value
_STATUS: Final = Kind.STATUS.value
_ECHO: Final = Kind.ECHO.value
_ACCOUNT_EVENT: Final = Kind.ACCOUNT_EVENT.value
_CONSENT_EVENT: Final = Kind.CONSENT_EVENT.value
_CLOUD_API: Final = Origin.CLOUD_API.value
# The kinds assess() looks at: for every other kind it returns None.
ENRICHED_KINDS: Final = frozenset({_OUTBOUND, _STATUS, _ECHO, _ACCOUNT_EVENT, _CONSENT_EVENT})
HOUR_MS: Final = 3_600_000


@dataclass(frozen=True)
class EnrichConfig:
    """Every threshold and list enrichment uses; passed in, never read from the environment."""

    keywords: KeywordConfig = DEFAULT_KEYWORDS
    window_ms: int = DAY_MS
    status_grace_ms: int = HOUR_MS
    status_lookback_ms: int = 30 * DAY_MS
    echo_silence_ms: int = 7 * DAY_MS
    echo_lookback_ms: int = 30 * DAY_MS
    approved_statuses: frozenset[str] = APPROVED_STATUSES
    # Chains whose records never carry a WABA id (outbound capture only): phone number id → WABA.
    waba_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Knowledge:
    """What enrichment may use for one chain: everything known at ingest (or at reassessment)."""

    ledger: ConsentLedger
    registry: TemplateRegistry
    inbound: InboundIndex
    echoes: EchoIndex
    captured: set[str]
    horizon_ms: int  # the latest moment the archive had data for (status grace is measured to it)


@dataclass(frozen=True)
class Assessment:
    """The enrichment columns and flags of one record, and the evidence behind them."""

    flags: tuple[str, ...] = ()
    consent_state: str | None = None
    window_open: bool | None = None
    template_category: str | None = None
    template_status: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


_generated_assessment_init = Assessment.__init__
_NEW_DICT: Final[Any] = object()  # "make a new dict", as the fields' default factory does


def _init_assessment(
    self: Assessment,
    flags: tuple[str, ...] = (),
    consent_state: str | None = None,
    window_open: bool | None = None,
    template_category: str | None = None,
    template_status: str | None = None,
    evidence: dict[str, Any] = _NEW_DICT,
    reasons: dict[str, str] = _NEW_DICT,
) -> None:
    """``Assessment``'s dataclass ``__init__`` at a quarter of the cost (one per status and send).

    The frozen dataclass stores each field through ``object.__setattr__``; the instance dict takes
    them in one update, as ``tests/enrich/test_fast_paths.py`` holds against the generated one.
    """
    if type(self) is not Assessment:
        _generated_assessment_init(
            self, flags, consent_state, window_open, template_category, template_status,
            {} if evidence is _NEW_DICT else evidence, {} if reasons is _NEW_DICT else reasons,
        )  # fmt: skip
        return
    self.__dict__.update(
        flags=flags,
        consent_state=consent_state,
        window_open=window_open,
        template_category=template_category,
        template_status=template_status,
        evidence={} if evidence is _NEW_DICT else evidence,
        reasons={} if reasons is _NEW_DICT else reasons,
    )


setattr(Assessment, "__init__", _init_assessment)  # noqa: B010 - mypy refuses assigning a method


def assess(record: Record, knowledge: Knowledge, config: EnrichConfig) -> Assessment | None:
    """The assessment of ``record``, or None for kinds enrichment leaves as they are."""
    kind = record.kind
    if kind not in ENRICHED_KINDS:
        return None
    if kind == _OUTBOUND and record.origin == _CLOUD_API:
        return _outbound(record, knowledge, config)
    if kind == _STATUS:
        return _status(record, knowledge, config)
    if kind == _ECHO:
        return _echo(record, knowledge)
    if kind == _ACCOUNT_EVENT:
        return _account(record)
    if kind == _CONSENT_EVENT:
        state = state_of(record)
        return Assessment(consent_state=state) if state else None
    return None


def _outbound(record: Record, knowledge: Knowledge, config: EnrichConfig) -> Assessment:
    at, keys = record.event_time, customer_keys(record)
    flags: list[str] = []
    reasons: dict[str, str] = {}
    evidence: dict[str, Any] = {}
    is_template = record.msg_type == "template"
    category = status = None
    if is_template:
        facts = knowledge.registry.facts_at(record.template_name, record.template_language, at)
        category, status = facts.category, facts.status
        evidence["template_status_ref"] = facts.status_ref
        evidence["template_category_ref"] = facts.category_ref
        if status is not None and status not in config.approved_statuses:
            flags.append(TEMPLATE_NOT_APPROVED)
            reasons[TEMPLATE_NOT_APPROVED] = f"template status was {status} at send time"
    purpose = MARKETING if category == "MARKETING" else OTHER
    state, event = knowledge.ledger.state_at(keys, purpose, at)
    evidence["purpose"] = purpose
    evidence["consent_ref"] = event.record_id if event else None
    if is_template and state == OPTED_OUT:
        flags.append(SENT_AFTER_OPT_OUT)
        reasons[SENT_AFTER_OPT_OUT] = f"customer had opted out of {purpose} messages"
    elif is_template and purpose == MARKETING and state == UNKNOWN:
        flags.append(MARKETING_WITHOUT_CONSENT)
        reasons[MARKETING_WITHOUT_CONSENT] = "no marketing opt-in on record at send time"
    opened = knowledge.inbound.last_at_or_before(keys, at)
    window_open = opened is not None and at - opened.event_time < config.window_ms
    evidence["window_ref"] = opened.record_id if opened else None
    evidence["last_inbound_time"] = opened.event_time if opened else None
    if not is_template and not window_open:
        flags.append(FREEFORM_OUTSIDE_WINDOW)
        reasons[FREEFORM_OUTSIDE_WINDOW] = "free-form send with no customer message in the window"
    last_echo = knowledge.echoes.last_at_or_before(at)
    evidence["last_echo_time"] = last_echo
    if last_echo is not None and at - last_echo > config.echo_silence_ms:
        flags.append(CAPTURE_GAP)
        reasons[CAPTURE_GAP] = "business app echoes silent while Cloud API traffic continues"
    return Assessment(
        flags=sort_flags(flags),
        consent_state=state,
        window_open=window_open,
        template_category=category,
        template_status=status,
        evidence=evidence,
        reasons=reasons,
    )


def _status(record: Record, knowledge: Knowledge, config: EnrichConfig) -> Assessment:
    captured = record.ref_record_id is not None and record.ref_record_id in knowledge.captured
    if captured:
        return Assessment(evidence={"message_ref": record.ref_record_id})
    age = knowledge.horizon_ms - record.event_time
    if age < config.status_grace_ms:
        # The capture may still be on its way: decided later, by reassessment.
        return Assessment(evidence={"message_ref": None, "pending_until": record.event_time
                                    + config.status_grace_ms})  # fmt: skip
    return Assessment(
        flags=(STATUS_WITHOUT_MESSAGE,),
        evidence={"message_ref": None, "horizon": knowledge.horizon_ms},
        reasons={STATUS_WITHOUT_MESSAGE: "no captured content for this wamid"},
    )


def _echo(record: Record, knowledge: Knowledge) -> Assessment:
    state, event = knowledge.ledger.state_at(customer_keys(record), OTHER, record.event_time)
    evidence = {"purpose": OTHER, "consent_ref": event.record_id if event else None}
    return Assessment(consent_state=state, evidence=evidence)


def _account(record: Record) -> Assessment | None:
    if record.msg_type == "history_declined":
        return Assessment(
            flags=(HISTORY_DECLINED,),
            reasons={HISTORY_DECLINED: "the business declined sharing its chat history"},
        )
    if record.msg_type == "account_update" and (record.status or "").upper() in DISCONNECT_EVENTS:
        return Assessment(
            flags=(CAPTURE_GAP,),
            reasons={CAPTURE_GAP: f"coexistence disconnected ({record.status})"},
        )
    return None


def apply(record: Record, assessment: Assessment) -> Record:
    """``record`` with the assessment's columns, flags and evidence (``detail.enrichment``)."""
    # Positional construction: dataclasses.replace costs twice as much, once per enriched record.
    values = list(_record_values(record))
    flags = (*record.flags, *assessment.flags)
    values[_FLAGS] = sort_flags(flags) if flags else ()  # sort_flags(()) is ()
    if assessment.consent_state is not None:
        values[_CONSENT_STATE] = assessment.consent_state
    if assessment.window_open is not None:
        values[_WINDOW_OPEN] = assessment.window_open
    if assessment.template_category:
        values[_TEMPLATE_CATEGORY] = assessment.template_category
    if assessment.template_status:
        values[_TEMPLATE_STATUS] = assessment.template_status
    values[_DETAIL] = _with_enrichment(record.detail, assessment)
    return Record(*values)


_record_values = operator.attrgetter(*RECORD_FIELDS)
_FLAGS, _CONSENT_STATE, _WINDOW_OPEN, _TEMPLATE_CATEGORY, _TEMPLATE_STATUS, _DETAIL = map(
    RECORD_FIELDS.index,
    ("flags", "consent_state", "window_open", "template_category", "template_status", "detail"),
)


def _with_enrichment(detail: str, assessment: Assessment) -> str:
    if not assessment.evidence and not assessment.reasons:
        return detail
    try:
        tree = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return detail
    if not isinstance(tree, dict):
        return detail
    tree["enrichment"] = enrichment_detail(assessment)
    return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS).decode()


def enrichment_detail(assessment: Assessment) -> dict[str, Any]:
    return {"v": ENRICHMENT_VERSION, **assessment.evidence, "reasons": dict(assessment.reasons)}
