"""verify-bundle: an untouched bundle verifies; each tampering is detected and named."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from export._evidence import ALICE, CHAIN_A, HOSTILE, alice_bundle, reseal

from coexarchive.errors import ConfigError
from coexarchive.export.bundle import NOT_IN_MANIFEST, manifest_text, read_bundle
from coexarchive.export.verify_bundle import (
    BUNDLE_KEYS_WARNING,
    BundleVerificationError,
    verify_bundle,
)
from coexarchive.seal.checkpoint import Checkpoint, sign_note
from support.archive import signer, trust_for

Files = dict[str, bytes]
RECORDS = "records/records.jsonl"
PROOFS = f"proofs/chain={CHAIN_A}.jsonl"
TRANSCRIPT = f"transcripts/chain={CHAIN_A}/{ALICE}.html"


def failures_of(files: Files, **kwargs: object) -> list[tuple[str, str | None, int | None, str]]:
    """The failures, found alike in one process and with the forked render worker."""
    found = []
    for workers in (1, 2):
        with pytest.raises(BundleVerificationError) as caught:
            verify_bundle(files, workers=workers, **kwargs)  # type: ignore[arg-type]
        found.append([(f.step, f.key, f.seq, f.message) for f in caught.value.report.failures])
    assert found[0] == found[1]
    return found[0]


def edit_record_text(files: Files, old: str, new: str) -> Files:
    lines = files[RECORDS].split(b"\n")
    for number, line in enumerate(lines):
        if old.encode() in line:
            row = orjson.loads(line)
            row["text"] = row["text"].replace(old, new)
            lines[number] = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
            break
    else:
        raise AssertionError(old)
    files[RECORDS] = b"\n".join(lines)
    return files


# --- the happy paths ------------------------------------------------------------------------


def test_untouched_bundle_verifies_against_the_archive_trust_file(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    report = verify_bundle(pristine, trust=evidence.trust)
    assert report.ok and report.warnings == []
    assert {r.chain_id for r in report.records} == {CHAIN_A, "900000000000002"}
    assert all(r.ok and r.leaf_hash for r in report.records)
    assert len(report.records) == orjson.loads(pristine["CUSTODY.json"])["counts"]["records"]


def test_bundle_keys_are_used_only_when_asked_for_and_never_give_ok(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no trust given"):
        verify_bundle(pristine)
    with pytest.raises(ConfigError, match="not both"):
        verify_bundle(pristine, trust=evidence.trust, trust_bundle_keys=True)
    report = verify_bundle(pristine, trust_bundle_keys=True)
    assert report.ok and not report.trusted and report.result == "UNTRUSTED"
    assert report.warnings == [BUNDLE_KEYS_WARNING]
    assert "bundle's own" in report.trust_source
    assert report.to_json()["result"] == "UNTRUSTED"


def test_ok_names_the_trusted_key_ids_it_was_checked_against(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    report = verify_bundle(pristine, trust=evidence.trust)
    assert report.result == "OK" and report.trusted
    assert report.key_ids == [f"{v.name}+{v.key_id.hex()}" for v in evidence.trust.verifiers]


def test_written_directory_and_zip_verify(evidence, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = alice_bundle(evidence)
    bundle.write(tmp_path / "dir")
    bundle.write(tmp_path / "bundle.zip")
    for path in (tmp_path / "dir", tmp_path / "bundle.zip"):
        assert read_bundle(path) == bundle.files
        assert verify_bundle(read_bundle(path), trust=evidence.trust).ok


# --- tampering: each is detected and named ------------------------------------------------------


def test_edited_record_is_named_by_line_and_seq(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = edit_record_text(dict(pristine), "ready for pickup", "never ordered")
    found = failures_of(files, trust=evidence.trust)
    assert ("files", RECORDS) in [(step, key) for step, key, _, _ in found]
    record = [f for f in found if f[0] == "records"]
    assert len(record) == 1 and record[0][1] == RECORDS and record[0][2] == 1
    assert "record was altered" in record[0][3]


def test_edited_record_with_manifest_and_custody_recomputed_is_still_caught(
    evidence, pristine
) -> None:  # type: ignore[no-untyped-def]
    files = reseal(edit_record_text(dict(pristine), "ready for pickup", "never ordered"))
    found = failures_of(files, trust=evidence.trust)
    assert [(s, k, q) for s, k, q, _ in found] == [("records", RECORDS, 1)]


def test_record_edited_with_its_leaf_hash_in_the_proof_fails_the_inclusion_proof(
    evidence, pristine
) -> None:  # type: ignore[no-untyped-def]
    files = edit_record_text(dict(pristine), "ready for pickup", "never ordered")
    new_line = next(line for line in files[RECORDS].split(b"\n") if b"never ordered" in line)
    new_leaf = hashlib.sha256(b"\x00" + new_line).hexdigest()
    proofs = [orjson.loads(line) for line in files[PROOFS].splitlines()]
    for entry in proofs:
        if entry["seq"] == 1:
            entry["leaf_hash"] = new_leaf
    files[PROOFS] = b"".join(orjson.dumps(entry) + b"\n" for entry in proofs)
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k, q) for s, k, q, _ in found] == [("proofs", PROOFS, 1)]
    assert "does not reach the signed root" in found[0][3]


def test_edited_transcript_line_is_named_by_file_and_line(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files[TRANSCRIPT] = files[TRANSCRIPT].replace(b"Yes, ready for pickup", b"No, not ready")
    found = failures_of(files, trust=evidence.trust)
    assert ("files", TRANSCRIPT) in [(s, k) for s, k, _, _ in found]
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k) for s, k, _, _ in found] == [("transcripts", TRANSCRIPT)]
    lines = pristine[TRANSCRIPT].split(b"\n")
    number = next(i for i, line in enumerate(lines, 1) if b"ready for pickup" in line)
    assert found[0][3].startswith(f"line {number} ")


def test_deleted_transcript_row_is_caught(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files[TRANSCRIPT] = b"\n".join(
        line for line in files[TRANSCRIPT].split(b"\n") if b"ready for pickup" not in line
    )
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k) for s, k, _, _ in found] == [("transcripts", TRANSCRIPT)]


@pytest.mark.parametrize("which", [0, 1, -1])
@pytest.mark.parametrize("position", [0, -1])
def test_altered_proof_hash_is_named(evidence, pristine, position: int, which: int) -> None:  # type: ignore[no-untyped-def]
    # Later proofs share folding work with earlier ones: a changed line must still be caught.
    files = dict(pristine)
    proofs = [orjson.loads(line) for line in files[PROOFS].splitlines()]
    proofs = proofs[which:] + proofs[:which] if which else proofs
    lines = proofs[0]["tlog_proof"].split("\n")
    hashes = [i for i, line in enumerate(lines) if len(line) == 44 and line.endswith("=")]
    target = hashes[position]
    raw = bytearray(base64.b64decode(lines[target]))
    raw[0] ^= 1
    lines[target] = base64.b64encode(bytes(raw)).decode()
    proofs[0]["tlog_proof"] = "\n".join(lines)
    proofs.sort(key=lambda entry: entry["seq"])
    files[PROOFS] = b"".join(orjson.dumps(entry) + b"\n" for entry in proofs)
    target_seq = next(e["seq"] for e in proofs if e["tlog_proof"] == "\n".join(lines))
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k, q) for s, k, q, _ in found] == [("proofs", PROOFS, target_seq)]


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (lambda text: text.replace("index 1\n", "index 2\n", 1), "tlog-proof names"),
        (lambda text: "\n".join(text.split("\n")[:2] + text.split("\n")[3:]), "too short"),
        (
            lambda text: text.replace(
                "\n\n", "\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n", 1
            ),
            "inclusion proof",
        ),
        (
            lambda text: text.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
            "malformed",
        ),
        (lambda text: text + "origin\n1\n", "text after its blank line"),
    ],
    ids=["wrong_index", "proof_truncated", "proof_extended", "wrong_header", "note_appended"],
)
def test_malformed_proofs_are_named(
    evidence, pristine, attack: Callable[[str], str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    proofs = [orjson.loads(line) for line in files[PROOFS].splitlines()]
    assert proofs[1]["seq"] == 1
    proofs[1]["tlog_proof"] = attack(proofs[1]["tlog_proof"])
    files[PROOFS] = b"".join(orjson.dumps(entry) + b"\n" for entry in proofs)
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k, q) for s, k, q, _ in found] == [("proofs", PROOFS, 1)]
    assert expected in found[0][3]


def test_missing_proof_is_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files[PROOFS] = b"".join(files[PROOFS].splitlines(keepends=True)[1:])
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, q) for s, _, q, m in found] == [("proofs", 0)]


def _checkpoint_path(files: Files) -> str:
    return next(p for p in files if p.startswith(f"checkpoints/chain={CHAIN_A}/"))


def test_checkpoint_signature_bitflip_fails_every_record_of_the_chain(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    path = _checkpoint_path(files)
    body, _, signature = files[path].rpartition(b"\n\n")
    name, _, encoded = signature.rstrip(b"\n").rpartition(b" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    files[path] = body + b"\n\n" + name + b" " + base64.b64encode(bytes(raw)) + b"\n"
    found = failures_of(reseal(files), trust=evidence.trust)
    assert ("checkpoints", path) in [(s, k) for s, k, _, _ in found]
    assert "does not verify" in next(m for s, _, _, m in found if s == "checkpoints")
    # Its records cannot be proven: each is named.
    assert {q for s, _, q, _ in found if s == "proofs"} == {
        r["seq"] for r in map(orjson.loads, files[PROOFS].splitlines())
    }


def test_checkpoint_forged_by_another_key_fails_with_the_archive_trust(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    path = _checkpoint_path(files)
    body = files[path].partition(b"\n\n")[0] + b"\n"
    parsed = Checkpoint.parse(body)
    forged_root = Checkpoint(parsed.origin, parsed.size, b"\x11" * 32, parsed.extensions)
    mallory = signer("coexarchive.test", seed=b"mallory")
    files[path] = sign_note(forged_root.body(), [mallory])
    found = failures_of(files, trust=evidence.trust)
    assert ("checkpoints", path) in [(s, k) for s, k, _, _ in found]
    # The same key *name* with another key: the archive's trust file does not accept it.
    assert "no signature from a trusted key" in next(
        m for s, _, _, m in found if s == "checkpoints"
    )


def test_bundle_signed_by_unknown_key_fails_against_the_real_trust_file(pristine) -> None:  # type: ignore[no-untyped-def]
    other = trust_for(signer("someone.else", seed=b"other"))
    found = failures_of(dict(pristine), trust=other)
    assert {s for s, _, _, _ in found} == {"checkpoints", "proofs"}


def test_manifest_line_changed_is_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    lines = files["MANIFEST"].decode().splitlines(keepends=True)
    _digest, path = lines[0].split("  ", 1)
    lines[0] = f"{'0' * 64}  {path}"
    files["MANIFEST"] = "".join(lines).encode()
    found = failures_of(files, trust=evidence.trust)
    assert ("files", path.strip()) in [(s, k) for s, k, _, _ in found]
    assert ("custody", "CUSTODY.json") in [(s, k) for s, k, _, _ in found]


def test_file_dropped_from_manifest_is_named_as_unlisted(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files["MANIFEST"] = b"".join(
        line
        for line in files["MANIFEST"].splitlines(keepends=True)
        if TRANSCRIPT.encode() not in line
    )
    found = failures_of(files, trust=evidence.trust)
    assert ("files", TRANSCRIPT, None, "file is not listed in MANIFEST") in found


def test_added_and_removed_files_are_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files["records/extra.txt"] = b"planted"
    del files["records/records.csv"]
    found = failures_of(files, trust=evidence.trust)
    keys = [(s, k) for s, k, _, _ in found]
    assert ("files", "records/extra.txt") in keys
    assert ("files", "records/records.csv") in keys


def test_record_removed_with_its_proof_is_caught_by_the_custody_count(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files[RECORDS] = b"".join(files[RECORDS].splitlines(keepends=True)[1:])
    files[PROOFS] = b"".join(files[PROOFS].splitlines(keepends=True)[1:])
    files["MANIFEST"] = manifest_text(files)
    custody = orjson.loads(files["CUSTODY.json"])
    custody["manifest_sha256"] = hashlib.sha256(files["MANIFEST"]).hexdigest()
    files["CUSTODY.json"] = orjson.dumps(custody)
    found = failures_of(files, trust=evidence.trust)
    assert ("custody", "CUSTODY.json") in [(s, k) for s, k, _, _ in found]


def test_non_canonical_record_line_is_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    lines = files[RECORDS].split(b"\n")
    lines[0] = orjson.dumps(orjson.loads(lines[0]), option=orjson.OPT_INDENT_2).replace(b"\n", b"")
    files[RECORDS] = b"\n".join(lines)
    found = failures_of(reseal(files), trust=evidence.trust)
    assert ("records", RECORDS) in [(s, k) for s, k, _, _ in found]
    assert "canonical" in next(m for s, _, _, m in found if s == "records")


def test_altered_table_rows_are_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files["records/records.csv"] = files["records/records.csv"].replace(
        b"Yes, ready for pickup", b"No, not ready"
    )
    files = reseal(files)
    found = failures_of(files, trust=evidence.trust)
    assert [(s, k) for s, k, _, _ in found] == [("tables", "records/records.csv")]


def test_altered_rsmf_is_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    path = next(p for p in files if p.startswith("rsmf/"))
    files[path] = files[path].replace(b"X-RSMF-EventCount: ", b"X-RSMF-EventCount: 1")
    found = failures_of(reseal(files), trust=evidence.trust)
    assert [(s, k) for s, k, _, _ in found] == [("rsmf", path)]


def test_custody_naming_another_manifest_is_named(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    custody = orjson.loads(files["CUSTODY.json"])
    custody["manifest_sha256"] = "0" * 64
    files["CUSTODY.json"] = orjson.dumps(custody)
    assert [(s, k) for s, k, _, _ in failures_of(files, trust=evidence.trust)] == [
        ("custody", "CUSTODY.json")
    ]


def test_missing_bundle_description_stops_early(pristine) -> None:  # type: ignore[no-untyped-def]
    files = {k: v for k, v in pristine.items() if k != "BUNDLE.json"}
    found = failures_of(files, trust_bundle_keys=True)
    assert ("layout", "BUNDLE.json") in [(s, k) for s, k, _, _ in found]


def test_unreadable_bundle_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        read_bundle(tmp_path / "nothing-here")


def test_hostile_text_is_inert_in_every_transcript(pristine) -> None:  # type: ignore[no-untyped-def]
    pages = {p: v.decode() for p, v in pristine.items() if p.endswith(".html")}
    assert HOSTILE not in "".join(pages.values())
    page = pages[TRANSCRIPT]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    for text in pages.values():
        assert "<script" not in text.lower()
        assert "<img" not in text.lower() and "<link" not in text.lower()
        assert "default-src 'none'" in text
    # Control characters are shown, not passed through; right-to-left text is isolated.
    assert "\x07" not in page and "␇" in page
    assert 'dir="auto"' in page


def test_transcript_shows_both_zones_and_what_happened_later(pristine) -> None:  # type: ignore[no-untyped-def]
    page = pristine[TRANSCRIPT].decode()
    assert "Time (UTC)" in page and "Time (Europe/London)" in page
    assert "GMT (UTC+00:00)" in page
    assert "delivered 2026-01-05 00:13:00.000 UTC" in page and "read 2026-01-05" in page
    assert "edited 2026-01-05 00:23:00.000 UTC (#7)" in page
    assert "revoked (deleted for everyone)" in page
    assert "receipt.jpg" in page and "media-777" in page
    assert "marketing_without_consent" in page
    assert "Business App (phone)" in page and "Cloud API" in page
    assert "Alice Example" in page
    assert set(NOT_IN_MANIFEST) <= set(pristine)
