"""Steps run in a forked process while the calling one checks the rest."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from coexarchive.errors import Failure
from coexarchive.export.verify_bundle.records import Parsed, parse
from coexarchive.export.verify_bundle.report import BundleReport
from coexarchive.export.zipfiles import Budget

__all__ = ["RENDERED", "WORKER_PATIENCE_S", "Found", "Step", "Worker"]

Step = Callable[[Parsed, BundleReport], None]
Found = tuple[list[Failure], list[str]]  # failures and warnings
RENDERED = frozenset({"tables", "transcripts", "rsmf"})
# At least this long, the render worker is waited for before this process does its work.
WORKER_PATIENCE_S = 60.0


class Worker:
    """Steps run in a forked process while this one checks the rest.

    The worker is forked once the layout is known and parses ``records.jsonl`` for itself (its
    own objects, so the two processes do not fault on each other's pages); it hashes the files
    and re-renders while this process checks records, checkpoints, proofs and tables, then
    sends back the failures it found. It renders before anyone knows whether every record is
    proven; when one is not, what it rendered is discarded, exactly as the single-process path
    skips rendering. Without ``fork``, with one worker, or if the worker dies before answering,
    the steps run here instead: the report is the same either way.
    """

    def __init__(
        self,
        files: Mapping[str, bytes],
        description: Mapping[str, Any],
        budget: Budget,
        steps: Sequence[Step],
        always: Step,
        workers: int,
    ) -> None:
        self.files, self.description, self.steps = files, description, steps
        self.budget, self.always = budget, always
        self.process: BaseProcess | None = None
        self.receiver: Connection | None = None
        self.started = time.monotonic()
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=self._work, args=(sender,), name="verify-bundle-worker", daemon=True
            )
            try:
                process.start()
            except (AssertionError, OSError):  # e.g. inside a daemon process: no children
                receiver.close()
            else:
                self.process, self.receiver = process, receiver
            sender.close()

    def _run(self, parsed: Parsed, *, rendered: bool) -> Found:
        scratch = BundleReport()
        for step in self.steps:
            if rendered or step is self.always:
                step(parsed, scratch)
        return scratch.failures, scratch.warnings

    def _work(self, sender: Connection) -> None:
        # Forked inside verify_bundle's cyclic_gc_paused(): the collector is off here too.
        parsed = parse(self.files, self.description, self.budget)
        sender.send(self._run(parsed, rendered=parsed.complete))
        sender.close()

    def failures(self, parsed: Parsed, *, rendered: bool) -> Found:
        """The steps' failures and warnings; those of rendering only when ``rendered`` (only
        the rendering steps warn)."""
        if self.receiver is not None:
            # The worker does about as much as this process did meanwhile; one that is far
            # slower is stuck (a fork can inherit a held lock), and this process takes over.
            patience = max(WORKER_PATIENCE_S, 4 * (time.monotonic() - self.started))
            try:
                if self.receiver.poll(patience):
                    found: Found = self.receiver.recv()
                    failures, warnings = found
                    kept = [f for f in failures if rendered or f.step not in RENDERED]
                    return kept, warnings if rendered else []
            except (EOFError, OSError):
                pass  # the worker died before answering: run the steps here instead
            if self.process is not None and self.process.is_alive():
                self.process.terminate()
        return self._run(parsed, rendered=rendered)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        if self.process is not None:
            if self.process.is_alive():
                self.process.terminate()
            self.process.join()
