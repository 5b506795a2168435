"""The receiver keeps full garbage collections short: startup objects are frozen out of them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from coexarchive._internal.gcpause import freeze_long_lived
from coexarchive.receive.app import ReceiverConfig
from coexarchive.receive.server import start
from coexarchive.receive.spool import Spool
from coexarchive.store.memory import MemoryStore


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_start_freezes_what_exists_before_serving(tmp_path: Path, unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    running = start(
        ReceiverConfig(app_secrets=(b"secret",)),
        Spool(tmp_path / "spool", "rcv-test"),
        MemoryStore(),
        lambda key: None,
    )
    try:
        # The app, the spool and every imported module are out of the collector's walk.
        assert gc.get_freeze_count() > 10_000
        walked = {id(obj) for obj in gc.get_objects()}
        assert id(running.app) not in walked
        assert id(running.receiver.spool) not in walked
    finally:
        running.stop(drain_for=0)


def test_cycles_made_after_the_freeze_are_still_collected(unfrozen: None) -> None:
    frozen = freeze_long_lived()
    assert frozen == gc.get_freeze_count() > 0
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # only the cyclic collector can free it
    gc.collect()
    assert gone() is None
