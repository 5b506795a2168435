"""Each named report on a small archive with known answers (counts and specific rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from query._archive import ALICE, BOB, CAROL, CHAIN_A, CHAIN_B, build_archive

from coexarchive.errors import ConfigError
from coexarchive.query.reports import REPORTS, Params
from coexarchive.query.session import AuditSession
from coexarchive.store import MemoryStore


@pytest.fixture(scope="module")
def session() -> AuditSession:
    return build_archive(MemoryStore()).session()


def rows(session: AuditSession, name: str, **params: Any) -> list[dict[str, Any]]:
    result = session.report(name, Params(**params))
    return result.table.to_pylist()


def keys(found: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(row["chain_id"], row["seq"]) for row in found]


def test_transcript_is_every_message_of_the_customer_in_time_order(session: AuditSession) -> None:
    found = rows(session, "transcript", customer=ALICE)
    assert keys(found) == [
        (CHAIN_A, 0),
        (CHAIN_A, 1),
        (CHAIN_B, 0),
        (CHAIN_B, 1),
        (CHAIN_A, 5),
        (CHAIN_A, 11),
    ]
    assert found[0]["text"] == "Hi, is my order ready?"
    assert found[-1]["text"] == "Thanks!! 👍"
    assert {row["origin"] for row in found} == {"customer", "cloud_api", "business_app"}


def test_transcript_period_and_chain_narrow_it(session: AuditSession) -> None:
    since = datetime(2026, 1, 5, 0, 15, tzinfo=UTC)
    until = datetime(2026, 1, 7, tzinfo=UTC)
    assert keys(rows(session, "transcript", customer=ALICE, since=since, until=until)) == [
        (CHAIN_B, 0),
        (CHAIN_B, 1),
        (CHAIN_A, 5),
    ]
    assert keys(rows(session, "transcript", customer=ALICE, chain=CHAIN_B)) == [
        (CHAIN_B, 0),
        (CHAIN_B, 1),
    ]


def test_transcript_needs_a_customer(session: AuditSession) -> None:
    with pytest.raises(ConfigError, match="--customer"):
        session.report("transcript", Params())


def test_outbound_without_consent(session: AuditSession) -> None:
    found = rows(session, "outbound-without-consent")
    assert keys(found) == [(CHAIN_A, 4), (CHAIN_B, 2)]
    assert {row["customer_id"] for row in found} == {BOB}
    assert all(row["template_name"] == "promo_spring" for row in found)


def test_after_opt_out_names_the_opt_out_that_was_ignored(session: AuditSession) -> None:
    (row,) = rows(session, "after-opt-out")
    assert (row["chain_id"], row["seq"], row["customer_id"]) == (CHAIN_A, 4, BOB)
    assert row["opt_out_seq"] == 3
    assert row["opted_out_at"] == datetime(2026, 1, 5, 0, 30, tzinfo=UTC)


def test_template_usage_with_status_at_send_time(session: AuditSession) -> None:
    found = {
        (r["template_name"], r["template_language"], r["status_at_send"]): (
            r["sends"],
            r["not_approved"],
        )
        for r in rows(session, "template-usage")
    }
    assert found == {
        ("order_update", "en_US", "APPROVED"): (1, 0),
        ("promo_spring", "en_US", "APPROVED"): (1, 0),
        ("promo_spring", "en_US", "PAUSED"): (1, 1),
        ("promo_spring", "pt_BR", "APPROVED"): (1, 0),
    }


def test_freeform_outside_window(session: AuditSession) -> None:
    (row,) = rows(session, "freeform-outside-window")
    assert (row["chain_id"], row["seq"], row["customer_id"], row["window_open"]) == (
        CHAIN_A,
        7,
        CAROL,
        False,
    )


def test_failed_deliveries_join_the_message(session: AuditSession) -> None:
    (row,) = rows(session, "failed-deliveries")
    assert (row["chain_id"], row["seq"], row["error_code"]) == (CHAIN_A, 8, 131047)
    assert (row["msg_seq"], row["msg_text"], row["customer_id"]) == (7, "Are you there?", CAROL)


def test_capture_gaps_and_quarantine(session: AuditSession) -> None:
    found = rows(session, "capture-gaps")
    assert [(r["finding"], r["chain_id"], r["seq"]) for r in found] == [
        ("capture_gap", CHAIN_A, 10),
        ("history_declined", CHAIN_B, 3),
        ("quarantined", None, None),
        ("status_without_message", CHAIN_A, 9),
    ]
    quarantined = found[2]
    assert quarantined["reason"] == "invalid JSON"
    assert quarantined["raw_line"] == 4


def test_volume_by_day_and_origin(session: AuditSession) -> None:
    found = {
        (str(r["day"]), r["origin"]): (r["records"], r["messages"]) for r in rows(session, "volume")
    }
    assert found[("2026-01-05", "customer")] == (3, 2)  # two messages and one consent event
    assert found[("2026-01-06", "cloud_api")] == (5, 4)
    assert found[("2026-01-07", "system")] == (3, 0)
    assert sum(records for records, _ in found.values()) == 17


def test_compliance_summary_counts_every_flag(session: AuditSession) -> None:
    found = {(r["finding"], r["chain_id"]): r["records"] for r in rows(session, "compliance")}
    assert found == {
        ("capture_gap", CHAIN_A): 1,
        ("failed_delivery", CHAIN_A): 1,
        ("freeform_outside_window", CHAIN_A): 1,
        ("history_declined", CHAIN_B): 1,
        ("marketing_without_consent", CHAIN_A): 1,
        ("marketing_without_consent", CHAIN_B): 1,
        ("sent_after_opt_out", CHAIN_A): 1,
        ("status_without_message", CHAIN_A): 1,
        ("template_not_approved", CHAIN_A): 1,
    }


def test_verification_status_per_chain(session: AuditSession) -> None:
    found = {r["chain_id"]: r for r in rows(session, "verification")}
    assert found[CHAIN_A]["records"] == 13 and found[CHAIN_A]["checkpoints_verified"] == 3
    assert found[CHAIN_B]["status"] == "ok" and found[CHAIN_B]["tree_size"] == 4
    assert "access-log" in found


def test_access_report_shows_who_ran_what() -> None:
    fixture = build_archive(MemoryStore())
    alice = fixture.session(who="alice@compliance")
    alice.report("transcript", Params(customer=BOB))
    alice.query("SELECT count(*) AS n FROM messages")
    found = fixture.session(who="bob@compliance").report("access", Params()).table.to_pylist()
    assert [(r["who"], r["report"], r["rows"]) for r in found] == [
        ("alice@compliance", "transcript", 2),
        ("alice@compliance", None, 1),
    ]
    assert found[0]["params"] == '{"customer":"447700900002"}'
    assert found[1]["sql"] == "SELECT count(*) AS n FROM messages"
    assert all(len(r["result_sha256"]) == 64 for r in found)


def test_every_report_is_listed_with_one_line() -> None:
    assert len(REPORTS) == 12
    for report in REPORTS.values():
        assert report.summary and "\n" not in report.summary


def test_segment_files_no_manifest_commits_are_never_counted() -> None:
    """A crashed run leaves segment files without a manifest; queries must not see them."""
    store = MemoryStore()
    fixture = build_archive(store)
    committed = [
        k for k in store.list("archive/v1/chain=900000000000001/") if "date=2026-01-05" in k
    ]
    (key,) = committed
    data = store.get(key)
    # The same seq range under another content address (a crashed run sealing other input) ...
    store.put(key.replace(key[-24:-8], "0" * 16), data)
    # ... and a segment past the chain's head that never got its manifest.
    store.put(
        "archive/v1/chain=900000000000001/date=2026-01-08/"
        "00000000000000000013-00000000000000000016-0123456789abcdef.parquet",
        data,
    )
    found = fixture.session().query("SELECT count(*) AS n FROM records").table
    assert found.column("n").to_pylist() == [17]
