"""Template sends show the body the customer saw: the registry's text as of the send (the
catalogue entry in force, carried in the bundle with its proof), parameters filled in, buttons
listed, name and version; a send the registry has no text for says so. Hostile template text and
parameters are escaped; a bundle of an earlier format still renders and verifies as it did."""

from __future__ import annotations

import email
import io
import zipfile
from typing import Any

import orjson
import pytest
from export._evidence import (
    ALICE,
    CHAIN_A,
    DAY_MS,
    MIN,
    START_MS,
    Evidence,
    _detail,
    alice_bundle,
    build_evidence,
    business,
    reseal,
)

from coexarchive.enrich.templates import (
    TemplateRegistry,
    catalogue_records,
    parse_catalogue,
    template_event_of,
)
from coexarchive.export import formats
from coexarchive.export._rows import sealed_rows
from coexarchive.export.bundle import BUNDLE_FORMAT, read_bundle
from coexarchive.export.transcript import render_transcripts
from coexarchive.export.verify_bundle import BundleVerificationError, verify_bundle
from coexarchive.records import Record
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore
from support.archive import ARCHIVE, short_policy

WABA = "102290129340398"
HOSTILE_TEXT = "<b>Hi</b> {{1}}, your order {{2}} is ready <script>x()</script>"


def _catalogue(body: str, footer: str = "Reply STOP to opt out") -> bytes:
    entry = {
        "name": "order_ready",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "id": "1700000000000001",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order update"},
            {"type": "BODY", "text": body},
            {"type": "FOOTER", "text": footer},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Thanks"},
                    {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"},
                ],
            },
        ],
    }
    return orjson.dumps({"data": [entry]})


def _send(n: int, day: int, parameters: list[str]) -> Record:
    template = {
        "name": "order_ready",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in parameters]},
            {
                "type": "button",
                "sub_type": "url",
                "index": 1,
                "parameters": [{"type": "text", "text": "A<1>"}],
            },
        ],
    }
    return business(
        CHAIN_A,
        n,
        day,
        30,
        ALICE,
        msg_type="template",
        template_name="order_ready",
        template_language="en_US",
        template_category="UTILITY",
        template_status="APPROVED",
        detail=_detail(raw={"request": {"template": template, "type": "template"}}),
    )


def _build() -> Evidence:
    store = MemoryStore()
    sends = [
        _send(20, 0, ["Alice", "#1"]),  # before any catalogue: no text known
        _send(21, 2, ['<img src=x onerror="alert(1)">', "#2"]),  # first version
        _send(22, 5, ["Alice", "#3"]),  # after the text changed
    ]
    evidence = build_evidence(store, extra=sends)
    chain = f"waba-{WABA}"
    writer = ChainWriter(
        store, chain, signer=evidence.key, archive_name=ARCHIVE, policy=short_policy()
    )
    registry = TemplateRegistry()
    for as_of, body in ((START_MS + DAY_MS, HOSTILE_TEXT), (START_MS + 4 * DAY_MS, "Ready: {{2}}")):
        entries, problems = parse_catalogue(_catalogue(body))
        assert not problems
        records = catalogue_records(
            entries, waba_id=WABA, as_of_ms=as_of, imported_ms=as_of + MIN, registry=registry
        )
        assert len(records) == 1  # the second import differs only in its text, and is kept
        writer.append(records)
        registry = TemplateRegistry([e for r in records if (e := template_event_of(r))])
    return evidence


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return _build()


@pytest.fixture(scope="module")
def files(evidence: Evidence) -> dict[str, bytes]:
    return alice_bundle(evidence).files


def _page(files: dict[str, bytes]) -> str:
    (path,) = [p for p in files if p.startswith(f"transcripts/chain={CHAIN_A}/")]
    return files[path].decode()


def _rsmf_bodies(files: dict[str, bytes]) -> list[str]:
    bodies = []
    for path, data in files.items():
        if not path.startswith("rsmf/"):
            continue
        message = email.message_from_bytes(data)
        (part,) = [p for p in message.walk() if p.get_filename()]
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            manifest: dict[str, Any] = orjson.loads(archive.read("rsmf_manifest.json"))
        bodies += [str(event.get("body")) for event in manifest["events"]]
    return bodies


def test_new_bundles_carry_the_catalogue_entries(files: dict[str, bytes]) -> None:
    assert BUNDLE_FORMAT == "coexarchive.bundle/v4"
    records = [orjson.loads(line) for line in files["records/records.jsonl"].splitlines()]
    catalogue = [r for r in records if r["msg_type"] == "template_catalogue"]
    assert len(catalogue) == 2 and {r["chain_id"] for r in catalogue} == {f"waba-{WABA}"}


def test_a_send_shows_the_text_of_its_version_filled_in_and_escaped(
    files: dict[str, bytes],
) -> None:
    page = _page(files)
    # The first version: its hostile text and the hostile parameter are shown, inert.
    assert (
        "&lt;b&gt;Hi&lt;/b&gt; &lt;img src=x onerror=&quot;alert(1)&quot;&gt;, your order #2"
        in page
    )
    assert "<script>" not in page and "<img" not in page
    assert (
        "Template order_ready (en_US; UTILITY; APPROVED); version as of 2026-01-06T00:00:00" in page
    )
    assert "template id 1700000000000001" in page
    assert "[header] Order update" in page and "[footer] Reply STOP to opt out" in page
    assert (
        "[quick reply] Thanks" in page and "[url] Track → https://shop.example/t/A&lt;1&gt;" in page
    )
    # The later send shows the later text.
    assert "Ready: #3" in page and "version as of 2026-01-09T00:00:00" in page


def test_a_send_before_any_known_text_says_so(files: dict[str, bytes]) -> None:
    page = _page(files)
    assert "version unknown: the template registry holds no text for it as of this send" in page
    assert "sent body parameter 1: Alice" in page


def test_rsmf_bodies_show_the_same_text(files: dict[str, bytes]) -> None:
    bodies = "\n".join(_rsmf_bodies(files))
    assert "Ready: #3" in bodies and "version unknown" in bodies
    assert '<img src=x onerror="alert(1)">, your order #2' in bodies  # JSON string, not markup


def test_the_bundle_verifies_and_a_changed_template_text_is_caught(
    evidence: Evidence, files: dict[str, bytes]
) -> None:
    verify_bundle(files, trust=evidence.trust)
    lines = files["records/records.jsonl"].splitlines()
    forged = [
        line.replace(b"Ready: {{2}}", b"Ready now: {{2}}")
        if b"template_catalogue" in line
        else line
        for line in lines
    ]
    assert forged != lines
    altered = reseal({**files, "records/records.jsonl": b"\n".join(forged) + b"\n"})
    with pytest.raises(BundleVerificationError):
        verify_bundle(altered, trust=evidence.trust)


def test_earlier_formats_render_template_sends_as_they_did(files: dict[str, bytes]) -> None:
    parsed = read_bundle_rows(files)
    pages = render_transcripts(
        parsed, [b"\0" * 32] * len(parsed), zone_name="UTC", matter="m", rules=formats.V2
    )
    text = "".join(page.decode() for page in pages.values())
    assert "[template order_ready (en_US; UTILITY; APPROVED)]" in text
    assert "version as of" not in text


def read_bundle_rows(files: dict[str, bytes]) -> list[Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(files["records/records.parquet"]))
    return sealed_rows(table)


def test_golden_v2_sample_still_reads() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "bundles" / "v2.zip"
    assert orjson.loads(read_bundle(sample)["BUNDLE.json"])["format"] == "coexarchive.bundle/v2"
