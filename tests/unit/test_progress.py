"""Progress output: only on a terminal unless asked, redrawn in place, final counts kept."""

from __future__ import annotations

import io
import threading

from coexarchive._internal.progress import LiveStatus, Progress, wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def render(counts: dict[str, int], elapsed: float) -> str:
    return f"objects {counts.get('objects', 0)}, events {counts.get('events', 0)}"


def test_progress_is_drawn_only_on_a_terminal_unless_forced() -> None:
    assert wanted(Terminal()) and not wanted(io.StringIO())
    assert wanted(io.StringIO(), True) and not wanted(Terminal(), False)
    closed = io.StringIO()
    closed.close()
    assert not wanted(closed)


def test_a_disabled_status_writes_nothing_and_starts_no_thread() -> None:
    stream = io.StringIO()
    before = threading.active_count()
    with LiveStatus(render, stream=stream) as status:
        status.add(objects=1, events=5)
        assert threading.active_count() == before
    assert stream.getvalue() == ""
    assert status.snapshot() == {"objects": 1, "events": 5}


def test_a_live_status_redraws_in_place_and_keeps_the_final_counts() -> None:
    stream = Terminal()
    with LiveStatus(render, stream=stream, interval=0.01) as status:
        for _ in range(50):
            status.add(objects=1, events=10)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("objects 50, events 500\n")
    assert text.count("\n") == 1  # every redraw reuses the line


def test_counts_from_many_threads_add_up() -> None:
    status = LiveStatus(render, force=False)

    def work() -> None:
        for _ in range(1000):
            status.add(events=1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert status.snapshot() == {"events": 4000}


def test_a_bar_for_known_totals_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = Progress("landing", 3, stream=quiet)
    bar.advance(3)
    bar.close()
    assert quiet.getvalue() == ""
    shown = Terminal()
    bar = Progress("landing", 3, stream=shown)
    bar.advance(3)
    bar.close()
    assert "landing [" in shown.getvalue() and "3/3" in shown.getvalue()
