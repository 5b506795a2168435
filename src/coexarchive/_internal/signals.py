"""Stop a long-running loop cleanly on SIGTERM or SIGINT, so that it can say what it did.

The first signal sets an event the loop checks between passes; a second SIGINT interrupts at
once (KeyboardInterrupt), for a pass that will not finish.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO


@contextmanager
def stop_on_signals(
    stop: threading.Event, *, stream: TextIO | None = None, what: str = "stopping"
) -> Iterator[threading.Event]:
    """Within the block, SIGTERM and SIGINT set ``stop`` (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    out = stream if stream is not None else sys.stderr

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        out.write(f"\n{what} after the current pass ({signal.Signals(signum).name})\n")
        out.flush()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
