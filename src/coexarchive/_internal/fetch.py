"""Reading many objects at once, answers in the order asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

# Each read is a round trip to the store, so reads of a chain's manifests and segments go this
# many at a time (at most this many segments in memory at once).
READERS: Final = 4


def fetch_in_order(
    read: Callable[[_T], _R], items: Sequence[_T], *, readers: int | None = None
) -> list[_R]:
    """``read`` of every item, ``readers`` (default :data:`READERS`) at a time, in the items'
    order; the first failure in that order is raised."""
    readers = READERS if readers is None else readers
    if len(items) <= 1 or readers <= 1:
        return [read(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(readers, len(items))) as pool:
        return list(pool.map(read, items))
