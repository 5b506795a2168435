"""The one clock: wall time in milliseconds, and the UTC date of a moment.

Everything that reads the time reads it here (or is handed a clock that defaults to
:func:`now_ms`), so that tests can pass their own and no two helpers disagree about rounding.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

__all__ = ["DAY_MS", "now_ms", "utc_date"]

DAY_MS = 86_400_000
# Days 1970-01-01 .. 9999-12-31: four-digit years, where ``date.isoformat`` is ``%Y-%m-%d``.
_LAST_DAY = 2_932_896
_EPOCH = date(1970, 1, 1)


def now_ms() -> int:
    """Wall-clock time in whole milliseconds since the Unix epoch (truncated, never rounded up)."""
    return time.time_ns() // 1_000_000


def utc_date(moment_ms: int) -> str:
    """The UTC date of a moment in milliseconds, as ``YYYY-MM-DD``."""
    day = moment_ms // DAY_MS
    if 0 <= day <= _LAST_DAY:
        return _date_of_day(day)
    return datetime.fromtimestamp(moment_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


@lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    # Sealing asks for the date of every record; an archive's records span few distinct days.
    return (_EPOCH + timedelta(days=day)).isoformat()
