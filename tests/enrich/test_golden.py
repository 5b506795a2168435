"""The golden month: every injected violation is flagged exactly where it was injected.

Storyline and expected flags: ``scenario.py``. Three deliveries of the same month:

- one run, arrival order shuffled, template events sealed on the WABA chain *after* the message
  chain that uses them (side events carry them across);
- two runs, with an opt-out, a re-categorisation, a pause, a window-opening message, a capture and
  the CRM consent export all arriving after what they govern; ``reassess`` then seals assessment
  records exactly where the truth changed, and re-running it adds nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from coexarchive.enrich import current_flags
from coexarchive.records import Kind, Record
from coexarchive.store.memory import MemoryStore
from enrich import harness
from enrich.scenario import (
    FOW,
    GAP,
    HD,
    MWC,
    PHONE,
    SAO,
    SWM,
    TNA,
    WABA,
    Scenario,
    at,
    build,
)

CHAINS = (PHONE, f"waba-{WABA}")
NOW_MS = at(32) * 1000
# What the scenario injects: the report quotes these.
EXPECTED_COUNTS = {GAP: 5, FOW: 3, HD: 1, MWC: 2, SAO: 4, SWM: 2, TNA: 2}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build()


def _imports(store: MemoryStore, scenario: Scenario) -> None:
    parsed = harness.import_consent(store, scenario.crm_csv, chain_id=PHONE, now_ms=NOW_MS)
    assert [p.line for p in parsed.problems] == scenario.crm_bad_lines
    assert len(parsed.records) == 3


def _catalogue(store: MemoryStore, scenario: Scenario) -> None:
    added, problems = harness.import_catalogue(
        store,
        scenario.catalogue,
        waba_id=WABA,
        as_of_ms=scenario.catalogue_as_of_ms,
        now_ms=NOW_MS,
    )
    assert added == 2
    assert problems == ["data[2]: category missing or not text"]


def _check(store: MemoryStore, scenario: Scenario) -> dict[tuple[Any, ...], frozenset[str]]:
    found = harness.effective(store, CHAINS)
    for key, flags in scenario.expected.items():
        assert found.get(key) == flags, key
    stray = {key: flags for key, flags in found.items() if flags and key not in scenario.expected}
    assert stray == {}
    counts = Counter(flag for flags in found.values() for flag in flags)
    assert dict(counts) == EXPECTED_COUNTS
    return found


def test_the_scenario_injects_each_violation_a_known_number_of_times(scenario: Scenario) -> None:
    assert scenario.counts() == EXPECTED_COUNTS


def test_one_run_out_of_order_flags_exactly_the_injected_violations(scenario: Scenario) -> None:
    store = MemoryStore()
    _catalogue(store, scenario)
    _imports(store, scenario)
    harness.ingest(store, scenario.objects(seed=11))
    _check(store, scenario)
    assert not [r for r in harness.sealed(store, PHONE) if r.kind == Kind.ASSESSMENT]
    assert harness.run_reassess(store, PHONE, now_ms=NOW_MS) == 0


def test_as_of_columns_say_what_was_known_at_send_time(scenario: Scenario) -> None:
    store = MemoryStore()
    _catalogue(store, scenario)
    _imports(store, scenario)
    harness.ingest(store, scenario.objects(seed=3))
    records = harness.sealed(store, PHONE)
    outbound = [r for r in records if r.kind == Kind.OUTBOUND]
    by_time = {r.event_time // 1000: r for r in outbound}
    promo_d = by_time[at(7, 10)]  # after the Hindi keyword opt-out
    assert (promo_d.consent_state, promo_d.template_category, promo_d.template_status) == (
        "opted_out",
        "MARKETING",
        "APPROVED",
    )
    paused = by_time[at(21, 10)]
    assert (paused.template_status, paused.flags) == ("PAUSED", (TNA,))
    recategorised = by_time[at(11, 10)]
    assert (recategorised.template_category, recategorised.consent_state) == (
        "MARKETING",
        "unknown",
    )
    inside, outside = by_time[at(2, 9, 59)], by_time[at(2, 10, 6)]
    assert (inside.window_open, outside.window_open) == (True, False)
    evidence = orjson.loads(outside.detail)["enrichment"]
    assert evidence["last_inbound_time"] == at(1, 10) * 1000
    assert FOW in evidence["reasons"]
    keyword = [
        r
        for r in records
        if r.kind == Kind.CONSENT_EVENT
        and r.origin == "customer"
        and orjson.loads(r.detail)["field"] == "keyword"
    ]
    assert sorted((r.customer_id, r.consent_state) for r in keyword) == sorted(
        [
            ("628110000005", "opted_out"),
            ("628110000005", "opted_in"),
            ("919800000004", "opted_out"),
            ("919800000004", "opted_in"),
            ("34600000003", "opted_out"),
            ("34600000003", "opted_in"),
        ]
    )
    webhook = [
        r for r in records if r.kind == Kind.CONSENT_EVENT and r.msg_type == "marketing_messages"
    ]
    assert sorted(r.consent_state or "" for r in webhook) == ["opted_in", "opted_out"]


def test_without_side_events_the_first_chain_misses_the_runs_template_events(
    scenario: Scenario,
) -> None:
    store = MemoryStore()
    _catalogue(store, scenario)
    _imports(store, scenario)
    harness.ingest(store, scenario.objects(), side_inputs=False)
    found = harness.effective(store, CHAINS)
    flags = Counter(flag for value in found.values() for flag in value)
    assert flags[TNA] == 0  # REJECTED and PAUSED were on the WABA chain, sealed later
    # ...and reassessment, with everything sealed, puts it right.
    harness.run_reassess(store, PHONE, now_ms=NOW_MS)
    _check(store, scenario)


def test_late_and_out_of_order_across_runs_then_reassess(scenario: Scenario) -> None:
    store = MemoryStore()
    _catalogue(store, scenario)
    harness.ingest(store, scenario.objects(run=1, seed=7))
    at_ingest = harness.effective(store, CHAINS)
    # What the firm knew at ingest: no CRM opt-ins, no stop, no pause, no window, no capture.
    assert at_ingest[_outbound_key(store, at(3, 11))] == {MWC}  # A's promo before CRM import
    assert at_ingest[_outbound_key(store, at(21, 10))] == {MWC}  # paused later; A no opt-in yet
    assert at_ingest[_outbound_key(store, at(14, 10, 10))] == {FOW}
    late_statuses = [k for k, v in at_ingest.items() if k[0] == "status" and v == {SWM}]
    assert len(late_statuses) == 4  # two orphans + the two statuses of the late capture

    _imports(store, scenario)
    harness.ingest(store, scenario.objects(run=2, seed=8))
    changed = harness.run_reassess(store, PHONE, now_ms=NOW_MS)
    found = _check(store, scenario)
    before = {k: v for k, v in at_ingest.items() if k in found}
    differing = [k for k in before if before[k] != found[k]]
    assert changed == len(differing)

    # Assessment records reference their originals and explain the change.
    assessments = [r for r in harness.sealed(store, PHONE) if r.kind == Kind.ASSESSMENT]
    originals = {r.record_id: r for r in harness.sealed(store, PHONE)}
    for assessment in assessments:
        original = originals[assessment.ref_record_id or ""]
        detail = orjson.loads(assessment.detail)
        assert detail["previous_flags"] == list(original.flags)
        assert detail["flags"] == list(assessment.flags)
        assert assessment.event_time == original.event_time
    # Sealed records are untouched: the originals keep the flags they were sealed with.
    assert originals[_record(store, at(3, 11)).record_id].flags == (MWC,)

    # Idempotent: reassessing and re-ingesting everything seal nothing new.
    assert harness.run_reassess(store, PHONE, now_ms=NOW_MS + 3_600_000) == 0
    sizes = [len(harness.sealed(store, chain)) for chain in CHAINS]
    harness.ingest(store, scenario.objects())
    _imports(store, scenario)
    assert [len(harness.sealed(store, chain)) for chain in CHAINS] == sizes


def _record(store: MemoryStore, seconds: int) -> Record:
    return next(
        r
        for r in harness.sealed(store, PHONE)
        if r.kind == Kind.OUTBOUND and r.event_time // 1000 == seconds
    )


def _outbound_key(store: MemoryStore, seconds: int) -> tuple[Any, ...]:
    return harness.key_of(_record(store, seconds))


def test_current_flags_prefers_the_latest_assessment() -> None:
    base = Record("c", "r1", "outbound", "cloud_api", "outbound", 1, flags=("a",))
    first = Record("c", "x1", "assessment", "system", "none", 1, ref_record_id="r1", flags=("b",))
    second = Record("c", "x2", "assessment", "system", "none", 1, ref_record_id="r1", flags=())
    assert current_flags([base]) == {"r1": ("a",)}
    assert current_flags([base, first])["r1"] == ("b",)
    assert current_flags([base, first, second])["r1"] == ()
