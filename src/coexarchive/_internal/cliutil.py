"""What every command module shares: the time-argument parser and the registration types."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from coexarchive._internal.helpformat import HelpFormatter, Parser
from coexarchive.customers import normalize_customer
from coexarchive.errors import InvalidArgumentError
from coexarchive.settings import Settings

__all__ = [
    "AddOptions",
    "Bind",
    "Handler",
    "HelpFormatter",
    "MakeSettings",
    "Parser",
    "add_signing_key_option",
    "binder",
    "parse_customer",
    "parse_moment",
    "parse_time",
    "shell_exports",
]

AddOptions = Callable[[argparse.ArgumentParser], None]
MakeSettings = Callable[..., Settings]
# A command's handler takes the CLI's settings factory; ``binder`` turns it into argparse's kind.
Handler = Callable[[argparse.Namespace, MakeSettings], int]
Bind = Callable[[Handler], Callable[[argparse.Namespace], int]]


def binder(make_settings: MakeSettings) -> Bind:
    """What hands every handler of a command module ``make_settings`` when argparse calls it."""

    def bind(handler: Handler) -> Callable[[argparse.Namespace], int]:
        return lambda args: handler(args, make_settings)

    return bind


def add_signing_key_option(parser: argparse.ArgumentParser) -> None:
    """``--key``: the archive's signing key file, for commands that seal."""
    parser.add_argument("--key", type=Path, help="signing key file (env COEXARCHIVE_SIGNING_KEY)")


def parse_moment(text: str) -> datetime:
    """An ISO date or date-time, UTC unless it says otherwise (an argparse type)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_time(text: str) -> int:
    """An ISO date or date-time as ms since the epoch (an argparse type)."""
    return int(parse_moment(text).timestamp() * 1000)


def shell_exports(values: Mapping[str, str]) -> list[str]:
    """``export NAME=value`` lines, each value quoted for a POSIX shell (for ``eval "$(…)"``)."""
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def parse_customer(text: str) -> str:
    """A customer's phone number (any usual spelling) or BSUID, as records store it (a type)."""
    try:
        return normalize_customer(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
