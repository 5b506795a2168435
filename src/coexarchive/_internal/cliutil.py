"""What every command module shares: the time-argument parser and the registration types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from coexarchive._internal.helpformat import HelpFormatter, Parser
from coexarchive.settings import Settings

__all__ = [
    "AddOptions",
    "HelpFormatter",
    "MakeSettings",
    "Parser",
    "parse_moment",
    "parse_time",
]

AddOptions = Callable[[argparse.ArgumentParser], None]
MakeSettings = Callable[..., Settings]


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
