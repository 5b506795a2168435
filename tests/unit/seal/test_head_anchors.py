"""Anchor lines in archive heads: one canonical form, refused otherwise."""

from __future__ import annotations

import base64

import pytest

from coexarchive.errors import FormatError
from coexarchive.seal.head import GENESIS_PREV, AnchorLine, ArchiveHead, ChainHead

ROOT = base64.b64encode(bytes(range(32))).decode()
DIGEST = base64.b64encode(bytes([7]) * 32).decode()
TEXT = (
    "archive.example/coexarchive/v1/head\n"
    "3\n"
    f"{base64.b64encode(GENESIS_PREV).decode()}\n"
    f"900000000000001 5 {ROOT}\n"
    f"anchor/timestamp 2 local-tsa {DIGEST}\n"
    "anchor/timestamp-missing 1 local-tsa\n"
)


def test_a_head_with_anchor_lines_round_trips() -> None:
    head = ArchiveHead.parse(TEXT.encode())
    assert head.anchors == (
        AnchorLine("timestamp", 2, "local-tsa", bytes([7]) * 32),
        AnchorLine("timestamp-missing", 1, "local-tsa"),
    )
    assert head.body() == TEXT.encode()
    built = ArchiveHead.build(
        "archive.example", 3, GENESIS_PREV, head.chains, reversed(head.anchors)
    )
    assert built.body() == TEXT.encode()


def test_a_head_without_anchors_is_unchanged() -> None:
    head = ArchiveHead.build("archive.example", 0, GENESIS_PREV, [ChainHead("c1", 1, bytes(32))])
    assert b"anchor/" not in head.body()
    assert ArchiveHead.parse(head.body()) == head


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # Unsorted anchor lines.
        (
            TEXT.replace(
                f"anchor/timestamp 2 local-tsa {DIGEST}\nanchor/timestamp-missing 1 local-tsa\n",
                f"anchor/timestamp-missing 1 local-tsa\nanchor/timestamp 2 local-tsa {DIGEST}\n",
            ),
            "sorted",
        ),
        # An anchor of this head itself, or a later one.
        (TEXT.replace("anchor/timestamp 2", "anchor/timestamp 3"), "not an earlier head"),
        # A chain line after an anchor line.
        (TEXT + f"900000000000002 1 {ROOT}\n", "before its anchor lines"),
        # Unknown kind, missing or extra digest, bad name, non-canonical number.
        (TEXT.replace("anchor/timestamp-missing", "anchor/stamp-missing"), "known form"),
        (TEXT.replace(f"local-tsa {DIGEST}", "local-tsa"), "known form"),
        (TEXT.replace("1 local-tsa\n", f"1 local-tsa {DIGEST}\n"), "known form"),
        (TEXT.replace("2 local-tsa", "2 -tsa"), "anchor name"),
        (TEXT.replace("anchor/timestamp 2", "anchor/timestamp 02"), "canonical decimal"),
        (TEXT.replace(DIGEST, base64.b64encode(bytes(31)).decode()), "base64 of 32 bytes"),
    ],
)
def test_malformed_anchor_lines_are_refused(text: str, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        ArchiveHead.parse(text.encode())
