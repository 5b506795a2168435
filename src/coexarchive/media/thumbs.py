"""Thumbnails of image attachments: derived data for showing, never evidence (DESIGN §8.5).

A thumbnail is made from bytes already checked against their sealed ``media`` record, each time
it is shown; it is never sealed, stored or hashed into anything a verifier checks, so a different
Pillow that draws other pixels changes no proof. The original stays one click away.

Images are untrusted input: an image whose header declares more than :data:`MAX_PIXELS` pixels is
refused before any pixel is decoded (a decompression bomb: a few KB that inflate to gigabytes),
and so is anything Pillow cannot read. A refusal is ``None``: the caller shows a link instead.
"""

from __future__ import annotations

import io
import warnings
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "THUMB_EDGE", "Thumbnail", "thumbnail"]

# The longest edge of a thumbnail, in pixels.
THUMB_EDGE: Final = 320
# WhatsApp images are at most 5 MB; a 40-megapixel photo is already larger than any phone sends.
MAX_PIXELS: Final = 40_000_000
# The formats Pillow may open here: what WhatsApp sends as images and stickers, nothing exotic.
_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF")


class Thumbnail:
    """A thumbnail's bytes and their MIME type."""

    __slots__ = ("data", "mime_type")

    def __init__(self, data: bytes, mime_type: str) -> None:
        self.data = data
        self.mime_type = mime_type


def thumbnail(data: bytes, mime_type: str | None) -> Thumbnail | None:
    """A small JPEG (or PNG, for images with transparency) of ``data``, or None if refused.

    Refused: a type that is not ``image/*``, bytes Pillow does not read as one of the allowed
    formats, more than :data:`MAX_PIXELS` pixels declared, or an image that fails to decode.
    """
    if not mime_type or not mime_type.lower().startswith("image/"):
        return None
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between its limit and twice it: a refusal here too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                width, height = image.size
                # The header's size, read before any pixel is decoded.
                if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
                    return None
                image.draft("RGB", (THUMB_EDGE, THUMB_EDGE))  # JPEG: decode at a smaller scale
                image.seek(0)  # animated images: the first frame
                shown = ImageOps.exif_transpose(image)
                shown.thumbnail((THUMB_EDGE, THUMB_EDGE))
                alpha = shown.mode in ("RGBA", "LA", "PA") or (
                    shown.mode == "P" and "transparency" in shown.info
                )
                out = io.BytesIO()
                # Saved from pixels only: no EXIF (place, device) travels into the thumbnail.
                if alpha:
                    shown.convert("RGBA").save(out, "PNG", optimize=True)
                    return Thumbnail(out.getvalue(), "image/png")
                shown.convert("RGB").save(out, "JPEG", quality=80)
                return Thumbnail(out.getvalue(), "image/jpeg")
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
    ):
        return None
