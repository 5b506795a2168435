"""Progress for long runs, written to stderr only when it is a terminal (or when asked).

:class:`Progress` is a bar for work with a known total (verify, landing raw objects).
:class:`LiveStatus` is one self-redrawing line of counters for work whose total grows as it
goes (the ingest job: objects read, events normalised, chains sealed), redrawn by a background
ticker so that the elapsed time moves even while a step is busy.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def wanted(stream: TextIO, force: bool | None = None) -> bool:
    """Whether to draw progress on ``stream``: when forced, else only on a terminal."""
    if force is not None:
        return force
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is no terminal
        return False


class Progress:
    """Counts work done out of a known total and redraws at most ten times a second."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, force: bool | None = None
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(self.stream, force)
        self._started = time.monotonic()
        self._drawn = 0.0

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and (now - self._drawn > 0.1 or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        fraction = self.done / self.total if self.total else 1.0
        filled = int(width * min(fraction, 1.0))
        rate = self.done / max(now - self._started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} ({rate:,.0f}/s)")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


class LiveStatus:
    """One status line, redrawn in place from a background ticker; thread-safe counters.

    ``render(counts, elapsed_seconds)`` turns the counters into the line. Counters may be bumped
    from any thread (Beam runs steps on worker threads). Nothing is drawn unless enabled; a
    disabled status costs one lock per update and no thread.
    """

    def __init__(
        self,
        render: Callable[[dict[str, int], float], str],
        *,
        stream: TextIO | None = None,
        force: bool | None = None,
        interval: float = 0.25,
    ) -> None:
        self.render = render
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(self.stream, force)
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._width = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LiveStatus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._started = time.monotonic()
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.counts[name] = self.counts.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def line(self) -> str:
        return self.render(self.snapshot(), time.monotonic() - self._started)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def _draw(self) -> None:
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        """Stop the ticker and leave the final counts on their own line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
