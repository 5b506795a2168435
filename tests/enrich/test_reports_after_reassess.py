"""After reassessment, every report and export shows the archive's current flags.

The golden month's late run (``test_golden``): the CRM consent export, a stop, a pause, a
window-opening message and a capture arrive after what they govern, then ``reassess`` seals
assessment records. The README's example is this: after ``consent import`` and ``reassess``,
``report outbound-without-consent`` and ``report compliance`` must no longer list the sends the
CRM opt-ins cleared, and a flag reassessment added must show wherever flags are shown.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from coexarchive.cli import main
from coexarchive.enrich import current_flags
from coexarchive.enrich.context import read_records
from coexarchive.export.bundle import ExportRequest, Selection, build_bundle
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind, Record
from coexarchive.store import EmbeddedS3, S3Store
from coexarchive.store.memory import MemoryStore
from enrich import harness
from enrich.scenario import FOW, MWC, PHONE, SAO, WABA, Scenario, build
from enrich.test_golden import EXPECTED_COUNTS, NOW_MS, _catalogue, _imports
from support.archive import ARCHIVE, short_policy, trust_for, use_cli_environment

CHAINS = (PHONE, f"waba-{WABA}")
Key = tuple[str, int]


class Archive:
    def __init__(self, store: MemoryStore, sealed_flags: dict[Key, frozenset[str]]) -> None:
        self.store = store
        self.sealed_flags = sealed_flags  # (chain, seq) → flags as sealed, before reassessment
        self.records: dict[Key, Record] = {}
        self.current: dict[Key, frozenset[str]] = {}
        for chain in CHAINS:
            rows = read_records(
                store,
                chain,
                kinds=harness.ALL_KINDS,
                since_ms=0,
                until_ms=2**62,
                trust=harness.TRUST,
            )
            now = current_flags(record for _, record in rows)
            for seq, record in rows:
                if record.kind != Kind.ASSESSMENT:
                    self.records[(chain, seq)] = record
                    self.current[(chain, seq)] = frozenset(now[record.record_id])

    def session(self) -> AuditSession:
        log = AccessLog(
            self.store, signer=harness.SIGNER, archive_name=ARCHIVE, policy=short_policy()
        )
        return AuditSession(
            self.store,
            access_log=log,
            who="carol@compliance",
            trust=trust_for(harness.SIGNER),
            clock=lambda: NOW_MS,
        )

    def with_flag(self, flag: str, kind: str | None = None) -> set[Key]:
        return {
            key
            for key, flags in self.current.items()
            if flag in flags and (kind is None or self.records[key].kind == kind)
        }


@pytest.fixture(scope="module")
def archive() -> Archive:
    scenario: Scenario = build()
    store = MemoryStore()
    _catalogue(store, scenario)
    harness.ingest(store, scenario.objects(run=1, seed=7))
    at_ingest = {}
    for chain in CHAINS:
        for seq, record in read_records(
            store, chain, kinds=harness.ALL_KINDS, since_ms=0, until_ms=2**62, trust=harness.TRUST
        ):
            at_ingest[(chain, seq)] = frozenset(record.flags)
    _imports(store, scenario)
    harness.ingest(store, scenario.objects(run=2, seed=8))
    assert harness.run_reassess(store, PHONE, now_ms=NOW_MS) > 0
    return Archive(store, at_ingest)


def keys(rows: list[dict[str, Any]]) -> set[Key]:
    return {(row["chain_id"], row["seq"]) for row in rows}


def test_reassessment_changed_flags_in_both_directions(archive: Archive) -> None:
    changed = {
        key: (archive.sealed_flags[key], flags)
        for key, flags in archive.current.items()
        if key in archive.sealed_flags and archive.sealed_flags[key] != flags
    }
    assert any(old - new for old, new in changed.values())  # removed
    assert any(new - old for old, new in changed.values())  # added


@pytest.mark.parametrize(
    ("report", "flag"),
    [
        ("outbound-without-consent", MWC),
        ("after-opt-out", SAO),
        ("freeform-outside-window", FOW),
    ],
)
def test_flag_reports_list_exactly_the_records_flagged_now(
    archive: Archive, report: str, flag: str
) -> None:
    rows = archive.session().report(report, Params(), verify=True).table.to_pylist()
    assert keys(rows) == archive.with_flag(flag, "outbound")
    assert all(flag in row["flags"] and row["kind"] != "assessment" for row in rows)


def test_the_readme_example_consent_import_then_reassess(archive: Archive) -> None:
    sealed_mwc = {k for k, flags in archive.sealed_flags.items() if MWC in flags}
    rows = archive.session().report("outbound-without-consent", Params()).table.to_pylist()
    assert len(rows) == EXPECTED_COUNTS[MWC] < len(sealed_mwc)
    summary = archive.session().report("compliance", Params()).table.to_pylist()
    assert sum(r["records"] for r in summary if r["finding"] == MWC) == EXPECTED_COUNTS[MWC]


def test_after_opt_out_per_customer_includes_flags_reassessment_added(archive: Archive) -> None:
    session = archive.session()
    added = {k for k in archive.with_flag(SAO) if SAO not in archive.sealed_flags.get(k, set())}
    assert added, "the scenario's late stop must add sent_after_opt_out"
    for key in added:
        customer = archive.records[key].customer_id
        rows = session.report("after-opt-out", Params(customer=customer)).table.to_pylist()
        assert key in keys(rows)
        row = next(r for r in rows if (r["chain_id"], r["seq"]) == key)
        assert row["opted_out_at"] is not None and row["flags_seq"] is not None


def test_flags_view_and_compliance_count_current_flags(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = archive.session()
    flags = session.query("SELECT chain_id, seq, flag, flags_seq FROM flags", verify=True)
    shown: dict[Key, set[str]] = {}
    for row in flags.table.to_pylist():
        shown.setdefault((row["chain_id"], row["seq"]), set()).add(row["flag"])
    assert shown == {key: set(f) for key, f in archive.current.items() if f}
    counts = Counter(flag for f in archive.current.values() for flag in f)
    assert dict(counts) == EXPECTED_COUNTS
    fast = session.report("compliance", Params()).table
    with monkeypatch.context() as scan_only:
        scan_only.setattr(AuditSession, "_summary", lambda *args: None)
        assert session.report("compliance", Params()).table == fast
    totals = Counter()
    for row in fast.to_pylist():
        totals[row["finding"]] += row["records"]
    assert {k: v for k, v in totals.items() if k != "failed_delivery"} == EXPECTED_COUNTS


def test_transcripts_and_bundles_show_current_flags(archive: Archive) -> None:
    session = archive.session()
    customers = sorted({r.customer_id for r in archive.records.values() if r.customer_id})
    for customer in customers:
        rows = session.report("transcript", Params(customer=customer)).table.to_pylist()
        for row in rows:
            key = (row["chain_id"], row["seq"])
            assert frozenset(row["flags"]) == archive.current[key], key
    customer = next(
        archive.records[k].customer_id
        for k in sorted(archive.current)
        if archive.current[k] != archive.sealed_flags.get(k, archive.current[k])
    )
    request = ExportRequest(
        matter="M-3", selection=Selection(customer=customer), who="dana@legal", as_of=NOW_MS
    )
    files = build_bundle(ArchiveCatalog(archive.store), trust_for(harness.SIGNER), request).files
    reader = csv.DictReader(io.StringIO(files["records/records.csv"].decode(), newline=""))
    for row in reader:
        key = (row["chain_id"], int(row["seq"]))
        if row["kind"] != "assessment":
            assert frozenset(filter(None, row["current_flags"].split(";"))) == archive.current[key]
    assert verify_bundle(files, trust=trust_for(harness.SIGNER)).ok


# -- the same as a compliance officer runs it, on the embedded S3 ---------------------------------


@pytest.mark.integration
def test_cli_reassess_then_reports_as_the_readme_describes(
    s3_store: S3Store,
    seaweed: EmbeddedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = build()
    _catalogue(s3_store, scenario)  # type: ignore[arg-type]
    harness.ingest(s3_store, scenario.objects(run=1, seed=7))
    _imports(s3_store, scenario)  # type: ignore[arg-type]
    harness.ingest(s3_store, scenario.objects(run=2, seed=8))
    use_cli_environment(monkeypatch, seaweed, s3_store, harness.SIGNER, tmp_path, auditor="c@x")

    def report(*argv: str) -> list[dict[str, Any]]:
        assert main(["report", *argv, "--format", "json"]) == 0
        rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
        return rows

    before = report("outbound-without-consent")
    assert main(["reassess", "--since", "2026-03-01"]) == 0
    printed = capsys.readouterr().out
    assert "-marketing_without_consent" in printed and "assessment record(s) sealed" in printed
    after = report("outbound-without-consent")
    assert len(after) == EXPECTED_COUNTS[MWC] < len(before)
    assert all(row["kind"] == "outbound" for row in after)
    summary = report("compliance")
    assert sum(r["records"] for r in summary if r["finding"] == MWC) == EXPECTED_COUNTS[MWC]
    assert main(["report", "outbound-without-consent", "--verify", "--format", "json"]) == 0
    assert "values shown equal the proven records" in capsys.readouterr().err
