"""Bundles show current flags: a re-assessed record's latest assessment's, in CSV, transcript, RSMF.

The bundle carries the assessment records themselves (sealed, with their proofs), so the
renderings, and verify-bundle rebuilding them from proven records, agree on current flags.
"""

from __future__ import annotations

import csv
import io
import re

import orjson
import pytest
from export.test_bundle import rsmf_parts
from query._archive import ALICE, CAROL, CHAIN_A, Fixture
from query.test_current_flags import MWC, TNA
from query.test_current_flags import fixture as flags_fixture  # noqa: F401

from coexarchive.export.bundle import Bundle, ExportRequest, Selection, build_bundle
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.views import ArchiveCatalog
from support.archive import DAY_MS, START_MS

AS_OF = START_MS + 10 * DAY_MS


def bundle(fixture: Fixture, selection: Selection, query_result: object = None) -> Bundle:
    request = ExportRequest(matter="M-1", selection=selection, who="dana@legal", as_of=AS_OF)
    return build_bundle(
        ArchiveCatalog(fixture.store),
        fixture.trust,
        request,
        query_result=query_result,  # type: ignore[arg-type]
    )


def csv_rows(files: dict[str, bytes]) -> dict[tuple[str, str], dict[str, str]]:
    reader = csv.DictReader(io.StringIO(files["records/records.csv"].decode(), newline=""))
    return {(row["chain_id"], row["seq"]): row for row in reader}


def test_customer_bundle_renders_current_flags(flags_fixture: Fixture) -> None:  # noqa: F811
    built = bundle(flags_fixture, Selection(customer=CAROL))
    files = built.files
    kinds = [orjson.loads(line)["kind"] for line in files["records/records.jsonl"].splitlines()]
    assert kinds.count("assessment") == 2  # both of CAROL's: the bundle holds the evidence
    rows = csv_rows(files)
    promo = rows[(CHAIN_A, "6")]
    assert promo["flags"] == TNA  # as sealed
    assert (promo["current_flags"], promo["flags_seq"]) == (f"{MWC};{TNA}", "16")
    assert rows[(CHAIN_A, "7")]["current_flags"] == "freeform_outside_window"
    assert rows[(CHAIN_A, "7")]["flags_seq"] == ""

    page = next(v for k, v in files.items() if k.startswith("transcripts/") and CAROL in k)
    row = re.search(rb'<tr class="out" id="seq-6">.*?</tr>', page, re.S)
    assert row is not None
    assert b'<span class="flag">marketing_without_consent</span>' in row.group()
    assert b"re-assessed #16; flags when sealed: template_not_approved" in row.group()
    assert b"Re-assessment of record" in page

    rsmf = next(v for k, v in files.items() if k.startswith("rsmf/") and CAROL in k)
    _, manifest, _ = rsmf_parts(rsmf)
    event = next(e for e in manifest["events"] if e["id"] == f"{CHAIN_A}:6")
    custom = {c["name"]: c["value"] for c in event["custom"]}
    assert custom["Flags"] == f"{MWC}, {TNA}"
    assert custom["Flags set by re-assessment"] == "16"
    assert custom["Flags when sealed"] == TNA
    assert verify_bundle(files, trust=flags_fixture.trust).ok


def test_query_bundle_brings_the_assessments_of_its_records(flags_fixture: Fixture) -> None:  # noqa: F811
    session = flags_fixture.session()
    sql = "SELECT chain_id, seq FROM messages WHERE customer_id = $c AND kind = 'outbound'"
    result = session.query(sql, {"c": ALICE})
    built = bundle(flags_fixture, Selection(query=sql), result.table)
    rows = csv_rows(built.files)
    assert rows[(CHAIN_A, "5")]["current_flags"] == MWC  # added by assessment seq 14
    assert rows[(CHAIN_A, "14")]["kind"] == "assessment"
    assert verify_bundle(built.files, trust=flags_fixture.trust).ok


@pytest.mark.parametrize("customer", [CAROL, ALICE])
def test_bundle_flags_equal_the_views(flags_fixture: Fixture, customer: str) -> None:  # noqa: F811
    shown = {
        (r["chain_id"], str(r["seq"])): ";".join(r["flags"])
        for r in flags_fixture.session()
        .query("SELECT chain_id, seq, flags FROM messages WHERE customer_id = $c", {"c": customer})
        .table.to_pylist()
    }
    rows = csv_rows(bundle(flags_fixture, Selection(customer=customer)).files)
    assert {key: rows[key]["current_flags"] for key in shown} == shown
