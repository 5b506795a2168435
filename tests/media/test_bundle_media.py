"""Evidence bundles carry the attachments; verify-bundle checks each against its sealed record."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import orjson
import pytest
from PIL import Image

from coexarchive.errors import BundleVerificationError, ProofError
from coexarchive.export.bundle import ExportRequest, Selection, build_bundle
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.media import thumbs as thumbs_module
from coexarchive.media.thumbs import THUMB_EDGE
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
    # Each image as its derived thumbnail, linking the original in media/.
    assert page.count('<img src="../../thumbs/') == 3
    for path in media:
        sha = path.removeprefix("media/")
        assert f'<a href="../../{path}"><img src="../../thumbs/{sha}.' in page
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


def test_bundle_thumbnails_are_derived_files_smaller_than_the_originals(
    media_archive: dict[str, Any],
) -> None:
    files = export(media_archive["store"])
    thumbs = sorted(path for path in files if path.startswith("thumbs/"))
    media = sorted(path for path in files if path.startswith("media/"))
    assert len(thumbs) == len(media) == 3
    for thumb, original in zip(thumbs, media, strict=True):
        assert thumb.removeprefix("thumbs/").split(".")[0] == original.removeprefix("media/")
        assert 0 < len(files[thumb]) < len(files[original])
        with Image.open(io.BytesIO(files[thumb])) as image:
            assert image.format in ("JPEG", "PNG") and max(image.size) <= THUMB_EDGE
        assert f"  {thumb}\n".encode() in files["MANIFEST"]
    description = orjson.loads(files["BUNDLE.json"])
    assert description["format"] == "coexarchive.bundle/v4"
    assert description["files"]["thumbs"] == thumbs
    # Not evidence: no record seals a thumbnail's hash, and the proofs name none.
    hashes = {hashlib.sha256(files[t]).hexdigest() for t in thumbs}
    assert not any(h.encode() in files["records/records.jsonl"] for h in hashes)


def test_refused_images_get_a_link_and_no_thumbnail(
    media_archive: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every image over the pixel limit, as a decompression bomb is: refused, never decoded.
    monkeypatch.setattr(thumbs_module, "MAX_PIXELS", 1)
    files = export(media_archive["store"])
    assert not any(path.startswith("thumbs/") for path in files)
    page = next(v for k, v in files.items() if k.startswith("transcripts/chain=")).decode()
    assert "<img" not in page
    assert page.count(">open the image (no thumbnail)</a>") == 3
    assert verify(files).ok


def test_a_removed_thumbnail_is_caught_by_the_transcript_it_was_shown_in(
    media_archive: dict[str, Any],
) -> None:
    files = export(media_archive["store"])
    path = next(p for p in sorted(files) if p.startswith("thumbs/"))
    del files[path]
    remanifest(files)
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    assert "transcripts" in {f.step for f in caught.value.report.failures}


@pytest.mark.parametrize(
    "planted",
    ["thumbs/" + "0" * 64 + ".jpg", "thumbs/evil.html", "thumbs/{sha}.png"],
)
def test_a_thumbnail_no_proven_image_names_is_refused(
    media_archive: dict[str, Any], planted: str
) -> None:
    files = export(media_archive["store"])
    existing = next(p for p in sorted(files) if p.startswith("thumbs/"))
    sha = existing.removeprefix("thumbs/").split(".")[0]
    planted = planted.format(sha=sha)
    if planted.endswith(".png") and existing.endswith(".png"):
        planted = planted.removesuffix(".png") + ".jpg"  # a second thumbnail of the same image
    files[planted] = b"planted"
    remanifest(files)
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    assert ("media", planted) in {(f.step, f.key) for f in caught.value.report.failures}


def test_an_earlier_format_holds_no_thumbnails(media_archive: dict[str, Any]) -> None:
    files = export(media_archive["store"])
    path = next(p for p in sorted(files) if p.startswith("thumbs/"))
    description = orjson.loads(files["BUNDLE.json"])
    description["format"] = "coexarchive.bundle/v3"
    files["BUNDLE.json"] = orjson.dumps(description)
    remanifest(files)
    with pytest.raises(BundleVerificationError) as caught:
        verify(files)
    assert ("media", path) in {(f.step, f.key) for f in caught.value.report.failures}
