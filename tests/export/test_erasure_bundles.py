"""Evidence bundles of an archive that seals personal content encrypted, before and after erasure.

Records stay as sealed (envelopes) so every proof holds; the bundle discloses one key per
record so its transcripts, RSMF and CSV show the text and verify-bundle can check they are
what was sealed. After an erasure, earlier bundles still verify and new ones show [erased].
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import orjson
import pytest
from export._evidence import ALICE, BOB, alice_bundle, build_evidence, chain_a, request, reseal

from coexarchive.datakeys import DataKeyStore, LocalWrapper
from coexarchive.errors import ConfigError
from coexarchive.export.bundle import build_bundle
from coexarchive.export.disclosure import RECORD_KEYS
from coexarchive.export.verify_bundle import BundleVerificationError, verify_bundle
from coexarchive.query.views import ArchiveCatalog
from coexarchive.seal.personal import ERASED, PersonalSealer
from coexarchive.store import MemoryStore

NOW = 1_800_000_000_000


def keys_in(directory: Path) -> DataKeyStore:
    return DataKeyStore(directory, LocalWrapper(b"b" * 32), clock=lambda: NOW)


@pytest.fixture
def archive(tmp_path: Path):  # type: ignore[no-untyped-def]
    keys = keys_in(tmp_path / "keys")
    evidence = build_evidence(MemoryStore(), personal=PersonalSealer(keys.current))
    return evidence, tmp_path / "keys"


def bundle_of(evidence, keys_dir: Path, customer: str = ALICE):  # type: ignore[no-untyped-def]
    from coexarchive.export.bundle import Selection

    return build_bundle(
        ArchiveCatalog(evidence.store),
        evidence.trust,
        request(selection=Selection(customer=customer)),
        keys=keys_in(keys_dir),
    )


def transcript_text(files: dict[str, bytes]) -> str:
    return "".join(
        data.decode("utf-8") for path, data in files.items() if path.startswith("transcripts/")
    )


def test_bundle_renders_text_and_verifies(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    bundle = bundle_of(evidence, keys_dir)
    files = dict(bundle.files)
    assert RECORD_KEYS in files
    assert b"enc1:" in files["records/records.jsonl"]  # the records stay as sealed
    assert "enc1:" not in transcript_text(files)
    report = verify_bundle(files, trust=evidence.trust)
    assert report.result == "OK"
    # Each disclosed key opens one record: the bundle lists exactly its own records.
    lines = files[RECORD_KEYS].splitlines()[1:]
    assert len(lines) == len({orjson.loads(line)["record_id"] for line in lines})


def test_earlier_bundle_still_verifies_and_new_one_shows_erased(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    earlier = dict(bundle_of(evidence, keys_dir).files)
    plaintext = transcript_text(earlier)
    keys_in(keys_dir).destroy(ALICE, reason="DSR")

    assert verify_bundle(earlier, trust=evidence.trust).result == "OK"
    later = dict(bundle_of(evidence, keys_dir).files)
    assert verify_bundle(later, trust=evidence.trust).result == "OK"
    shown = transcript_text(later)
    assert ERASED in shown
    disclosed = [orjson.loads(line) for line in later[RECORD_KEYS].splitlines()[1:]]
    assert disclosed and all(entry["record_key"] is None for entry in disclosed)
    # Nothing of Alice's conversation survives in the new bundle, in any file.
    texts = [r.text for r in chain_a() if r.customer_id == ALICE and r.text and len(r.text) > 8]
    assert texts and all(html.escape(t, quote=False) in plaintext for t in texts[:1])
    everything = b"".join(later.values()).decode("utf-8", "replace")
    for text in texts:
        assert text not in everything and html.escape(text, quote=False) not in everything
    # Bob's bundle is unaffected.
    bob = dict(bundle_of(evidence, keys_dir, BOB).files)
    assert ERASED not in transcript_text(bob)
    assert verify_bundle(bob, trust=evidence.trust).result == "OK"


def _tampered(files: dict[str, bytes], change) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    lines = files[RECORD_KEYS].splitlines()
    entries = [orjson.loads(line) for line in lines[1:]]
    change(entries)
    body = b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n" for e in entries)
    files[RECORD_KEYS] = lines[0] + b"\n" + body
    return reseal(files)


def _record_failures(files: dict[str, bytes], trust) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleVerificationError) as failed:
        verify_bundle(files, trust=trust)
    return [f.message for f in failed.value.report.failures if f.step == "records"]


def test_wrong_record_key_fails(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    files = dict(bundle_of(evidence, keys_dir).files)

    def swap(entries: list[dict[str, object]]) -> None:
        entries[0]["record_key"], entries[1]["record_key"] = (
            entries[1]["record_key"],
            entries[0]["record_key"],
        )

    problems = _record_failures(_tampered(files, swap), evidence.trust)
    assert any("does not open" in p for p in problems)


def test_key_made_null_to_hide_text_still_fails_the_renders(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    files = dict(bundle_of(evidence, keys_dir).files)

    def hide(entries: list[dict[str, object]]) -> None:
        entries[0]["record_key"] = None

    with pytest.raises(BundleVerificationError) as failed:
        verify_bundle(_tampered(files, hide), trust=evidence.trust)
    assert {f.step for f in failed.value.report.failures} & {"tables", "transcripts", "rsmf"}


def test_missing_disclosure_fails(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    files = dict(bundle_of(evidence, keys_dir).files)
    problems = _record_failures(_tampered(files, lambda entries: entries.pop()), evidence.trust)
    assert any("no record key" in p for p in problems)


def test_disclosing_a_record_the_bundle_does_not_hold_fails(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    files = dict(bundle_of(evidence, keys_dir).files)

    def extra(entries: list[dict[str, object]]) -> None:
        entries.append({**entries[0], "record_id": "f" * 32})

    problems = _record_failures(_tampered(files, extra), evidence.trust)
    assert any("does not hold" in p for p in problems)


def test_altered_envelope_in_a_bundle_fails_its_proof(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, keys_dir = archive
    files = dict(bundle_of(evidence, keys_dir).files)
    line = files["records/records.jsonl"].splitlines()[0]
    row = orjson.loads(line)
    head, _, body = row["text"].rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    row["text"] = f"{head}:{base64.b64encode(bytes(raw)).decode()}"
    files["records/records.jsonl"] = files["records/records.jsonl"].replace(
        line, orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    )
    with pytest.raises(BundleVerificationError):
        verify_bundle(reseal(files), trust=evidence.trust)


def test_export_without_keys_refuses_rather_than_render_ciphertext(archive) -> None:  # type: ignore[no-untyped-def]
    evidence, _ = archive
    with pytest.raises(ConfigError, match="COEXARCHIVE_DATA_KEYS"):
        alice_bundle(evidence)
