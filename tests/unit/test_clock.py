"""One clock for the whole code base."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import coexarchive
from coexarchive._internal.clock import now_ms, utc_date

SRC = Path(coexarchive.__file__).parent
OWN_CLOCK = re.compile(
    r"time\.time(_ns)?\(\)\s*(\*\s*1000|//\s*1_?000_?000)|def _?now_ms|def _?utc_date"
    r"|def _wall_clock"
)


def test_now_ms_is_the_wall_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    now = now_ms()
    assert before <= now <= time.time_ns() // 1_000_000


@pytest.mark.parametrize(
    "ms",
    [0, 1, 86_399_999, 86_400_000, 1_767_571_199_999, 1_767_571_200_000, -1, 253_402_300_799_999],
)
def test_utc_date_agrees_with_datetime(ms: int) -> None:
    assert utc_date(ms) == datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def test_no_module_keeps_a_clock_of_its_own() -> None:
    own = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        if path.name != "clock.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OWN_CLOCK.search(line)
    ]
    assert own == []
