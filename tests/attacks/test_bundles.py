"""Attacks by whoever holds or makes an evidence bundle, and by a customer whose profile name lands
in one: forged bundles with their own keys, archives that make the reader allocate or write
where it should not, paths that climb out, and header injection into the RSMF load.

Each test is named after its attack and asserts the refusal (naming the member) or the inert
output. They need no S3: a bundle is verified offline.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import io
import os
import stat
import warnings
import zipfile
from collections.abc import Callable, Mapping
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader
from pathlib import Path

import orjson
import pytest
from export._evidence import (
    ALICE,
    CHAIN_B,
    HOSTILE_PROFILE,
    MALLORY,
    Evidence,
    alice_bundle,
    build_evidence,
    hostile_profile_records,
    request,
    reseal,
)

from coexarchive.cli import main
from coexarchive.errors import ConfigError
from coexarchive.export.bundle import Selection, build_bundle, read_bundle
from coexarchive.export.rsmf import header_text
from coexarchive.export.verify_bundle import BundleVerificationError, verify_bundle
from coexarchive.export.zipfiles import (
    Budget,
    BundleReadError,
    ReadLimits,
    read_zip,
    zip_bytes,
)
from coexarchive.query.views import ArchiveCatalog
from coexarchive.store import MemoryStore
from support.archive import signer

Files = dict[str, bytes]
SMALL = ReadLimits(max_members=50, max_member_bytes=1 << 20, max_total_bytes=4 << 20)


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return build_evidence(MemoryStore(), extra=hostile_profile_records())


@pytest.fixture(scope="module")
def pristine(evidence: Evidence) -> Files:
    return alice_bundle(evidence).files


@pytest.fixture(scope="module")
def trust_file(evidence: Evidence, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "trust.txt"
    path.write_text(evidence.key.verifier_key() + "\n")
    return path


def zip_of(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    """A zip written exactly as given: repeated names, odd paths, links, as an attacker would."""
    sink = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name; that is the point
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for info, data in entries:
                archive.writestr(info, data)
    return sink.getvalue()


def declare_size(data: bytes, size: int) -> bytes:
    """The zip with every member's uncompressed size in its headers set to ``size``."""
    patched = bytearray(data)
    for marker, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := patched.find(marker, start)) >= 0:
            patched[start + offset : start + offset + 4] = size.to_bytes(4, "little")
            start += 4
    return bytes(patched)


def bundle_zip(tmp_path: Path, files: Mapping[str, bytes], name: str = "bundle.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(zip_bytes(files))
    return path


def refused(path: Path, limits: ReadLimits = SMALL) -> str:
    with pytest.raises(BundleReadError) as caught:
        read_bundle(path, limits)
    return str(caught.value)


# --- forged bundles -------------------------------------------------------------------------


def forged_bundle() -> Files:
    """A complete, self-consistent bundle from an archive Mallory made and signed herself."""
    mallory = signer("coexarchive.test", seed=b"mallory")  # the archive's key *name*, her key
    forged = build_evidence(MemoryStore(), key=mallory)
    return build_bundle(ArchiveCatalog(forged.store), forged.trust, request()).files


def test_forged_bundle_with_its_own_keys_is_refused_without_trust(
    tmp_path: Path, trust_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = forged_bundle()
    with pytest.raises(ConfigError, match="no trust given"):
        verify_bundle(files)
    path = bundle_zip(tmp_path, files)
    with pytest.raises(SystemExit) as usage:
        main(["verify-bundle", str(path)])
    assert usage.value.code == 2
    captured = capsys.readouterr()
    assert "--trust" in captured.err and "OK" not in captured.out
    # Against the archive's real keys, the forgery fails at its checkpoints.
    assert main(["verify-bundle", str(path), "--trust", str(trust_file)]) == 1
    out = capsys.readouterr().out
    assert "checkpoints" in out and "no signature from a trusted key" in out
    assert "OK" not in out.splitlines()[-1]


def test_forged_bundle_with_its_own_keys_is_untrusted_when_its_keys_are_opted_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = forged_bundle()
    report = verify_bundle(files, trust_bundle_keys=True)
    assert report.ok and not report.trusted and report.result == "UNTRUSTED"
    path = bundle_zip(tmp_path, files)
    assert main(["verify-bundle", str(path), "--trust-bundle-keys"]) == 3
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("UNTRUSTED: ")
    assert not any(line.startswith("OK") for line in out.splitlines())
    assert main(["verify-bundle", str(path), "--trust-bundle-keys", "--json"]) == 3
    document = orjson.loads(capsys.readouterr().out)
    assert document["result"] == "UNTRUSTED" and document["trusted"] is False


def test_emptied_bundle_that_proves_nothing_is_not_ok(evidence: Evidence, pristine: Files) -> None:
    files = {k: v for k, v in pristine.items() if not k.startswith(("rsmf/", "transcripts/"))}
    files["records/records.jsonl"] = b""
    description = orjson.loads(files["BUNDLE.json"])
    description["chains"] = []
    files["BUNDLE.json"] = orjson.dumps(description)
    custody = orjson.loads(files["CUSTODY.json"])
    custody["counts"]["records"] = 0
    files["CUSTODY.json"] = orjson.dumps(custody)
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(reseal(files), trust=evidence.trust)
    found = {(f.step, f.key) for f in caught.value.report.failures}
    assert {("records", "records/records.jsonl"), ("checkpoints", "BUNDLE.json")} <= found
    assert caught.value.report.result == "FAILED"


# --- hostile zips ---------------------------------------------------------------------------


def test_zip_bomb_member_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_of([("records/records.jsonl", b"\0" * (20 << 20))]))  # 20 MiB of zeros
    assert bomb.stat().st_size < 100_000
    message = refused(bomb)
    assert "'records/records.jsonl'" in message and "per member" in message
    # With the default limits, a member declaring 3 GiB is refused from its header alone.
    declared = tmp_path / "declared.zip"
    declared.write_bytes(declare_size(zip_of([("MANIFEST", b"\0" * 1024)]), 3 << 30))
    assert "'MANIFEST' expands to 3221225472 bytes" in refused(declared, ReadLimits())


def test_zip_bomb_lying_about_its_size_is_not_inflated_past_the_lie(tmp_path: Path) -> None:
    liar = tmp_path / "liar.zip"
    liar.write_bytes(declare_size(zip_of([("MANIFEST", b"\0" * (20 << 20))]), 100))
    assert "not a readable zip" in refused(liar)


def test_zip_bomb_spread_over_many_members_hits_the_total_limit(tmp_path: Path) -> None:
    spread = tmp_path / "spread.zip"
    spread.write_bytes(zip_of([(f"f{i}", b"\0" * (900 << 10)) for i in range(10)]))
    assert "past the limit of 4194304 bytes in all" in refused(spread)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.zip"
    many.write_bytes(zip_of([(f"f{i:03d}", b"x") for i in range(51)]))
    assert "holds 51 members, more than the limit of 50" in refused(many)
    directory = tmp_path / "many"
    directory.mkdir()
    for i in range(51):
        (directory / f"f{i:03d}").write_bytes(b"x")
    assert "more than 50 files" in refused(directory)


def test_duplicate_member_name_is_refused(tmp_path: Path, pristine: Files) -> None:
    twice = tmp_path / "twice.zip"
    twice.write_bytes(zip_of([("records/records.jsonl", b"forged\n"), *sorted(pristine.items())]))
    assert "'records/records.jsonl' appears twice" in refused(twice, ReadLimits())


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil.txt", "climbs out of the bundle"),
        ("records/../../evil.txt", "climbs out of the bundle"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/Windows/evil", "absolute path"),
        ("./MANIFEST", "not normalised"),
        ("records//records.jsonl", "not normalised"),
        ("records\\..\\evil.txt", "backslash"),
    ],
    ids=["dotdot", "nested_dotdot", "absolute", "drive_letter", "dot_slash", "empty", "backslash"],
)
def test_dotdot_and_absolute_paths_in_zip_are_refused(
    tmp_path: Path, pristine: Files, name: str, problem: str
) -> None:
    hostile = tmp_path / "hostile.zip"
    hostile.write_bytes(zip_of([*sorted(pristine.items()), (name, b"planted")]))
    message = refused(hostile, ReadLimits())
    assert repr(name) in message and problem in message


def test_dotdot_absolute_and_repeated_paths_in_manifest_are_named(
    evidence: Evidence, pristine: Files
) -> None:
    files = dict(pristine)
    for planted in ("../outside.txt", "/etc/passwd", "records/./records.csv"):
        digest = hashlib.sha256(b"x").hexdigest()
        files["MANIFEST"] += f"{digest}  {planted}\n".encode()
    readme = next(line for line in files["MANIFEST"].splitlines() if line.endswith(b"README.txt"))
    files["MANIFEST"] += readme + b"\n"  # listed twice: which hash counts would be ambiguous
    custody = orjson.loads(files["CUSTODY.json"])
    custody["manifest_sha256"] = hashlib.sha256(files["MANIFEST"]).hexdigest()
    files["CUSTODY.json"] = orjson.dumps(custody)
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(files, trust=evidence.trust)
    found = [(f.step, f.key, f.message) for f in caught.value.report.failures]
    assert [(s, k) for s, k, _ in found] == [("files", "MANIFEST")] * 4
    assert "'README.txt' is listed twice" in found[3][2]
    assert "'../outside.txt' has a path that climbs out" in found[0][2]
    assert "'/etc/passwd' has an absolute path" in found[1][2]
    assert "'records/./records.csv' has a path that is not normalised" in found[2][2]


def test_path_in_a_mapping_from_elsewhere_is_named_at_layout(evidence: Evidence) -> None:
    files = {"../BUNDLE.json": b"{}", "BUNDLE.json": b"{}"}
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(files, trust=evidence.trust)
    assert ("layout", "../BUNDLE.json") in [(f.step, f.key) for f in caught.value.report.failures]


def test_symlink_member_is_refused(tmp_path: Path, pristine: Files) -> None:
    link = zipfile.ZipInfo("keys/trust.txt")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    linked = tmp_path / "linked.zip"
    entries = [(p, d) for p, d in sorted(pristine.items()) if p != "keys/trust.txt"]
    linked.write_bytes(zip_of([*entries, (link, b"/home/someone/.ssh/id_ed25519")]))
    assert "'keys/trust.txt' is a symbolic link" in refused(linked, ReadLimits())
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "MANIFEST").write_bytes(b"")
    os.symlink("/etc/passwd", directory / "passwd")
    assert "'passwd' is a symbolic link" in refused(directory)


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(zip_of([("MANIFEST", b"x")]))
    for marker, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(marker)
        data[start + offset] |= 1
    locked = tmp_path / "locked.zip"
    locked.write_bytes(bytes(data))
    assert "'MANIFEST' is encrypted" in refused(locked)


# --- hostile rsmf.zip inside a bundle -------------------------------------------------------


def with_rsmf_zip(files: Files, make: Callable[[dict[str, bytes]], bytes]) -> tuple[Files, str]:
    """The bundle with one RSMF message's rsmf.zip replaced by ``make(its members)``; resealed."""
    files = dict(files)
    path = next(p for p in sorted(files) if p.startswith("rsmf/"))
    eml = files[path]
    marker = b'filename="rsmf.zip"\r\n\r\n'
    start = eml.index(marker) + len(marker)
    end = eml.index(b"\r\n\r\n--", start)
    original = base64.b64decode(eml[start:end].replace(b"\r\n", b""))
    members = read_zip(original, Budget(ReadLimits()), where="rsmf.zip")
    payload = base64.encodebytes(make(members)).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    files[path] = eml[:start] + payload + eml[end:]
    return reseal(files), path


def rsmf_failures(files: Files, trust: object, limits: ReadLimits) -> list[tuple[str, str]]:
    found = []
    for workers in (1, 2):
        with pytest.raises(BundleVerificationError) as caught:
            verify_bundle(files, trust=trust, workers=workers, limits=limits)  # type: ignore[arg-type]
        found.append([(f.step, f.key, f.message) for f in caught.value.report.failures])
    assert found[0] == found[1]
    return [(key or "", message) for step, key, message in found[0] if step == "rsmf"]


def test_nested_rsmf_zip_bomb_is_refused_naming_the_member(
    evidence: Evidence, pristine: Files
) -> None:
    def bomb(members: dict[str, bytes]) -> bytes:
        return zip_of([*members.items(), ("media-bomb.txt", b"\0" * (8 << 20))])

    files, path = with_rsmf_zip(pristine, bomb)
    limits = ReadLimits(max_member_bytes=1 << 20)
    [(key, message)] = rsmf_failures(files, evidence.trust, limits)
    assert key == path
    assert f"{path} rsmf.zip: member 'media-bomb.txt' expands to 8388608 bytes" in message

    def declared(members: dict[str, bytes]) -> bytes:
        return declare_size(zip_of(list(members.items())), 3 << 30)

    files, path = with_rsmf_zip(pristine, declared)
    [(key, message)] = rsmf_failures(files, evidence.trust, ReadLimits())
    assert f"{path} rsmf.zip: member 'media-media-777.txt' expands to 3221225472" in message


def test_archive_inside_rsmf_zip_is_refused_as_too_deep(
    evidence: Evidence, pristine: Files
) -> None:
    def deeper(members: dict[str, bytes]) -> bytes:
        inner = zip_of([("bomb.txt", b"\0" * 1000)])
        return zip_of([*members.items(), ("media-x.txt", inner)])

    files, path = with_rsmf_zip(pristine, deeper)
    [(key, message)] = rsmf_failures(files, evidence.trust, ReadLimits())
    assert key == path and "'media-x.txt' is an archive inside a nested archive" in message


def test_rsmf_zip_with_climbing_path_is_refused(evidence: Evidence, pristine: Files) -> None:
    files, path = with_rsmf_zip(
        pristine, lambda members: zip_of([*members.items(), ("../../evil.sh", b"x")])
    )
    [(key, message)] = rsmf_failures(files, evidence.trust, ReadLimits())
    assert key == path and "'../../evil.sh' has a path that climbs out" in message


def test_refused_bundle_is_one_line_on_the_command_line(
    tmp_path: Path, trust_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(declare_size(zip_of([("MANIFEST", b"\0" * 1024)]), 3 << 30))
    assert main(["verify-bundle", str(bomb), "--trust", str(trust_file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "member 'MANIFEST' expands to 3221225472 bytes" in captured.err
    assert main(["verify-bundle", str(bomb), "--trust", str(trust_file), "--max-member-bytes",
                 str(4 << 30), "--max-bundle-bytes", "1000"]) == 2  # fmt: skip
    assert "past the limit of 1000 bytes in all" in capsys.readouterr().err


# --- header injection -----------------------------------------------------------------------

INTENDED_HEADERS = [
    "From",
    "To",
    "Subject",
    "X-RSMF-Version",
    "X-RSMF-Generator",
    "X-RSMF-Application",
    "X-RSMF-BeginDate",
    "X-RSMF-EndDate",
    "X-RSMF-EventCount",
    "X-RSMF-AttachmentCount",
    "X-RSMF-EventCollectionID",
    "X-RSMF-Custodian",
    "X-RSMF-Participants",
    "MIME-Version",
    "Content-Type",
]


def test_header_injection_via_profile_name_is_inert(evidence: Evidence) -> None:
    bundle = alice_bundle(evidence, selection=Selection(customer=MALLORY))
    assert verify_bundle(bundle.files, trust=evidence.trust).result == "OK"
    [path] = [p for p in bundle.files if p.startswith(f"rsmf/chain={CHAIN_B}/{MALLORY}/")]
    eml = bundle.files[path]
    head = eml.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"\0" not in head
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line and len(line) <= 998
        assert len(line) <= 76 or b"=?" not in line  # encoded words fold at 76 characters
    message = email.message_from_bytes(eml, policy=email.policy.default)
    assert message.keys() == INTENDED_HEADERS
    assert message["Bcc"] is None and message["X-Injected"] is None
    wanted = header_text(f"{HOSTILE_PROFILE} ({MALLORY})")
    assert all(c not in wanted for c in "\r\n\x00\x85\u202e")
    to = message["To"]
    assert isinstance(to, AddressHeader) and len(to.addresses) == 1
    assert to.addresses[0].username == "" and message["Cc"] is None
    # Decoded as RFC 2047 says (whitespace between encoded words ignored), each header says
    # exactly what was meant. (The modern parser above puts a space where a long display name
    # was folded, as it does for the messages Python's own generator folds; names are compared
    # here with the package's RFC 2047 decoder.)
    raw = email.message_from_bytes(eml)  # compat32: header values as written
    decoded = {name: str(make_header(decode_header(raw[name]))) for name in INTENDED_HEADERS}
    assert decoded["To"] == f"{wanted} <>"
    assert decoded["From"] == "Business 15550783881 <>"
    assert decoded["Subject"] == f"WhatsApp conversation {MALLORY} on 2026-01-05"
    assert decoded["X-RSMF-Participants"] == f"Business 15550783881; {wanted}"
    assert decoded["X-RSMF-EventCollectionID"] == f"{CHAIN_B}/{MALLORY}"
    # The manifest keeps the name exactly as the customer sent it, safely JSON-escaped.
    zipped = message.get_payload()[1].get_content()  # type: ignore[index]
    manifest = orjson.loads(zipfile.ZipFile(io.BytesIO(zipped)).read("rsmf_manifest.json"))
    assert manifest["participants"][1]["display"] == f"{HOSTILE_PROFILE} ({MALLORY})"
    # The extracted text names the customer without the controls that would fake a new line.
    body = message.get_payload()[0].get_content()  # type: ignore[index]
    assert "Bcc: victims" in body and "\r\nBcc" not in body and "\x00" not in body


def test_profile_name_does_not_change_other_customers_bundles(pristine: Files) -> None:
    assert not any(MALLORY in path for path in pristine)
    assert ALICE in next(p for p in pristine if p.startswith("rsmf/"))
