"""Archived text shown to a reviewer cannot drive the terminal."""

from __future__ import annotations

import pytest

from coexarchive.supervision import cli


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b[31mPAY NOW", "\\u001b[2J\\u001b[31mPAY NOW"),  # ANSI escapes
        ("safe\u202etxt.exe", "safe\\u202etxt.exe"),  # right-to-left override
        ("line\rover", "line\\u000dover"),  # a carriage return that would overwrite the line
        ("مرحبا 🙏 नमस्ते", "مرحبا 🙏 नमस्ते"),  # ordinary text of any script is left alone
    ],
)
def test_control_and_bidi_characters_are_shown_escaped(text: str, shown: str) -> None:
    assert cli.safe(text) == shown


def test_tables_escape_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    cli._print_rows([{"note": "\x1b]0;owned\x07", "who": "ana"}], as_json=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\u001b]0;owned\\u0007" in out
