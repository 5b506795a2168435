"""Evidence bundles carry the attachments; verify-bundle checks each against its sealed record."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from coexarchive.errors import BundleVerificationError, ProofError
from coexarchive.export.bundle import ExportRequest, Selection, build_bundle
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.views import ArchiveCatalog
from support.archive import START_MS, signer, trust_for
from support.media import CUSTOMER

pytestmark = pytest.mark.integration


def export(store: Any) -> dict[str, bytes]:
    request = ExportRequest(
        matter="M-media", selection=Selection(customer=CUSTOMER), who="legal", as_of=START_MS
    )
    return dict(build_bundle(ArchiveCatalog(store), trust_for(signer()), request).files)


def verify(files: dict[str, bytes]) -> Any:
    return verify_bundle(files, trust=trust_for(signer()))


def remanifest(files: dict[str, bytes]) -> None:
    """What a forger who rewrites MANIFEST does (CUSTODY.json then no longer matches it)."""
    from coexarchive.export.bundle import manifest_text

    inner = {k: v for k, v in files.items() if k not in ("MANIFEST", "CUSTODY.json")}
    files["MANIFEST"] = manifest_text(inner)


def test_bundle_holds_each_attachment_and_verifies(media_archive: dict[str, Any]) -> None:
    files = export(media_archive["store"])
    media = sorted(path for path in files if path.startswith("media/"))
    assert [f"media/v1/sha256={p.removeprefix('media/')}" for p in media] == media_archive["keys"]
    for path in media:
        assert hashlib.sha256(files[path]).hexdigest() == path.removeprefix("media/")
        assert f"  {path}\n".encode() in files["MANIFEST"]
    report = verify(files)
    assert report.ok
    page = next(v for k, v in files.items() if k.startswith("transcripts/chain=")).decode()
    assert page.count('<img src="../../media/') == 3
    assert "not archived: not_found (media gap" in page
    assert "img-src 'self'; media-src 'self'" in page and "<script" not in page
    index = files["transcripts/index.html"].decode()
    assert "img-src" not in index  # pages without attachments keep the strict policy


def test_altered_attachment_in_a_bundle_is_named(media_archive: dict[str, Any]) -> None:
    files = export(media_archive["store"])
    path = next(p for p in sorted(files) if p.startswith("media/"))
    files[path] = files[path][:-1] + b"\x00"
    remanifest(files)  # even with MANIFEST rewritten to match
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    assert ("media", path) in {(f.step, f.key) for f in caught.value.report.failures}


def test_missing_or_extra_attachment_in_a_bundle_is_named(media_archive: dict[str, Any]) -> None:
    files = export(media_archive["store"])
    path = next(p for p in sorted(files) if p.startswith("media/"))
    del files[path]
    files["media/" + "0" * 64] = b"planted"
    remanifest(files)
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    named = {(f.step, f.key) for f in caught.value.report.failures}
    assert {("media", path), ("media", "media/" + "0" * 64)} <= named


def test_export_refuses_an_attachment_altered_in_the_archive(media_archive: dict[str, Any]) -> None:
    store = media_archive["store"]
    key = media_archive["keys"][0]
    store.unsafe_objects[key] = b"forged"
    with pytest.raises(ProofError, match="does not match its sealed sha256"):
        export(store)


def test_rsmf_attachments_carry_the_real_bytes(media_archive: dict[str, Any]) -> None:
    import email
    import io
    import zipfile

    files = export(media_archive["store"])
    media = {v for k, v in files.items() if k.startswith("media/")}
    carried = []
    for path in sorted(p for p in files if p.startswith("rsmf/")):
        message = email.message_from_bytes(files[path])
        for part in message.walk():
            if part.get_filename() == "rsmf.zip":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                    carried += [
                        archive.read(n) for n in archive.namelist() if n.startswith("media-")
                    ]
    assert media and media <= set(carried)
    # The unfetched attachment still travels as a reference, never as invented bytes.
    assert any(b"does not hold" in data for data in carried)
