"""Thumbnails: smaller than the original, refused for bombs and non-images, never a crash."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from coexarchive.media import thumbs
from coexarchive.media.thumbs import MAX_PIXELS, THUMB_EDGE, thumbnail


def _photo(width: int = 1600, height: int = 1200, fmt: str = "JPEG") -> bytes:
    rng = random.Random(7)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make: metadata the thumbnail must not carry
    image.save(out, fmt, exif=exif) if fmt == "JPEG" else image.save(out, fmt)
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header declares width × height pixels (8-bit grey), with the given IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def test_thumbnail_is_a_small_image_much_smaller_than_the_original() -> None:
    original = _photo()
    thumb = thumbnail(original, "image/jpeg")
    assert thumb is not None
    assert thumb.mime_type == "image/jpeg"
    assert len(thumb.data) < len(original) // 4
    with Image.open(io.BytesIO(thumb.data)) as image:
        assert max(image.size) == THUMB_EDGE
        assert image.size == (THUMB_EDGE, THUMB_EDGE * 1200 // 1600)
        assert not image.getexif()  # no EXIF travels from the original


def test_png_with_transparency_stays_png() -> None:
    image = Image.new("RGBA", (900, 600), (10, 20, 30, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    thumb = thumbnail(out.getvalue(), "image/png")
    assert thumb is not None and thumb.mime_type == "image/png"
    with Image.open(io.BytesIO(thumb.data)) as shown:
        assert shown.mode == "RGBA" and max(shown.size) == THUMB_EDGE


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 100k × 100k pixels declared (10 GB of grey) in a few hundred bytes: refused from the header.
    bomb = _png_declaring(100_000, 100_000, zlib.compress(b"\x00" * 100_001 * 4))
    assert len(bomb) < 2_000
    assert thumbnail(bomb, "image/png") is None


@pytest.mark.parametrize("pixels", [MAX_PIXELS + 1, 2 * 89_478_485 - 1])
def test_image_over_the_pixel_limit_is_refused(pixels: int) -> None:
    # Over this module's limit, including Pillow's warning band (its limit to twice it).
    width = 10_000
    height = -(-pixels // width)
    assert thumbnail(_png_declaring(width, height, zlib.compress(b"")), "image/png") is None


def test_a_real_image_over_the_limit_is_refused_and_under_it_is_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A complete, decodable picture: only the pixel limit stands between it and a thumbnail.
    picture = _photo(400, 300, "PNG")
    assert thumbnail(picture, "image/png") is not None
    monkeypatch.setattr(thumbs, "MAX_PIXELS", 400 * 300 - 1)
    assert thumbnail(picture, "image/png") is None
    monkeypatch.setattr(thumbs, "MAX_PIXELS", 400 * 300)
    assert thumbnail(picture, "image/png") is not None


def test_truncated_image_is_refused() -> None:
    original = _photo(400, 300)
    assert thumbnail(original[: len(original) // 2], "image/jpeg") is None


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "application/pdf"),
        (b"OggS\x00\x02" + bytes(64), "audio/ogg"),
        (b"not an image at all", "image/jpeg"),
        (_photo(64, 48), "application/octet-stream"),  # an image the record does not call one
        (_photo(64, 48), None),
    ],
)
def test_non_image_gets_no_thumbnail(data: bytes, mime: str | None) -> None:
    assert thumbnail(data, mime) is None


def test_format_outside_the_allowed_set_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, "TIFF")
    assert thumbnail(out.getvalue(), "image/tiff") is None
