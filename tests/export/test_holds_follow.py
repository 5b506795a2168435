"""Holds follow data: records sealed after a placement are held as they are sealed."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from export._evidence import BOB, CHAIN_A, build_evidence

from coexarchive._internal.cliutil import parse_customer
from coexarchive.customers import normalize_customer
from coexarchive.enrich.crm import parse_consent_file
from coexarchive.enrich.sealing import seal_new
from coexarchive.errors import ConfigError, InvalidArgumentError, RetentionError
from coexarchive.export.bundle import Selection
from coexarchive.export.holds import (
    HoldRegister,
    HoldScope,
    NewDataHolds,
    coverage,
    held_keys,
    hold_new_objects,
)
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store import MemoryStore, S3Store
from coexarchive.store.base import ObjectStore, Retention
from coexarchive.verify import ArchiveVerificationError, verify_archive
from pipelines.seal_step import seal_chain
from pipelines.specs import SealSpec
from support.archive import ARCHIVE, DAY_MS, START_MS, make_records, short_policy, signer, trust_for

CHAIN = "900000000000031"
NEWCOMER = "447700955555"  # writes for the first time after the hold is placed
NOW = START_MS + 30 * DAY_MS
POLICY = short_policy()


def objects_of(store: ObjectStore, chain: str) -> list[list[str]]:
    out = []
    for key in list_manifests(store, chain):
        m = Manifest.from_bytes(store.get(key))
        out.append([m.segment.key, m.record_index.key, m.key, m.checkpoint_key])
    return out


def ingest(store: ObjectStore, records: list, key) -> None:  # type: ignore[no-untyped-def,type-arg]
    seal_chain(
        store,
        CHAIN,
        records,
        signer=key,
        spec=SealSpec("unused", ARCHIVE),
        policy=short_policy(),
    )


def newcomer_records(day: int, count: int = 3) -> list:  # type: ignore[type-arg]
    base = make_records(CHAIN, count, day=day)
    return [
        replace(r, customer_id=NEWCOMER, customer_wa_id=NEWCOMER, record_id=r.record_id + "n")
        for r in base
    ]


def run_prospective_hold(store: ObjectStore) -> None:
    key = signer()
    ingest(store, make_records(CHAIN, 5, day=0), key)  # other customers only
    register = HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy())
    # Typed the way people type numbers: + and spaces.
    placed = register.place(
        "M-NEW", HoldScope(customer="+44 7700 955 555"), who="dana@legal", now_ms=NOW
    )
    assert placed.segments == 0 and placed.keys == () and placed.sealed is not None
    (matter,) = coverage(store, trust=trust_for(signer()))
    assert matter.prospective and matter.records == 0 and not matter.keys

    ingest(store, newcomer_records(day=1), key)  # the newcomer's first messages
    ingest(store, make_records(CHAIN, 4, day=2), key)  # others again: not held
    before, newcomer, after = objects_of(store, CHAIN)
    assert all(store.info(k).legal_hold for k in newcomer)
    assert not any(store.info(k).legal_hold for k in before + after)
    (matter,) = coverage(store, trust=trust_for(signer()))
    assert not matter.prospective and matter.records == 3 and matter.keys == set(newcomer)
    held = held_keys(store, trust=trust_for(signer()))
    assert held == set(newcomer)
    verify_archive(store, trust_for(key), chains=[CHAIN], held_keys=held)


@pytest.mark.integration
def test_a_hold_placed_before_a_customers_first_message_holds_what_arrives_later(
    s3_store: S3Store,
) -> None:
    run_prospective_hold(s3_store)


def test_prospective_hold_in_memory_and_verify_names_a_new_object_left_unheld() -> None:
    store = MemoryStore()
    run_prospective_hold(store)
    _, newcomer, _ = objects_of(store, CHAIN)
    # The register lists none of these objects (they were sealed after the placement): verify
    # must still demand the hold, from the scope.
    store.set_legal_hold(newcomer[3], False)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(
            store,
            trust_for(signer()),
            chains=[CHAIN],
            held_keys=held_keys(store, trust=trust_for(signer())),
        )
    assert [(f.step, f.key) for f in caught.value.report.failures] == [("retention", newcomer[3])]


def test_a_released_hold_no_longer_holds_new_data() -> None:
    store = MemoryStore()
    key = signer()
    register = HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy())
    register.place("M-R", HoldScope(customer=NEWCOMER), who="a", now_ms=NOW)
    register.release("M-R", who="a", now_ms=NOW + 1)
    ingest(store, newcomer_records(day=1), key)
    (segment,) = objects_of(store, CHAIN)
    assert not any(store.info(k).legal_hold for k in segment)
    assert held_keys(store, trust=trust_for(signer())) == set()


def test_a_chain_hold_with_a_period_holds_only_new_segments_inside_it() -> None:
    store = MemoryStore()
    key = signer()
    register = HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy())
    window = HoldScope(chain=CHAIN, since=START_MS + DAY_MS, until=START_MS + 2 * DAY_MS)
    register.place("M-P", window, who="a", now_ms=NOW)
    for day in (0, 1, 2):
        ingest(store, make_records(CHAIN, 2, day=day), key)
    day0, day1, day2 = objects_of(store, CHAIN)
    assert [all(store.info(k).legal_hold for k in s) for s in (day0, day1, day2)] == [
        False,
        True,
        False,
    ]
    assert not any(store.info(k).legal_hold for k in day0 + day2)


def test_another_chains_hold_and_a_bsuid_hold_do_not_hold_by_mistake() -> None:
    holds = NewDataHolds([("M", HoldScope(chain=CHAIN_A)), ("N", HoldScope(customer="US.777"))])
    records = make_records(CHAIN, 3)
    assert holds.matters(CHAIN, records) == []
    assert holds.matters(CHAIN_A, [replace(r, chain_id=CHAIN_A) for r in records]) == ["M"]
    bsuid_only = [replace(records[0], customer_id="US.777", customer_wa_id=None)]
    assert holds.matters(CHAIN, bsuid_only) == ["N"]
    linked = [replace(records[0], customer_user_id="US.777")]  # wa_id plus the same user's BSUID
    assert holds.matters(CHAIN, linked) == ["N"]


def test_media_fetcher_entry_holds_new_objects_only_under_a_matching_hold() -> None:
    store = MemoryStore()
    store.put("media/a.bin", b"a")
    store.put("media/b.bin", b"b")
    holds = NewDataHolds([("M", HoldScope(customer=NEWCOMER))])
    mine = newcomer_records(day=1, count=1)
    theirs = make_records(CHAIN, 1)
    assert hold_new_objects(store, ["media/a.bin"], chain_id=CHAIN, records=mine, holds=holds) == [
        "M"
    ]
    assert not hold_new_objects(store, ["media/b.bin"], chain_id=CHAIN, records=theirs, holds=holds)
    assert store.info("media/a.bin").legal_hold and not store.info("media/b.bin").legal_hold


# --- one spelling of a customer everywhere ------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["447700900002", "+447700900002", "+44 7700 900002", "0044 7700-900002", "+44 (7700) 900.002"],
)
def test_every_usual_spelling_of_a_number_is_the_stored_wa_id(typed: str) -> None:
    assert normalize_customer(typed) == BOB
    assert parse_customer(typed) == BOB
    assert HoldScope(customer=typed).customer == BOB


@pytest.mark.parametrize(
    "bad", ["", "+", "bob", "0447700900002", "+44 7700 90000 2222 33", "44770090000x", "us.123"]
)
def test_what_is_neither_a_number_nor_a_bsuid_is_refused_not_matched_against_nothing(
    bad: str,
) -> None:
    with pytest.raises(InvalidArgumentError):
        normalize_customer(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_customer(bad)
    with pytest.raises(ConfigError):
        HoldScope(customer=bad)


def test_bsuids_are_kept_as_given() -> None:
    assert normalize_customer(" US.13491208 ") == "US.13491208"


def test_a_hold_typed_with_plus_covers_the_stored_records_now() -> None:
    evidence = build_evidence(MemoryStore())
    register = HoldRegister(
        evidence.store, signer=evidence.key, archive_name=ARCHIVE, policy=short_policy()
    )
    outcome = register.place("M-PLUS", HoldScope(customer="+" + BOB), who="a", now_ms=NOW)
    assert outcome.segments > 0 and outcome.keys


def test_consent_import_stores_the_same_id_a_hold_and_a_query_use() -> None:
    text = (
        "customer,purpose,state,timestamp,source,evidence\n"
        "+44 7700 900002,marketing,opted_in,2026-01-05T10:00:00Z,crm,form-1\n"
    )
    imported = parse_consent_file(
        text.encode(), fmt="csv", source_name="consent.csv", now_ms=NOW, chain_id=CHAIN_A
    )
    assert not imported.problems
    (record,) = imported.records
    assert record.customer_id == BOB and record.customer_wa_id == BOB


def test_release_lifts_the_hold_from_what_ingest_held_after_the_placement() -> None:
    store = MemoryStore()
    key = signer()
    register = HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy())
    register.place("M-L", HoldScope(customer=NEWCOMER), who="a", now_ms=NOW)
    register.place("M-K", HoldScope(chain=CHAIN, since=START_MS + 2 * DAY_MS), who="b", now_ms=NOW)
    ingest(store, newcomer_records(day=1), key)
    ingest(store, newcomer_records(day=2), key)
    day1, day2 = objects_of(store, CHAIN)
    assert all(store.info(k).legal_hold for k in day1 + day2)
    outcome = register.release("M-L", who="a", now_ms=NOW + 1)
    # Day 1 was held only for M-L; day 2 stays held for M-K.
    assert set(outcome.keys) == set(day1) and set(outcome.kept) == set(day2)
    assert not any(store.info(k).legal_hold for k in day1)
    assert all(store.info(k).legal_hold for k in day2)
    verify_archive(
        store, trust_for(key), chains=[CHAIN], held_keys=held_keys(store, trust=trust_for(signer()))
    )


def test_records_sealed_by_a_consent_import_follow_the_hold_too() -> None:
    store = MemoryStore()
    key = signer()
    HoldRegister(store, signer=key, archive_name=ARCHIVE, policy=short_policy()).place(
        "M-C", HoldScope(customer=NEWCOMER), who="a", now_ms=NOW
    )
    text = (
        "customer,purpose,state,timestamp,source,evidence\n"
        "+44 7700 955555,marketing,opted_in,2026-01-05T10:00:00Z,crm,form-9\n"
    )
    imported = parse_consent_file(
        text.encode(), fmt="csv", source_name="c.csv", now_ms=NOW, chain_id=CHAIN
    )
    seal_new(store, CHAIN, imported.records, signer=key, archive_name=ARCHIVE, policy=POLICY)
    (segment,) = objects_of(store, CHAIN)
    assert all(store.info(k).legal_hold for k in segment)


def test_the_in_memory_store_refuses_to_dispose_of_held_or_retained_objects() -> None:
    store = MemoryStore()
    past = Retention("COMPLIANCE", datetime(2020, 1, 1, tzinfo=UTC))
    future = Retention("COMPLIANCE", datetime(2100, 1, 1, tzinfo=UTC))
    store.put("a", b"a", retention=past)
    store.put("b", b"b", retention=future)
    store.put("c", b"c", retention=past)
    store.set_legal_hold("c", True)
    with pytest.raises(RetentionError):
        store.dispose("b")
    with pytest.raises(RetentionError):
        store.dispose("c")
    store.dispose("a")
    assert not store.exists("a") and store.exists("b") and store.exists("c")


def test_an_export_selection_reads_the_customer_as_the_hold_does() -> None:
    assert Selection(customer="+44 7700 900002").customer == BOB
    with pytest.raises(ConfigError):
        Selection(customer="bob")
