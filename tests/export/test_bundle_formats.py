"""Bundles of every format keep verifying: the golden samples in ``schemas/samples/bundles``.

``v1*.zip`` were made by the release before current flags and safe RSMF headers (see the README
there); verify-bundle re-renders them with v1's rules, so it still says OK for them, still
catches any altered byte, and warns when a v1 RSMF header exposes a reader.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from export._evidence import reseal

from coexarchive.cli import main
from coexarchive.export import formats
from coexarchive.export._rows import CSV_COLUMNS, CSV_COLUMNS_V1
from coexarchive.export.bundle import BUNDLE_FORMAT, read_bundle
from coexarchive.export.verify_bundle import BundleVerificationError, verify_bundle
from coexarchive.seal.keys import TrustStore

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "bundles"
TRUST = SAMPLES / "trust.txt"
V1, V2 = "coexarchive.bundle/v1", "coexarchive.bundle/v2"
RECORDS = "records/records.jsonl"
HEADER_WARNING = "RSMF headers of 1 conversation(s)"


def sample(name: str) -> dict[str, bytes]:
    return read_bundle(SAMPLES / name)


def verify(files: dict[str, bytes], *, workers: int = 1):  # type: ignore[no-untyped-def]
    return verify_bundle(files, trust=TrustStore.from_file(TRUST), workers=workers)


def failed_steps(files: dict[str, bytes]) -> set[str]:
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    return {failure.step for failure in caught.value.report.failures}


def with_format(files: dict[str, bytes], name: str) -> dict[str, bytes]:
    description = orjson.loads(files["BUNDLE.json"])
    description["format"] = name
    return reseal({**files, "BUNDLE.json": orjson.dumps(description)})


def test_new_bundles_are_v4_and_v3_samples_stay_v3() -> None:
    assert BUNDLE_FORMAT == "coexarchive.bundle/v4"
    assert orjson.loads(sample("v3.zip")["BUNDLE.json"])["format"] == "coexarchive.bundle/v3"
    assert orjson.loads(sample("v2.zip")["BUNDLE.json"])["format"] == V2


@pytest.mark.parametrize(
    ("name", "records"),
    [("v1.zip", 5), ("v2.zip", 5), ("v3.zip", 6), ("v3-hostile-header.zip", 1)],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_golden_sample_of_every_format_verifies_ok(name: str, records: int, workers: int) -> None:
    files = sample(name)
    report = verify(files, workers=workers)
    assert report.result == "OK" and report.trusted
    assert report.format == orjson.loads(files["BUNDLE.json"])["format"]
    assert report.warnings == []
    assert len(report.records) == records and all(r.ok for r in report.records)


def test_v1_sample_shows_what_v1_showed() -> None:
    """The sample holds what v2 renders differently: a re-assessed flag, a poll, a non-ASCII
    profile name; v1 shows flags as sealed and no current-flags columns."""
    v1, v2 = sample("v1.zip"), sample("v2.zip")
    header = v1["records/records.csv"].split(b"\r\n", 1)[0].decode()
    assert tuple(header.split(",")) == CSV_COLUMNS_V1
    assert tuple(v2["records/records.csv"].split(b"\r\n", 1)[0].decode().split(",")) == CSV_COLUMNS
    rows = list(csv.DictReader(io.StringIO(v1["records/records.csv"].decode(), newline="")))
    assert [r["flags"] for r in rows if r["template_name"]] == ["marketing_without_consent"]
    assert "current_flags" not in rows[0]
    assert b"Zo\xc3\xab" in v1[RECORDS]  # the profile name: Zoë Ångström-Núñez
    renderings = [p for p in v1 if p.startswith(("transcripts/chain=", "rsmf/"))]
    assert renderings and all(v1[p] != v2.get(p) for p in renderings)


@pytest.mark.parametrize("name", ["v1.zip", "v2.zip"])
def test_one_altered_byte_of_the_records_is_caught(name: str) -> None:
    files = sample(name)
    data = bytearray(files[RECORDS])
    at = data.index(b"ma commande")
    data[at] ^= 0x01
    altered = {**files, RECORDS: bytes(data)}
    assert "files" in failed_steps(altered)
    # The attacker also recomputes MANIFEST and custody: the proofs still catch the change.
    assert {"records", "proofs"} & failed_steps(reseal(dict(altered)))


@pytest.mark.parametrize(
    ("path", "old", "new", "step"),
    [
        ("records/records.csv", b"promo_spring", b"promo_summer", "tables"),
        ("transcripts/chain=900000000000001/447700900101.html", b"Zo", b"Jo", "transcripts"),
        (
            "rsmf/chain=900000000000001/447700900101/2026-01-05.rsmf",
            b"Subject: WhatsApp",
            b"Subject: Whatsapp",
            "rsmf",
        ),
    ],
)
def test_v1_renderings_are_still_compared_with_the_records(
    path: str, old: bytes, new: bytes, step: str
) -> None:
    files = sample("v1.zip")
    changed = files[path].replace(old, new, 1)
    assert changed != files[path]
    assert step in failed_steps(reseal({**files, path: changed}))


@pytest.mark.parametrize(("name", "other"), [("v1.zip", V2), ("v2.zip", V1)])
def test_a_bundle_relabelled_to_another_format_fails(name: str, other: str) -> None:
    assert {"tables", "transcripts", "rsmf"} <= failed_steps(with_format(sample(name), other))


@pytest.mark.parametrize("workers", [1, 2])
def test_v1_header_with_control_characters_warns_but_verifies(workers: int) -> None:
    report = verify(sample("v1-hostile-header.zip"), workers=workers)
    assert report.result == "OK"
    [warning] = report.warnings
    assert HEADER_WARNING in warning and V1 in warning and "Relativity" in warning
    assert "\r" not in warning and "\n" not in warning


def test_v2_header_of_the_same_profile_name_needs_no_warning() -> None:
    files = sample("v2-hostile-header.zip")
    assert verify(files).warnings == []
    [rsmf] = [v for p, v in files.items() if p.startswith("rsmf/")]
    head = rsmf.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in head and b"\n " not in head.replace(b"\r\n ", b"")


def test_v1_header_warning_is_printed_by_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "v1-hostile-header.zip"
    assert main(["verify-bundle", str(path), "--trust", str(TRUST), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "OK:" in out and HEADER_WARNING in err


def test_a_later_release_still_verifies_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RSMF generator header names the release: a verifier of another version takes the
    one the bundle was made by from BUNDLE.json."""
    later = {k: replace(v, generator="coexarchive 9.9.9") for k, v in formats.FORMATS.items()}
    monkeypatch.setattr(formats, "FORMATS", later)
    for name in ("v1.zip", "v2.zip"):
        assert verify(sample(name)).result == "OK"


@pytest.mark.parametrize("generator", ["coexarchive 1.2.3\r\nBcc: x", "other 1.0", 7, None])
def test_only_a_plain_generator_name_is_taken_from_the_bundle(generator: object) -> None:
    rules = formats.rendering_of({"format": V1, "generator": generator})
    assert rules is not None and rules.generator == formats.V1.generator


@pytest.mark.parametrize("found", ["coexarchive.bundle/v9", "coexarchive.bundle/v0", 2, None])
def test_unknown_format_is_refused_in_one_line(
    found: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = with_format(sample("v2.zip"), found)  # type: ignore[arg-type]
    assert failed_steps(files) == {"layout"}
    bundle = tmp_path / "bundle"
    for path, data in files.items():
        (bundle / path).parent.mkdir(parents=True, exist_ok=True)
        (bundle / path).write_bytes(data)
    assert main(["verify-bundle", str(bundle), "--trust", str(TRUST)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert f"unknown bundle format {found!r}" in line and V1 in line and V2 in line
