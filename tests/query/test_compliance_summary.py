"""The compliance summary from manifests equals the scan of every record, period or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query._archive import CHAIN_A, CHAIN_B, build_archive

import coexarchive.segments as segments_module
from coexarchive.findings import findings_of, findings_of_table
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from coexarchive.records import Record
from coexarchive.seal.chain import seal_records
from coexarchive.segments import records_table
from coexarchive.store import MemoryStore
from support.archive import START_MS, scenario_record

DAY = timedelta(days=1)
START = datetime.fromtimestamp(START_MS / 1000, UTC)


def summary(session: AuditSession, params: Params) -> tuple[pa.Table, str]:
    result = session.report("compliance", params)
    return result.table, result.sql


def scanned(session: AuditSession, params: Params, monkeypatch: pytest.MonkeyPatch) -> pa.Table:
    with monkeypatch.context() as scan_only:
        scan_only.setattr(AuditSession, "_summary", lambda *args: None)
        table, sql = summary(session, params)
    assert "computed from the findings" not in sql
    return table


PERIODS = [
    Params(),
    Params(chain=CHAIN_A),
    Params(chain=CHAIN_B),
    Params(since=START + DAY),  # cuts nothing: starts on a segment boundary
    Params(since=START + timedelta(hours=12), until=START + 2 * DAY + timedelta(minutes=30)),
    Params(since=START + 30 * DAY),  # after everything
    Params(until=START - DAY),  # before everything
    Params(chain=CHAIN_A, since=START + timedelta(minutes=5), until=START + 3 * DAY),
]


@pytest.mark.parametrize("params", PERIODS, ids=lambda p: str(p.to_json()))
def test_summary_from_manifests_equals_the_scan(
    params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = build_archive(MemoryStore()).session()
    fast, sql = summary(session, params)
    assert "computed from the findings" in sql
    slow = scanned(session, params, monkeypatch)
    assert fast.schema == slow.schema
    assert fast.to_pylist() == slow.to_pylist()


def test_the_known_answer_is_still_given(monkeypatch: pytest.MonkeyPatch) -> None:
    session = build_archive(MemoryStore()).session()
    table, _ = summary(session, Params())
    found = {(row["finding"], row["chain_id"]): row["records"] for row in table.to_pylist()}
    assert found[("marketing_without_consent", CHAIN_A)] == 1
    assert found[("marketing_without_consent", CHAIN_B)] == 1
    assert found[("failed_delivery", CHAIN_A)] == 1
    assert table.to_pylist() == scanned(session, Params(), monkeypatch).to_pylist()


def test_records_spans_the_whole_archive_after_a_summary() -> None:
    session = build_archive(MemoryStore()).session()
    before = session.query("SELECT count(*) AS n FROM records").table.to_pylist()
    summary(session, Params(since=START + timedelta(hours=12)))
    assert session.query("SELECT count(*) AS n FROM records").table.to_pylist() == before


def test_the_access_log_says_how_it_was_computed() -> None:
    fixture = build_archive(MemoryStore())
    session = fixture.session()
    result = session.report("compliance", Params())
    logged = session.query("SELECT sql FROM access_log WHERE report = 'compliance'").table
    assert logged.column("sql").to_pylist() == [result.sql]
    assert "segment(s) scanned" in result.sql


def test_archives_sealed_before_findings_are_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as legacy:
        legacy.setattr(segments_module, "findings_of", lambda records: None)
        session = build_archive(MemoryStore()).session()
    table, sql = summary(session, Params())
    assert "computed from the findings" not in sql
    assert table.to_pylist() == scanned(session, Params(), monkeypatch).to_pylist()


def test_segments_sealed_before_findings_are_scanned_beside_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = segments_module.findings_of
    calls = iter(range(10**6))

    def first_two_unrecorded(records):  # type: ignore[no-untyped-def]
        return None if next(calls) < 2 else real(records)

    with monkeypatch.context() as legacy:
        legacy.setattr(segments_module, "findings_of", first_two_unrecorded)
        session = build_archive(MemoryStore()).session()
    for params in (Params(), Params(since=START + timedelta(hours=12))):
        table, sql = summary(session, params)
        assert "computed from the findings" in sql
        assert table.to_pylist() == scanned(session, params, monkeypatch).to_pylist()


flags = st.lists(
    st.sampled_from(["marketing_without_consent", "capture_gap", "sent_after_opt_out"]), max_size=3
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            flags,
            st.sampled_from(["message", "status", "outbound"]),
            st.sampled_from([None, "failed", "delivered"]),
            st.integers(0, 10_000),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_findings_of_records_and_of_their_sealed_rows_agree(
    shapes: list[tuple[list[str], str, str | None, int]],
) -> None:
    records: list[Record] = [
        scenario_record(
            CHAIN_A, n, 0, minute, kind=kind, status=status, flags=tuple(flagged), text=None
        )
        for n, (flagged, kind, status, minute) in enumerate(shapes)
    ]
    ordered = sorted(records, key=lambda r: (r.event_time, r.record_id))
    table = records_table(seal_records(ordered, first_seq=0, prev_chain_hash=b"\0" * 32))
    assert findings_of(records) == findings_of_table(table)


def test_verify_computes_from_the_rows_it_proves() -> None:
    session = build_archive(MemoryStore()).session()
    result = session.report("compliance", Params(), verify=True)
    assert "computed from the findings" not in result.sql
    assert result.verification is not None
    assert result.table.to_pylist() == session.report("compliance", Params()).table.to_pylist()


@pytest.mark.parametrize("micro", [1, 500, 999])
def test_bounds_finer_than_a_millisecond_give_the_scans_answer(
    micro: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = build_archive(MemoryStore()).session()
    # Day 1 of chain A starts at minute 5 with flagged records (see query/_archive.py).
    moment = START + timedelta(days=1, minutes=5, microseconds=micro)
    for params in (Params(since=moment), Params(until=moment)):
        fast, sql = summary(session, params)
        assert "computed from the findings" in sql
        assert fast.to_pylist() == scanned(session, params, monkeypatch).to_pylist()


def test_a_failed_summary_scan_is_logged_like_any_failed_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from coexarchive.query import session as session_module
    from coexarchive.query.session import QueryError

    fixture = build_archive(MemoryStore())
    session = fixture.session()
    real = session_module.register_records

    def broken(con, catalog, segments, **kwargs):  # type: ignore[no-untyped-def]
        real(con, catalog, segments, **kwargs)
        con.register("records", pa.table({"nonsense": [1]}))  # every report over it fails

    monkeypatch.setattr(session_module, "register_records", broken)
    with pytest.raises(QueryError):
        session.report("compliance", Params(since=START + timedelta(hours=12)))
    monkeypatch.undo()
    logged = session.query(
        "SELECT report FROM access_log WHERE report = 'compliance'"
    ).table.to_pylist()
    assert logged == [{"report": "compliance"}]
