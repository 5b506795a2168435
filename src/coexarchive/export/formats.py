"""Bundle format versions and the rendering rules each one fixes.

A bundle names its format in ``BUNDLE.json``; ``verify-bundle`` re-renders its tables,
transcripts and RSMF files with that format's rules, so a bundle made by an earlier release keeps
verifying after the renderings changed (``schemas/BUNDLE.md``, "Version history"):

- ``coexarchive.bundle/v1``: flags as sealed; RSMF header values written as recorded (ASCII as
  is, anything else as RFC 2047 words by :class:`email.header.Header`); an assessment or a message
  of a type the catalogue does not know rendered like any other non-message record.
- ``coexarchive.bundle/v2``: current flags (``records.csv`` gains ``current_flags`` and
  ``flags_seq``); assessments and uncatalogued messages (polls) shown readably; RSMF header values
  with control and direction characters removed, RFC 2047-encoded and folded.
- ``coexarchive.bundle/v3``: template sends show the template's text from the registry as of the
  send (the catalogue entry in force, which the bundle holds with its proof), parameters filled
  in, buttons listed, with name and version; or say that the registry has no text for it.
- ``coexarchive.bundle/v4``: transcripts show an image attachment as a thumbnail from the
  bundle's ``thumbs/`` (derived files, not evidence) linking the original, or as a link alone when
  Pillow refused the image; v3 showed the original itself, scaled by the browser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from coexarchive import __version__

__all__ = [
    "CURRENT",
    "FORMATS",
    "V1",
    "V2",
    "V3",
    "V4",
    "Rendering",
    "known_formats",
    "rendering_of",
]


@dataclass(frozen=True)
class Rendering:
    """What a bundle format's renderings show, and how."""

    format: str
    current_flags: bool  # current flags, and flags_seq; else flags as sealed
    readable_types: bool  # assessments and uncatalogued messages (polls) shown readably
    safe_headers: bool  # RSMF headers: controls removed, RFC 2047, folded; else as recorded
    transcript_version: str
    template_bodies: bool = False  # template sends rendered with the registry's text
    thumbnails: bool = False  # transcripts show images as thumbs/ files linking the original
    generator: str = f"coexarchive {__version__}"  # X-RSMF-Generator and BUNDLE.json


V1 = Rendering(
    "coexarchive.bundle/v1",
    current_flags=False,
    readable_types=False,
    safe_headers=False,
    transcript_version="coexarchive.transcript/v1",
)
V2 = Rendering(
    "coexarchive.bundle/v2",
    current_flags=True,
    readable_types=True,
    safe_headers=True,
    transcript_version="coexarchive.transcript/v2",
)
V3 = Rendering(
    "coexarchive.bundle/v3",
    current_flags=True,
    readable_types=True,
    safe_headers=True,
    transcript_version="coexarchive.transcript/v3",
    template_bodies=True,
)
V4 = Rendering(
    "coexarchive.bundle/v4",
    current_flags=True,
    readable_types=True,
    safe_headers=True,
    transcript_version="coexarchive.transcript/v4",
    template_bodies=True,
    thumbnails=True,
)
CURRENT = V4
FORMATS: Mapping[str, Rendering] = {rules.format: rules for rules in (V1, V2, V3, V4)}
_GENERATOR = re.compile(r"coexarchive [0-9A-Za-z.+\-]{1,40}")


def known_formats() -> str:
    return ", ".join(FORMATS)


def rendering_of(description: Mapping[str, Any]) -> Rendering | None:
    """The rules a bundle's ``BUNDLE.json`` says it was rendered with; None for an unknown format.

    The RSMF generator header names the release that made the bundle (``BUNDLE.json``'s
    ``generator``), so a bundle keeps verifying under a later release.
    """
    name = description.get("format")
    rules = FORMATS.get(name) if isinstance(name, str) else None
    generator = description.get("generator")
    if rules is not None and isinstance(generator, str) and _GENERATOR.fullmatch(generator):
        rules = replace(rules, generator=generator)
    return rules
