"""The help formatter every coexarchive parser uses (no imports beyond argparse)."""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that teaches: prose wrapped, laid-out blocks kept, every real default shown.

    A paragraph of the description or epilog whose lines were broken by hand (a list of
    variables, examples) is kept as written; a paragraph on one line is wrapped. An option's
    default is appended unless its help already says it, or there is none worth saying
    (None, False, an empty list).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n" in paragraph.strip("\n"):
                paragraphs.append(super()._fill_text(paragraph, width, indent))
            else:
                paragraphs.append(argparse.HelpFormatter._fill_text(self, paragraph, width, indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, "*"))
        ):
            return action.help
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and its subcommands' help) uses :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
