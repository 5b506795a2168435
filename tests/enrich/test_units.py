"""Consent keywords and ledger, CRM import validation, catalogue parsing, context on real S3."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coexarchive.enrich.consent import (
    DEFAULT_KEYWORDS,
    OPTED_IN,
    OPTED_OUT,
    UNKNOWN,
    ConsentEvent,
    ConsentLedger,
    KeywordConfig,
    keyword_event,
)
from coexarchive.enrich.context import load_context, waba_chain
from coexarchive.enrich.crm import parse_consent_file
from coexarchive.enrich.templates import TemplateEvent, TemplateRegistry, parse_catalogue
from coexarchive.errors import ConfigError, FormatError
from coexarchive.records import Record
from coexarchive.store import EmbeddedS3, layout
from coexarchive.store.s3 import S3Store
from enrich import harness
from enrich.scenario import PHONE, WABA, Scenario, at, build
from support.archive import ListingStore

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("STOP", OPTED_OUT),
        ("stop!", OPTED_OUT),
        ("  Stop  all 🙏", OPTED_OUT),
        ("BAJA", OPTED_OUT),
        ("Parar.", OPTED_OUT),
        ("रोकें।", OPTED_OUT),
        ("band karo", OPTED_OUT),
        ("Berhenti", OPTED_OUT),
        ("توقف", OPTED_OUT),
        ("START", OPTED_IN),
        ("alta", OPTED_IN),
        ("Começar", OPTED_IN),
        ("शुरू करें", OPTED_IN),
        ("Shuru karo", OPTED_IN),
        ("MULAI", OPTED_IN),
        ("Please stop by tomorrow", None),
        ("stopp", None),
        ("", None),
        ("STOP " * 20, None),
    ],
)
def test_keywords_match_whole_messages_in_five_markets(text: str, state: str | None) -> None:
    match = DEFAULT_KEYWORDS.match_text(text)
    assert (match.state if match else None) == state


def test_a_keyword_message_becomes_a_consent_record_with_a_stable_id() -> None:
    message = Record(
        PHONE,
        "m1",
        "message",
        "customer",
        "inbound",
        5,
        customer_id="34600000003",
        customer_wa_id="34600000003",
        msg_type="text",
        text="BAJA",
        wamid="w1",
    )
    event = keyword_event(message, DEFAULT_KEYWORDS)
    assert event is not None and event == keyword_event(message, DEFAULT_KEYWORDS)
    assert (event.kind, event.msg_type, event.consent_state, event.ref_record_id) == (
        "consent_event",
        "all",
        OPTED_OUT,
        "m1",
    )
    echo = Record(
        PHONE,
        "m2",
        "echo",
        "business_app",
        "outbound",
        5,
        customer_id="1",
        msg_type="text",
        text="STOP",
    )
    assert keyword_event(echo, DEFAULT_KEYWORDS) is None


def test_a_button_payload_can_be_configured_as_an_opt_out() -> None:
    config = KeywordConfig(payloads_opt_out=("STOP_PROMOS",), purpose="marketing")
    button = Record(
        PHONE,
        "m3",
        "message",
        "customer",
        "inbound",
        5,
        customer_id="1",
        customer_wa_id="1",
        msg_type="button",
        text="Stop promotions",
        detail='{"button_payload":"STOP_PROMOS"}',
    )
    event = keyword_event(button, config)
    assert event is not None and (event.msg_type, event.status) == ("marketing", OPTED_OUT)


def test_a_keyword_cannot_be_both_opt_out_and_opt_in() -> None:
    with pytest.raises(ConfigError, match="both"):
        KeywordConfig(opt_out={"en": ("STOP",)}, opt_in={"x": ("stop",)})


def test_ledger_is_as_of_per_purpose_and_opt_out_wins_a_tie() -> None:
    ledger = ConsentLedger(
        [
            ConsentEvent("1", ("a",), "marketing", OPTED_IN, 100),
            ConsentEvent("2", ("a", "US.1"), "all", OPTED_OUT, 200),
            ConsentEvent("3", ("a",), "marketing", OPTED_IN, 200),
            ConsentEvent("4", ("US.1",), "other", OPTED_IN, 300),
        ]
    )
    assert ledger.state_at(["a"], "marketing", 99) == (UNKNOWN, None)
    assert ledger.state_at(["a"], "marketing", 150)[0] == OPTED_IN
    assert ledger.state_at(["a"], "marketing", 200)[0] == OPTED_OUT
    assert ledger.state_at(["a"], "other", 300)[0] == OPTED_OUT
    assert ledger.state_at(["a", "US.1"], "other", 300)[0] == OPTED_IN


def test_registry_keeps_status_and_category_apart_and_normalises_language() -> None:
    registry = TemplateRegistry(
        [
            TemplateEvent("1", "t", "en_us", 100, "APPROVED", "UTILITY"),
            TemplateEvent("2", "t", "en_us", 200, None, "MARKETING"),
            TemplateEvent("3", "t", "en_us", 300, "PAUSED", None),
        ]
    )
    assert registry.facts_at("t", "en-US", 250).status == "APPROVED"
    assert registry.facts_at("t", "EN_US", 250).category == "MARKETING"
    assert registry.facts_at("t", "en_US", 300).status == "PAUSED"
    assert registry.facts_at("t", "en_US", 99).status is None


def test_consent_import_reports_bad_rows_by_line_and_keeps_the_rest(scenario: Scenario) -> None:
    parsed = parse_consent_file(
        scenario.crm_csv, fmt="csv", source_name="crm.csv", now_ms=NOW, chain_id=PHONE
    )
    assert parsed.report() == [
        "line 5: timestamp '31/01/2026' is not ISO 8601 or unix seconds",
        "line 6: purpose 'promotions' is not marketing, other or all",
        "line 7: evidence missing",
        "line 8: customer is neither a phone number (wa_id) nor a BSUID",
        "line 9: timestamp is in the future",
        "line 10: 4 fields where the header has 6",
        "line 11: state is not opted_in or opted_out",
    ]
    assert [r.customer_id for r in parsed.records] == [
        "447700900001",
        "5511900000002",
        "34600000003",
    ]


def test_consent_import_reads_json_arrays_and_lines_with_line_numbers() -> None:
    good = {
        "customer": "US.123",
        "purpose": "other",
        "state": "opted_out",
        "timestamp": 1767571200,
        "source": "ivr",
        "evidence": "call-77",
    }
    array = "[\n" + json.dumps(good) + ",\n" + json.dumps({**good, "state": "?"}) + "\n]"
    parsed = parse_consent_file(
        array.encode(), fmt="json", source_name="x", now_ms=NOW, chain_id=PHONE
    )
    assert (len(parsed.records), parsed.report()) == (
        1,
        ["line 3: state is not opted_in or opted_out"],
    )
    lines = json.dumps(good) + "\n{broken\n" + json.dumps({**good, "chain_id": "other-1"}) + "\n"
    parsed = parse_consent_file(lines.encode(), fmt="json", source_name="x", now_ms=NOW)
    assert [p.line for p in parsed.problems] == [1, 2]  # no chain for line 1; line 2 not JSON
    assert [r.chain_id for r in parsed.records] == ["other-1"]
    assert parsed.records[0].customer_user_id == "US.123"


def test_a_csv_without_the_required_columns_is_refused() -> None:
    with pytest.raises(FormatError, match="header lacks"):
        parse_consent_file(b"customer,state\n1,in\n", fmt="csv", source_name="x", now_ms=NOW)


def test_catalogue_accepts_the_graph_api_list_and_reports_incomplete_entries() -> None:
    data = {
        "data": [
            {
                "name": "a",
                "language": "en_US",
                "status": "approved",
                "category": "MARKETING",
                "id": 1700000000000042,
                "quality_score": {"score": "GREEN"},
            },
            "junk",
        ],
        "paging": {},
    }
    entries, problems = parse_catalogue(json.dumps(data).encode())
    assert [(e.name, e.status, e.template_id) for e in entries] == [
        ("a", "APPROVED", "1700000000000042")
    ]
    assert problems == ["data[1]: not an object"]
    with pytest.raises(FormatError):
        parse_catalogue(b'{"paging": {}}')


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build()


@pytest.mark.integration
def test_context_and_reassess_on_object_locked_s3(s3_store: S3Store, scenario: Scenario) -> None:
    """The split-run path on SeaweedFS: context reads segments through the S3 store."""
    now = at(32) * 1000
    harness.import_catalogue(
        store := s3_store,
        scenario.catalogue,
        waba_id=WABA,
        as_of_ms=scenario.catalogue_as_of_ms,
        now_ms=now,
    )
    harness.ingest(store, scenario.objects(run=1))
    harness.import_consent(store, scenario.crm_csv, chain_id=PHONE, now_ms=now)
    harness.ingest(store, scenario.objects(run=2))
    assert harness.run_reassess(store, PHONE, now_ms=now) == 11
    found = harness.effective(store, (PHONE, f"waba-{WABA}"))
    assert {k: v for k, v in found.items() if v} == {
        k: v for k, v in scenario.expected.items() if v
    }


@pytest.mark.integration
def test_cli_commands_against_s3(
    s3_store: S3Store,
    seaweed: EmbeddedS3,
    scenario: Scenario,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from coexarchive.enrich.cli import register
    from coexarchive.settings import Settings
    from support.archive import ARCHIVE, signer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    key_file = tmp_path / "signing.key"
    signer().to_file(key_file)
    trust_file = tmp_path / "trust.txt"
    trust_file.write_text(signer().verifier_key() + "\n")
    endpoint = seaweed.endpoint_url

    def settings(args: argparse.Namespace, **extra: object) -> Settings:
        return Settings(
            bucket=s3_store.bucket,
            endpoint_url=endpoint,
            archive_name=ARCHIVE,
            key_file=key_file,
            trust_file=trust_file,
            retention="GOVERNANCE:1",
        )

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(), lambda p: None, settings)
    crm = tmp_path / "crm.csv"
    crm.write_bytes(scenario.crm_csv)
    args = parser.parse_args(["consent", "import", str(crm), "--chain", PHONE])
    assert args.handler(args) == 1
    out = capsys.readouterr().out
    assert "rejected line 5: timestamp" in out and "10 row(s) read: 3 kept, 7 rejected" in out
    assert args.handler(args) == 1
    assert "0 consent record(s) sealed, 3 already in the archive" in capsys.readouterr().out
    catalogue = tmp_path / "templates.json"
    catalogue.write_bytes(scenario.catalogue)
    args = parser.parse_args(
        ["templates", "import", str(catalogue), "--waba", WABA, "--as-of", "2026-03-01T23:00:00Z"]
    )
    assert args.handler(args) == 1
    assert "2 new or changed" in capsys.readouterr().out
    args = parser.parse_args(["reassess", "--since", "2026-03-01", "--chain", PHONE, "--dry-run"])
    assert args.handler(args) == 0
    assert "0 record(s) whose flags changed (dry run" in capsys.readouterr().out


@pytest.mark.parametrize(("committed_size", "own_listed"), [(0, False), (None, True)])
def test_a_new_chains_own_past_is_not_listed_but_its_wabas_templates_are(
    committed_size: int | None, own_listed: bool
) -> None:
    store = ListingStore()
    load_context(
        store,
        PHONE,
        since_ms=at(0),
        until_ms=at(1),
        trust=harness.TRUST,
        waba_id=WABA,
        committed_size=committed_size,
    )
    own = layout.manifest_prefix(PHONE)
    assert (own in store.listed) is own_listed
    assert layout.manifest_prefix(waba_chain(WABA)) in store.listed


def test_a_committed_size_the_chains_manifests_do_not_reach_is_refused() -> None:
    # Committed seqs with no manifest: the past enrichment would read is not the signed one.
    with pytest.raises(FormatError, match="manifests end at seq 0, its checkpoint at 3"):
        load_context(
            ListingStore(),
            PHONE,
            since_ms=at(0),
            until_ms=at(1),
            trust=harness.TRUST,
            waba_id=WABA,
            committed_size=3,
        )
