"""Help that teaches: every option explained with its default, every variable listed."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from coexarchive.cli import (
    ARCHIVE_ENV,
    AUDITOR_ENV,
    AUTH_ENV,
    RECEIVE_ENV,
    build_parser,
    subcommands,
)
from coexarchive.store import seaweed_cli
from coexarchive.testing import cli as simulate_cli

ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = re.compile(r"COEXARCHIVE_[A-Z0-9_]+")


def every_parser() -> Iterator[argparse.ArgumentParser]:
    root = build_parser()
    yield root
    yield from subcommands(root)
    yield seaweed_cli._parser()  # `coexarchive s3` hands its arguments to this parser
    yield simulate_cli.parser()


def options_of(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        yield action


def test_every_option_of_every_command_has_help_text() -> None:
    missing = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in every_parser()
        for action in options_of(parser)
        if not (action.help or "").strip()
    ]
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_every_default_worth_knowing_is_shown() -> None:
    hidden = []
    for parser in every_parser():
        for action in options_of(parser):
            default = action.default
            if default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
                continue
            # The option's own entry in --help, not anywhere on the page.
            entry = " ".join(parser._get_formatter()._format_action(action).split())
            if str(default) not in entry:
                hidden.append(f"{parser.prog} {action.option_strings[0]} (default {default})")
    assert not hidden, "defaults missing from --help:\n" + "\n".join(hidden)


def test_the_formatter_adds_a_default_only_where_one_is_worth_saying() -> None:
    parser = build_parser()
    ingest = next(p for p in subcommands(parser) if p.prog == "coexarchive ingest")
    text = " ".join(ingest.format_help().split())
    assert "seconds between passes with --follow (default: 5.0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def read_in_src() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]:
        names |= set(ENV_VAR.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = read_in_src()
    assert "COEXARCHIVE_AUDITOR" in names  # the scan works
    missing = sorted(name for name in names if name not in readme)
    assert not missing, f"README.md does not list {missing}"


def test_every_variable_the_code_reads_is_in_some_commands_help() -> None:
    described = {name for group in (ARCHIVE_ENV, AUDITOR_ENV, RECEIVE_ENV) for name, _ in group}
    shown = " ".join(parser.format_help() for parser in every_parser())
    missing = sorted(name for name in read_in_src() if name not in shown)
    assert not missing, f"no command's --help lists {missing}"
    assert described <= set(ENV_VAR.findall(shown))


def help_of(*command: str) -> str:
    parser = build_parser()
    for child in subcommands(parser):
        if child.prog == " ".join(("coexarchive", *command)):
            return child.format_help()
    raise AssertionError(f"no command {command}")


@pytest.mark.parametrize(
    ("command", "groups"),
    [
        (("verify",), (ARCHIVE_ENV,)),
        (("ingest",), (ARCHIVE_ENV, AUTH_ENV)),
        (("redrive",), (ARCHIVE_ENV, AUTH_ENV)),
        (("simulate",), (ARCHIVE_ENV,)),
        (("receive",), (ARCHIVE_ENV, RECEIVE_ENV)),
        (("query",), (ARCHIVE_ENV, AUDITOR_ENV)),
        (("report",), (ARCHIVE_ENV, AUDITOR_ENV)),
        (("hold", "place"), (ARCHIVE_ENV, AUDITOR_ENV)),
        (("export",), (ARCHIVE_ENV, AUDITOR_ENV)),
    ],
)
def test_a_commands_help_lists_the_variables_it_reads(
    command: tuple[str, ...], groups: tuple[tuple[tuple[str, str], ...], ...]
) -> None:
    text = help_of(*command)
    for group in groups:
        for name, _ in group:
            assert name in text, f"`coexarchive {' '.join(command)} --help` omits {name}"


def test_receive_help_does_not_offer_secrets_as_options() -> None:
    text = help_of("receive")
    assert "--app-secret " not in text and "--verify-token" not in text
