"""Building bundles: selection, determinism, custody in the access log, RSMF against its schema."""

from __future__ import annotations

import base64
import email
import hashlib
import io
import json
import zipfile
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from export._evidence import (
    ALICE,
    AS_OF,
    CHAIN_A,
    CHAIN_B,
    alice_bundle,
    build_evidence,
    customer,
    request,
)
from jsonschema import Draft7Validator, FormatChecker

from coexarchive.errors import ConfigError, ProofError
from coexarchive.export import rsmf
from coexarchive.export.bundle import (
    Selection,
    build_bundle,
    export_bundle,
    zip_bytes,
)
from coexarchive.export.proofs import encode_tlog_proof, parse_tlog_proof
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.access_log import AccessLog
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ACCESS_LOG_CHAIN, ArchiveCatalog
from coexarchive.seal.merkle import verify_inclusion
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store import MemoryStore
from support.archive import ARCHIVE, DAY_MS, START_MS

# Relativity's published schema, kept in the repository with its licence (tests/fixtures/rsmf).
RSMF_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures/rsmf/rsmf_schema_2_0_0.json"


@pytest.fixture
def evidence():  # type: ignore[no-untyped-def]
    return build_evidence(MemoryStore())


def rsmf_parts(data: bytes) -> tuple[Message, dict[str, Any], dict[str, bytes]]:
    message = email.message_from_bytes(data)
    attachments = [part for part in message.walk() if part.get_filename()]
    assert [part.get_filename() for part in attachments] == ["rsmf.zip"]
    payload = attachments[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return message, orjson.loads(members["rsmf_manifest.json"]), members


# --- selection -----------------------------------------------------------------------------------


def test_customer_selection_spans_chains_and_keeps_only_that_customer(evidence) -> None:  # type: ignore[no-untyped-def]
    bundle = alice_bundle(evidence)
    rows = [orjson.loads(line) for line in bundle.files["records/records.jsonl"].splitlines()]
    assert {r["chain_id"] for r in rows} == {CHAIN_A, CHAIN_B}
    assert {r["customer_id"] for r in rows} == {ALICE}
    assert [(r["chain_id"], r["seq"]) for r in rows] == sorted(
        (r["chain_id"], r["seq"]) for r in rows
    )
    # Each line is exactly the canonical bytes the archive sealed.
    proofs = {
        (e["chain_id"], e["seq"]): e
        for chain in (CHAIN_A, CHAIN_B)
        for e in map(orjson.loads, bundle.files[f"proofs/chain={chain}.jsonl"].splitlines())
    }
    for line in bundle.files["records/records.jsonl"].splitlines():
        row = orjson.loads(line)
        leaf = hashlib.sha256(b"\x00" + line).hexdigest()
        assert proofs[(row["chain_id"], row["seq"])]["leaf_hash"] == leaf


def test_window_limits_the_records(evidence) -> None:  # type: ignore[no-untyped-def]
    selection = Selection(customer=ALICE, since=START_MS + DAY_MS, until=START_MS + 2 * DAY_MS)
    bundle = build_bundle(
        ArchiveCatalog(evidence.store), evidence.trust, request(selection=selection)
    )
    rows = [orjson.loads(line) for line in bundle.files["records/records.jsonl"].splitlines()]
    assert rows and all(START_MS + DAY_MS <= r["event_time"] < START_MS + 2 * DAY_MS for r in rows)


def test_no_match_and_bad_selections_are_refused(evidence) -> None:  # type: ignore[no-untyped-def]
    catalog = ArchiveCatalog(evidence.store)
    with pytest.raises(ConfigError, match="no sealed record"):
        build_bundle(catalog, evidence.trust, request(selection=Selection(customer="447700900999")))
    with pytest.raises(ConfigError, match="neither a phone number"):
        Selection(customer="nobody")
    with pytest.raises(ConfigError):
        Selection()
    with pytest.raises(ConfigError):
        Selection(customer=ALICE, query="SELECT 1")
    with pytest.raises(ConfigError, match="since"):
        Selection(customer=ALICE, since=2, until=1)
    with pytest.raises(ConfigError, match="time zone"):
        request(zone="Mars/Olympus")
    with pytest.raises(ConfigError, match="chain_id and seq"):
        build_bundle(
            catalog,
            evidence.trust,
            request(selection=Selection(query="SELECT 1")),
            query_result=pa.table({"x": [1]}),
        )


def test_export_refuses_an_archive_whose_rows_do_not_match_their_seal(evidence) -> None:  # type: ignore[no-untyped-def]
    store = evidence.store
    manifest = Manifest.from_bytes(store.get(list_manifests(store, CHAIN_A)[0]))
    table = read_segment(store.get(manifest.segment.key))
    texts = table.column("text").to_pylist()
    texts[0] = "altered in the archive"
    import pyarrow.parquet as pq

    altered = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))
    sink = io.BytesIO()
    pq.write_table(altered, sink)
    store.unsafe_objects[manifest.segment.key] = sink.getvalue()  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="does not hash to its sealed leaf"):
        alice_bundle(evidence)


def test_export_refuses_leaves_that_do_not_rebuild_the_signed_root(evidence) -> None:  # type: ignore[no-untyped-def]
    store = evidence.store
    manifest = Manifest.from_bytes(store.get(list_manifests(store, CHAIN_B)[0]))
    table = read_segment(store.get(manifest.segment.key))
    leaves = table.column("leaf_hash").to_pylist()
    leaves[-1] = b"\x00" * 32
    import pyarrow.parquet as pq

    index = table.schema.get_field_index("leaf_hash")
    altered = table.set_column(index, "leaf_hash", pa.array(leaves, pa.binary(32)))
    sink = io.BytesIO()
    pq.write_table(altered, sink)
    store.unsafe_objects[manifest.segment.key] = sink.getvalue()  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="do not rebuild the root"):
        alice_bundle(evidence)


# --- determinism ---------------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_bundles(evidence, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = AccessLog(evidence.store, signer=evidence.key, archive_name=ARCHIVE)
    first = export_bundle(
        ArchiveCatalog(evidence.store),
        evidence.trust,
        request(),
        access_log=log,
        sealed_at_ms=AS_OF,
        out=tmp_path / "one.zip",
    )
    # The custody entry of the first export grew the access log; the bundle does not change.
    second = export_bundle(
        ArchiveCatalog(evidence.store),
        evidence.trust,
        request(),
        access_log=log,
        sealed_at_ms=AS_OF + 60_000,
        out=tmp_path / "two.zip",
    )
    assert first.bundle.files == second.bundle.files
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert first.access.last_seq + 1 == second.access.last_seq


def test_only_custody_depends_on_who_and_when(evidence) -> None:  # type: ignore[no-untyped-def]
    one = alice_bundle(evidence).files
    two = alice_bundle(evidence, who="erin@legal", as_of=AS_OF + 1).files
    assert {p for p in one if one[p] != two[p]} == {"CUSTODY.json"}
    custody = orjson.loads(two["CUSTODY.json"])
    assert custody["who"] == "erin@legal"
    assert custody["when"] == "2026-01-15T00:00:00.001Z"
    assert custody["manifest_sha256"] == hashlib.sha256(two["MANIFEST"]).hexdigest()
    zone = alice_bundle(evidence, zone="America/New_York").files
    assert {p for p in one if one[p] != zone.get(p)} >= {"BUNDLE.json"}
    assert all(one[p] == zone[p] for p in one if p.startswith(("records/", "proofs/", "rsmf/")))


def test_pinned_checkpoint_reproduces_the_bundle_after_the_archive_grew(evidence) -> None:  # type: ignore[no-untyped-def]
    before = alice_bundle(evidence)
    sizes = {tree.chain_id: tree.size for tree in before.trees}
    late = customer(CHAIN_A, 99, 5, 0, ALICE, "a later message")
    from coexarchive.segments import ChainWriter
    from support.archive import short_policy

    ChainWriter(
        evidence.store, CHAIN_A, signer=evidence.key, archive_name=ARCHIVE, policy=short_policy()
    ).append([late])
    grown = alice_bundle(evidence)
    assert grown.files["records/records.jsonl"] != before.files["records/records.jsonl"]
    pinned = alice_bundle(evidence, tree_sizes=sizes)
    assert pinned.files == before.files
    with pytest.raises(ConfigError, match="no checkpoint at tree size"):
        alice_bundle(evidence, tree_sizes={CHAIN_A: 3})


def test_zip_depends_only_on_names_and_bytes() -> None:
    files = {"b.txt": b"two", "a/x.txt": b"one"}
    data = zip_bytes(files)
    assert data == zip_bytes(dict(reversed(list(files.items()))))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [i.filename for i in archive.infolist()] == ["a/x.txt", "b.txt"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# --- custody and the access log ------------------------------------------------------------------


def test_query_export_logs_the_query_and_seals_the_custody_entry(evidence) -> None:  # type: ignore[no-untyped-def]
    store = evidence.store
    log = AccessLog(store, signer=evidence.key, archive_name=ARCHIVE)
    sql = (
        "SELECT chain_id, seq FROM messages WHERE customer_id = '447700900001' "
        "AND text LIKE '%photo%'"
    )
    session = AuditSession(
        store, access_log=log, who="dana@legal", trust=evidence.trust, clock=lambda: AS_OF
    )
    result = session.query(sql)
    exported = export_bundle(
        ArchiveCatalog(store),
        evidence.trust,
        request(selection=Selection(query=sql)),
        access_log=log,
        sealed_at_ms=AS_OF + 5,
        query_result=result.table,
    )
    bundle = exported.bundle
    texts = [
        orjson.loads(line)["text"] for line in bundle.files["records/records.jsonl"].splitlines()
    ]
    assert sorted(texts) == ["Sorry, right photo", "Sorry, wrong photo"]
    assert verify_bundle(bundle.files, trust=evidence.trust).ok
    entries = []
    for key in list_manifests(store, ACCESS_LOG_CHAIN):
        manifest = Manifest.from_bytes(store.get(key))
        entries += read_segment(store.get(manifest.segment.key)).to_pylist()
    assert len(entries) == 2  # the query, then the export
    detail = json.loads(entries[-1]["detail"])
    assert detail["report"] == "export" and detail["who"] == "dana@legal" and detail["sql"] == sql
    assert detail["result_sha256"] == hashlib.sha256(bundle.files["CUSTODY.json"]).hexdigest()
    assert detail["params"]["manifest_sha256"] == bundle.manifest_sha256
    assert detail["rows"] == 2


def test_export_writes_nothing_when_custody_cannot_be_sealed(evidence, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class BrokenLog(AccessLog):
        def append(self, entry, *, now_ms):  # type: ignore[no-untyped-def]
            raise ConfigError("access log unavailable")

    log = BrokenLog(evidence.store, signer=evidence.key, archive_name=ARCHIVE)
    with pytest.raises(ConfigError):
        export_bundle(
            ArchiveCatalog(evidence.store),
            evidence.trust,
            request(),
            access_log=log,
            sealed_at_ms=AS_OF,
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_bundle_refuses_to_overwrite(evidence, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = alice_bundle(evidence)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError):
        bundle.write(tmp_path / "full")
    (tmp_path / "b.zip").write_bytes(b"")
    with pytest.raises(ConfigError):
        bundle.write(tmp_path / "b.zip")


# --- RSMF ----------------------------------------------------------------------------------------


def test_rsmf_manifests_validate_against_the_published_schema(evidence) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(RSMF_SCHEMA.read_text())
    validator = Draft7Validator(schema, format_checker=FormatChecker())
    bundle = alice_bundle(evidence)
    leaves = {
        (e["chain_id"], e["seq"]): e["leaf_hash"]
        for chain in (CHAIN_A, CHAIN_B)
        for e in map(orjson.loads, bundle.files[f"proofs/chain={chain}.jsonl"].splitlines())
    }
    paths = sorted(p for p in bundle.files if p.startswith("rsmf/"))
    assert len(paths) == 3  # chain A: two days; chain B: one day
    for path in paths:
        message, manifest, members = rsmf_parts(bundle.files[path])
        errors = sorted(validator.iter_errors(manifest), key=str)
        assert errors == [], (path, [e.message for e in errors])
        assert message["X-RSMF-Version"] == "2.0.0"
        assert int(message["X-RSMF-EventCount"]) == len(manifest["events"])
        ids = {p["id"] for p in manifest["participants"]}
        for event in manifest["events"]:
            custom = {c["name"]: c["value"] for c in event["custom"]}
            chain = custom["Chain id"]
            assert leaves[(chain, int(custom["Leaf index"]))] == custom["Leaf hash"]
            assert event["participant"] in ids
            for attachment in event.get("attachments", []):
                assert attachment["id"] in members
    _, day0, members = rsmf_parts(bundle.files[f"rsmf/chain={CHAIN_A}/{ALICE}/2026-01-05.rsmf"])
    reply = next(e for e in day0["events"] if e["body"] == "Yes, ready for pickup")
    assert [r["action"] for r in reply["read_receipts"]] == ["delivered", "read"]
    assert reply["direction"] == "outgoing"
    wrong = next(e for e in day0["events"] if e["body"] == "Sorry, wrong photo")
    assert wrong["edits"][0]["new"] == "Sorry, right photo"
    photo = next(e for e in day0["events"] if e.get("attachments"))
    assert photo["deleted"] is True
    assert b"receipt.jpg" in members[photo["attachments"][0]["id"]]


def test_rsmf_slices_never_exceed_the_event_limit(
    evidence, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rsmf, "MAX_EVENTS", 4)
    bundle = alice_bundle(evidence)
    day0 = sorted(
        p for p in bundle.files if p.startswith(f"rsmf/chain={CHAIN_A}/{ALICE}/2026-01-05")
    )
    assert len(day0) == 3 and day0[0].endswith("-part001.rsmf")
    counts = [len(rsmf_parts(bundle.files[p])[1]["events"]) for p in day0]
    assert counts == [4, 4, 1]
    assert verify_bundle(bundle.files, trust=evidence.trust).ok


# --- tlog-proof format ---------------------------------------------------------------------------


def test_proof_line_and_checkpoint_file_make_a_complete_tlog_proof(evidence) -> None:  # type: ignore[no-untyped-def]
    bundle = alice_bundle(evidence)
    description = orjson.loads(bundle.files["BUNDLE.json"])
    for chain in description["chains"]:
        note = bundle.files[chain["checkpoint"]]
        for entry in map(orjson.loads, bundle.files[chain["proofs"]].splitlines()):
            assert entry["tlog_proof"].endswith("\n\n")
            parsed = parse_tlog_proof(entry["tlog_proof"].encode() + note)
            assert parsed.index == entry["seq"] and parsed.note == note
            verify_inclusion(  # the archive's reference fold, independent of verify-bundle
                bytes.fromhex(entry["leaf_hash"]),
                parsed.index,
                chain["tree_size"],
                list(parsed.hashes),
                base64.b64decode(chain["root_hash"]),
            )


def test_tlog_proof_round_trips_and_rejects_malformed_text() -> None:
    note = b"origin\n1\n" + b"A" * 43 + b"=\n\n\xe2\x80\x94 k sig\n"
    text = encode_tlog_proof(5, ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="], note)
    parsed = parse_tlog_proof(text)
    assert parsed.index == 5 and parsed.hashes == (b"\0" * 32,) and parsed.note == note
    from coexarchive.errors import FormatError

    for bad in (
        text.replace(b"index 5", b"index 05"),
        text.replace(b"index 5", b"idx 5"),
        text.replace(b"AAAA=", b"AA=="),
        text.replace(b"\n\n", b"\n", 1),
    ):
        with pytest.raises(FormatError):
            parse_tlog_proof(bad)
