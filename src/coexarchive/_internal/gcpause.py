"""Pausing Python's cyclic garbage collector around bulk work.

Building hundreds of thousands of small containers (parsed records, report entries) makes the
cyclic collector run again and again over everything still alive, which more than doubled the
time of parsing a bundle's records. None of that work creates reference cycles worth collecting
early, and reference counting still frees everything, so the collector waits until it is done.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_long_lived() -> int:
    """Move every object alive now out of the cyclic collector's reach; returns how many.

    A long-running server allocates its modules, classes and configuration once; each full
    collection would walk them all again (tens of thousands of objects, tens of milliseconds on a
    busy machine) while requests wait. Frozen objects are still freed by reference counting; only
    cycles among them would stay, and startup leaves none worth collecting. No collection first:
    on a busy machine it would hold the port closed for longer than the freeze saves.
    """
    gc.freeze()
    return gc.get_freeze_count()
