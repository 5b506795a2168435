"""Messages of a type the catalogue does not know (a poll) are messages: in ``messages``, in the
customer's transcript, and rendered readably in exported transcripts and RSMF.

Normalisation seals them as kind ``unsupported`` with the origin and direction of the message they
came in as (``schemas/RECORD_KINDS.md``); an unknown webhook *field* is also kind ``unsupported``
but has direction ``none`` and is not a message.
"""

from __future__ import annotations

import orjson
import pytest
from query._archive import ALICE, Fixture, build_archive

from coexarchive.export.bundle import ExportRequest, Selection, build_bundle
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.reports import Params
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record
from coexarchive.store import MemoryStore
from support.archive import DAY_MS, START_MS, scenario_record

CHAIN_C = "900000000000003"
POLL = {"name": "Which day suits you?", "options": [{"name": "Monday"}, {"name": "Tuesday"}]}


def poll_records() -> list[Record]:
    def raw(**item: object) -> str:
        return orjson.dumps({"v": 1, "raw": item}).decode()

    return [
        scenario_record(
            CHAIN_C,
            1,
            0,
            1,
            kind="unsupported",
            origin="business_app",
            direction="outbound",
            msg_type="poll",
            customer_id=ALICE,
            customer_wa_id=ALICE,
            detail=raw(type="poll", poll=POLL),
        ),
        scenario_record(
            CHAIN_C,
            2,
            0,
            2,
            kind="unsupported",
            msg_type="poll_vote",
            customer_id=ALICE,
            customer_wa_id=ALICE,
            detail=raw(type="poll_vote", poll_vote={"poll_id": "p-1", "options": [1, 3]}),
        ),
        scenario_record(  # an unknown webhook field: not a message
            CHAIN_C,
            3,
            0,
            3,
            kind="unsupported",
            origin="system",
            direction="none",
            wamid=None,
            msg_type="brand_new_field",
            customer_id=ALICE,
            detail=raw(something="else"),
        ),
    ]


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    return build_archive(MemoryStore(), extra={CHAIN_C: poll_records()})


def test_polls_and_votes_are_messages_and_unknown_fields_are_not(fixture: Fixture) -> None:
    found = fixture.session().query(
        "SELECT seq, kind, msg_type, direction FROM messages WHERE chain_id = $c ORDER BY seq",
        {"c": CHAIN_C},
    )
    assert found.table.to_pylist() == [
        {"seq": 0, "kind": "unsupported", "msg_type": "poll", "direction": "outbound"},
        {"seq": 1, "kind": "unsupported", "msg_type": "poll_vote", "direction": "inbound"},
    ]


def test_the_customers_transcript_holds_the_poll(fixture: Fixture) -> None:
    session = fixture.session()
    rows = session.report("transcript", Params(customer=ALICE, chain=CHAIN_C)).table.to_pylist()
    assert [r["msg_type"] for r in rows] == ["poll", "poll_vote"]
    conversations = session.query(
        "SELECT messages, inbound, outbound FROM conversations WHERE chain_id = $c", {"c": CHAIN_C}
    ).table.to_pylist()
    assert conversations == [{"messages": 2, "inbound": 1, "outbound": 1}]


def test_volume_counts_polls_as_messages(fixture: Fixture) -> None:
    rows = fixture.session().report("volume", Params(chain=CHAIN_C)).table.to_pylist()
    assert sum(r["messages"] for r in rows) == 2
    assert sum(r["records"] for r in rows) == 3


def test_exported_transcript_and_rsmf_show_the_question_and_options(fixture: Fixture) -> None:
    request = ExportRequest(
        matter="M-2",
        selection=Selection(customer=ALICE),
        who="dana@legal",
        as_of=START_MS + 10 * DAY_MS,
    )
    files = build_bundle(ArchiveCatalog(fixture.store), fixture.trust, request).files
    page = next(v for k, v in files.items() if k.startswith("transcripts/") and CHAIN_C in k)
    assert b"[poll] Which day suits you? options: Monday / Tuesday" in page
    assert b"[poll vote] poll p-1 options: 1 / 3" in page
    rsmf = b"".join(v for k, v in files.items() if k.startswith("rsmf/") and CHAIN_C in k)
    assert rsmf  # the RSMF body is inside a zip: checked through its manifest below
    from export.test_bundle import rsmf_parts

    _, manifest, _ = rsmf_parts(rsmf)
    bodies = [e["body"] for e in manifest["events"]]
    assert "[poll] Which day suits you? options: Monday / Tuesday" in bodies
    assert all(e["type"] == "message" for e in manifest["events"] if e["body"].startswith("[poll"))
    assert verify_bundle(files, trust=fixture.trust).ok


def test_an_unreadable_uncatalogued_message_still_says_what_it_is() -> None:
    from coexarchive.export._rows import uncatalogued_text

    row = {"msg_type": "hologram", "detail": orjson.dumps({"raw": {"hologram": 7}}).decode()}
    assert uncatalogued_text(row) == (
        "[hologram] (a message type the archive does not interpret; its JSON is in detail.raw)"
    )
    hostile = {"msg_type": "poll", "detail": '{"raw": {"poll": {"name": ["x"], "options": "y"}}}'}
    assert uncatalogued_text(hostile).startswith("[poll] (a message type")
