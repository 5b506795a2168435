"""Current flags: every view and report shows a record's latest assessment's flags, else its own.

Re-assessment never rewrites a sealed record: it seals an ``assessment`` record that names the
original (``ref_record_id``) and carries its flags from then on. Here assessments add a flag (to a
record sealed with none), remove one, and change one twice (the later one wins), and every report
that shows flags is checked against that, with ``--verify`` proving the flags it shows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from query._archive import (
    ALICE,
    BOB,
    CAROL,
    CHAIN_A,
    CHAIN_B,
    Fixture,
    build_archive,
    chain_a,
    chain_b,
)
from query.test_verify_rows import manifest_of, rewrite_segment, set_column

from coexarchive.errors import VerificationError
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from coexarchive.records import Record, stable_id
from coexarchive.store import MemoryStore
from support.archive import START_MS

MWC = "marketing_without_consent"
SAO = "sent_after_opt_out"
TNA = "template_not_approved"
FOW = "freeform_outside_window"
START = datetime.fromtimestamp(START_MS / 1000, UTC)
DAY = timedelta(days=1)


def assessment(original: Record, flags: tuple[str, ...], n: int) -> Record:
    """What ``coexarchive reassess`` seals for ``original`` (the fields the views read)."""
    return replace(
        original,
        record_id=stable_id("assessment", original.chain_id, original.record_id, n),
        kind="assessment",
        origin="system",
        direction="none",
        ref_record_id=original.record_id,
        flags=flags,
        detail=orjson.dumps({"previous": list(original.flags), "flags": list(flags)}).decode(),
    )


def original(chain: str, seq: int) -> Record:
    """The record sealed at ``seq`` (the fixture seals each chain's list in order from 0)."""
    return (chain_a() if chain == CHAIN_A else chain_b())[seq]


# Chain A seq (0-based): 4 BOB promo sealed {MWC, SAO}; 5 ALICE utility sealed {};
# 6 CAROL promo sealed {TNA}; 7 CAROL free-form sealed {FOW}. Chain B seq 2: BOB promo {MWC}.
@pytest.fixture(scope="module")
def fixture() -> Fixture:
    fixture = build_archive(MemoryStore())
    bob, alice, carol = (original(CHAIN_A, seq) for seq in (4, 5, 6))
    fixture.writers[CHAIN_A].append(
        [
            assessment(bob, (SAO,), 1),  # removes MWC
            assessment(alice, (MWC,), 2),  # adds MWC to a record sealed with no flag
            assessment(carol, (), 3),  # removes TNA ...
        ]
    )
    fixture.writers[CHAIN_A].append([assessment(carol, (MWC, TNA), 4)])  # ... then changes it
    b_bob = original(CHAIN_B, 2)
    fixture.writers[CHAIN_B].append([assessment(b_bob, (), 5)])  # removes MWC on chain B
    return fixture


CURRENT = {
    (CHAIN_A, 4): [SAO],
    (CHAIN_A, 5): [MWC],
    (CHAIN_A, 6): [MWC, TNA],
    (CHAIN_A, 7): [FOW],
    (CHAIN_B, 2): [],
}


def rows(session: AuditSession, name: str, **params: Any) -> list[dict[str, Any]]:
    return session.report(name, Params(**params)).table.to_pylist()


def test_records_and_messages_show_current_flags_beside_the_sealed_ones(fixture: Fixture) -> None:
    session = fixture.session()
    for view in ("records", "messages"):
        found = {
            (row["chain_id"], row["seq"]): row
            for row in session.query(
                f"SELECT chain_id, seq, flags, sealed_flags, flags_seq FROM {view}"  # noqa: S608
            ).table.to_pylist()
        }
        for key, flags in CURRENT.items():
            assert sorted(found[key]["flags"]) == flags, (view, key)
        assert found[(CHAIN_A, 4)]["sealed_flags"] == [MWC, SAO]
        assert found[(CHAIN_A, 7)]["flags_seq"] is None  # never re-assessed: its own flags
        assert found[(CHAIN_A, 6)]["flags_seq"] == 16  # the later of its two assessments


def test_flags_view_lists_current_flags_of_originals_never_assessment_rows(
    fixture: Fixture,
) -> None:
    found = fixture.session().query("SELECT chain_id, seq, kind, flag FROM flags").table
    pairs = {(row["chain_id"], row["seq"], row["flag"]) for row in found.to_pylist()}
    assert "assessment" not in found.column("kind").to_pylist()
    for (chain, seq), flags in CURRENT.items():
        assert {flag for c, s, flag in pairs if (c, s) == (chain, seq)} == set(flags)


def test_outbound_without_consent_follows_reassessment(fixture: Fixture) -> None:
    found = rows(fixture.session(), "outbound-without-consent")
    assert [(r["chain_id"], r["seq"], r["customer_id"]) for r in found] == [
        (CHAIN_A, 5, ALICE),  # added
        (CHAIN_A, 6, CAROL),  # changed (its latest assessment)
    ]  # BOB's two promos: removed
    assert all(r["kind"] == "outbound" for r in found)


def test_after_opt_out_follows_reassessment(fixture: Fixture) -> None:
    session = fixture.session()
    found = rows(session, "after-opt-out", customer=BOB)
    assert [(r["chain_id"], r["seq"], r["flags"]) for r in found] == [(CHAIN_A, 4, [SAO])]
    assert rows(session, "after-opt-out", customer=ALICE) == []


def test_after_opt_out_shows_a_flag_that_reassessment_added() -> None:
    fixture = build_archive(MemoryStore())
    alice = original(CHAIN_A, 5)
    fixture.writers[CHAIN_A].append([assessment(alice, (SAO,), 1)])
    found = rows(fixture.session(), "after-opt-out", customer=ALICE)
    assert [(r["seq"], r["kind"], r["flags"], r["flags_seq"]) for r in found] == [
        (5, "outbound", [SAO], 13)
    ]


def test_transcript_shows_current_flags(fixture: Fixture) -> None:
    found = rows(fixture.session(), "transcript", customer=CAROL)
    assert {r["seq"]: r["flags"] for r in found if r["chain_id"] == CHAIN_A}[6] == [MWC, TNA]
    assert "assessment" not in {r["kind"] for r in found}


def test_template_usage_counts_current_not_approved(fixture: Fixture) -> None:
    found = rows(fixture.session(), "template-usage")
    paused = [r for r in found if r["status_at_send"] == "PAUSED"]
    assert [r["not_approved"] for r in paused] == [1]


def test_compliance_counts_current_flags(fixture: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    session = fixture.session()
    result = session.report("compliance", Params())
    found = {(r["finding"], r["chain_id"]): r["records"] for r in result.table.to_pylist()}
    assert found[(MWC, CHAIN_A)] == 2
    assert (MWC, CHAIN_B) not in found
    assert found[(TNA, CHAIN_A)] == 1
    assert found[(SAO, CHAIN_A)] == 1
    with monkeypatch.context() as scan_only:
        scan_only.setattr(AuditSession, "_summary", lambda *args: None)
        assert session.report("compliance", Params()).table == result.table


PERIODS = [
    Params(),
    Params(chain=CHAIN_A),
    Params(chain=CHAIN_B),
    Params(since=START + DAY),
    Params(since=START + timedelta(hours=12), until=START + 2 * DAY + timedelta(minutes=30)),
    Params(since=START + DAY + timedelta(minutes=6), until=START + DAY + timedelta(minutes=8)),
]


@pytest.mark.parametrize("params", PERIODS, ids=lambda p: str(p.to_json()))
def test_compliance_fast_path_equals_a_full_scan_under_reassessment(
    fixture: Fixture, params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = fixture.session()
    fast = session.report("compliance", params).table
    with monkeypatch.context() as scan_only:
        scan_only.setattr(AuditSession, "_summary", lambda *args: None)
        slow = session.report("compliance", params).table
    assert fast.to_pylist() == slow.to_pylist()


def test_a_chain_without_assessments_keeps_the_fast_path(fixture: Fixture) -> None:
    result = fixture.session().report("compliance", Params(chain=CHAIN_A))
    assert "0 whole segment(s)" in result.sql  # chain A holds assessments: scanned whole
    clean = build_archive(MemoryStore()).session().report("compliance", Params(chain=CHAIN_A))
    assert "0 whole segment(s)" not in clean.sql


def test_verify_proves_current_flags_against_the_assessment(fixture: Fixture) -> None:
    session = fixture.session()
    result = session.report("outbound-without-consent", Params(), verify=True)
    assert result.verification is not None
    assert "flags" in result.verification.compared
    assert "sealed_flags" in result.verification.compared
    assert result.verification.joined == 2  # the two assessments the flags came from
    flags = session.query("SELECT chain_id, seq, flag, flags_seq FROM flags", verify=True)
    assert flags.verification is not None and "flag" in flags.verification.compared


def test_flags_without_flags_seq_are_listed_as_not_verified(fixture: Fixture) -> None:
    result = fixture.session().query("SELECT chain_id, seq, flags FROM messages", verify=True)
    assert result.verification is not None
    assert "flags" in result.verification.not_verified
    assert "flags" not in result.verification.compared


def test_verify_catches_an_altered_assessment() -> None:
    fixture = build_archive(MemoryStore())
    alice = original(CHAIN_A, 5)
    fixture.writers[CHAIN_A].append([assessment(alice, (MWC,), 1)])
    manifest = manifest_of(fixture.store, CHAIN_A, 13)  # type: ignore[arg-type]
    rewrite_segment(
        fixture.store,  # type: ignore[arg-type]
        manifest,
        lambda table: set_column(table, "flags", 13, [MWC, SAO]),
    )
    with pytest.raises(VerificationError):
        fixture.session().report("outbound-without-consent", Params(), verify=True)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        # flags_seq naming a record that is not an assessment of this row
        ("SELECT chain_id, seq, flags, 0::BIGINT AS flags_seq FROM messages WHERE seq = 5", "row"),
        # the row's sealed flags shown as if current, hiding the assessment
        (
            "SELECT chain_id, seq, sealed_flags AS flags, NULL::BIGINT AS flags_seq "
            "FROM messages WHERE chain_id = '900000000000001' AND seq = 4",
            "sealed",
        ),
    ],
)
def test_verify_refuses_flags_from_the_wrong_record(fixture: Fixture, sql: str, what: str) -> None:
    with pytest.raises(VerificationError) as caught:
        fixture.session().query(sql, verify=True)
    assert "flags" in str(caught.value) or "flags_seq" in str(caught.value), what


def test_verify_refuses_an_earlier_assessment_shown_as_current(fixture: Fixture) -> None:
    # seq 15 is CAROL's first assessment (no flags); seq 16 superseded it.
    sql = (
        "SELECT r.chain_id, r.seq, a.flags, a.seq AS flags_seq FROM sealed_records r "
        "JOIN sealed_records a ON a.ref_record_id = r.record_id AND a.seq = 15 "
        "WHERE r.chain_id = '900000000000001' AND r.seq = 6"
    )
    with pytest.raises(VerificationError) as caught:
        fixture.session().query(sql, verify=True)
    assert "not its current flags (assessment seq 16" in str(caught.value)


def test_coexarchive_verify_checks_the_manifests_kind_counts(fixture: Fixture) -> None:
    from coexarchive.seal.merkle import Frontier
    from coexarchive.segments import ChainState
    from coexarchive.verify.segment import check_segment

    manifest = manifest_of(fixture.store, CHAIN_A, 16)  # type: ignore[arg-type]
    before = manifest_of(fixture.store, CHAIN_A, 15)  # type: ignore[arg-type]
    data = fixture.store.get(manifest.segment.key)
    frontier = Frontier(before.tree_size, before.frontier)
    start = ChainState(CHAIN_A, before.tree_size, before.chain_hash, frontier)
    assert check_segment(data, manifest, start).failures == []
    hidden = replace(manifest, kinds={"outbound": 1})  # its assessment unlisted
    failures = check_segment(data, hidden, start).failures
    assert [f.step for f in failures] == ["manifests"]
    assert "would miss an assessment" in failures[0].message


def test_verify_catches_an_assessment_whose_kind_was_rewritten(fixture: Fixture) -> None:
    """The attacker turns CAROL's latest assessment into an outbound row (leaf hash left as it
    was): the views fall back to the earlier assessment, which --verify must not accept."""
    store = MemoryStore()
    for key in fixture.store.list(""):
        store.put(key, fixture.store.get(key))
    copy = Fixture(store, fixture.key, fixture.trust, {})
    manifest = manifest_of(store, CHAIN_A, 16)
    rewrite_segment(store, manifest, lambda table: set_column(table, "kind", 16, "outbound"))
    sql = "SELECT chain_id, seq, flags, flags_seq FROM messages WHERE chain_id = $c AND seq = 6"
    shown = copy.session().query(sql, {"c": CHAIN_A})
    assert shown.table.to_pylist()[0]["flags_seq"] == 15
    with pytest.raises(VerificationError) as caught:
        copy.session().query(sql, {"c": CHAIN_A}, verify=True)
    assert "holds 0 assessment(s) where its manifest counts 1" in str(caught.value)
