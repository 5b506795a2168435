"""The ``media`` view and the ``media-gaps`` report, proven by ``--verify``."""

from __future__ import annotations

from typing import Any

import pytest

from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from support.archive import ARCHIVE, START_MS, short_policy, signer, trust_for

pytestmark = pytest.mark.integration


def session(store: Any) -> AuditSession:
    ticks = iter(range(START_MS, START_MS + 10**9, 1_000))
    log = AccessLog(store, signer=signer(), archive_name=ARCHIVE, policy=short_policy())
    return AuditSession(
        store, access_log=log, who="auditor@example.com", trust=trust_for(signer()),
        clock=lambda: next(ticks),
    )  # fmt: skip


def test_media_view_shows_each_fetch_with_its_message(media_archive: dict[str, Any]) -> None:
    result = session(media_archive["store"]).query(
        "SELECT * FROM media ORDER BY media_id", verify=True
    )
    rows = result.table.to_pylist()
    assert [(r["media_id"], r["status"], r["cause"]) for r in rows] == [
        ("m0", "stored", None),
        ("m1", "stored", None),
        ("m2", "stored", None),
        ("m3", "failed", "not_found"),
    ]
    messages = {m.record_id: m for m in media_archive["messages"]}
    for row in rows:
        assert row["message_seq"] is not None and row["ref_record_id"] in messages
        if row["status"] == "stored":
            assert row["object_key"] == f"media/v1/sha256={row['sha256']}" and row["size"] > 0
            assert row["mime_type"] == "image/jpeg"
    assert result.verification is not None and result.verification.rows == 4
    assert result.verification.not_verified == []
    assert {"sha256", "size", "cause", "caption"} <= set(result.verification.compared)


def test_media_gaps_report_by_chain_and_day(media_archive: dict[str, Any]) -> None:
    audit = session(media_archive["store"])
    rows = audit.report("media-gaps", Params(), verify=True).table.to_pylist()
    assert [(r["gap"], r["cause"], r["attachments"]) for r in rows] == [
        ("media_gap", "not_found", 1),
        ("not_fetched", "", 1),
    ]
    detail = audit.query(
        "SELECT * FROM media WHERE list_contains(flags, 'media_gap')", verify=True
    ).table.to_pylist()
    assert [r["media_id"] for r in detail] == ["m3"]
