"""Expected failures out of a Beam job: the project's own error, not the runner's traceback.

Beam re-raises a step's exception with the step's name appended, or, from a worker process, as a
RuntimeError holding the remote traceback as text, and logs the traceback on the way (or relays
the worker's log entry). :func:`expected_failure` finds the
:class:`~coexarchive.errors.CoexArchiveError` behind either, and :func:`quiet_expected_failures`
holds back those logs while a job runs, so the CLI prints one line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from coexarchive.errors import CoexArchiveError, PipelineError

__all__ = ["HoldBackExpected", "expected_failure", "quiet_expected_failures"]


# The last "module.Type: message" line of a remote traceback; the message runs to the end.
_REMOTE_ERROR = re.compile(r"^((?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)): ", re.MULTILINE)
_STEP_NOTE = re.compile(r"(?: \[while running '[^']*'\])+\s*$")


def expected_failure(exc: BaseException) -> CoexArchiveError | None:
    """The CoexArchiveError behind what a Beam runner raised, or None if it is not one.

    In process, Beam raises a copy with the step appended and chains the original as context;
    from a worker process it raises RuntimeError with the remote traceback in its message,
    whose last ``module.Type: message`` line names the error.
    """
    seen: set[int] = set()
    found: CoexArchiveError | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CoexArchiveError):
            found = current  # keep walking: the innermost is the original, unannotated
        current = current.__cause__ or current.__context__
    if found is not None:
        return found
    text = str(exc)
    for match in reversed(list(_REMOTE_ERROR.finditer(text))):
        if _error_class(match[1]) is not None:
            message = _STEP_NOTE.sub("", text[match.end() :]).strip()
            return PipelineError(message, error_type=match[2])
    return None


def _error_class(dotted: str) -> type[CoexArchiveError] | None:
    """The CoexArchiveError subclass a ``module.Type`` name refers to, if it is one."""
    module_name, _, name = dotted.rpartition(".")
    if not module_name.startswith(("coexarchive.", "pipelines.")):
        return None
    module = sys.modules.get(module_name)
    candidate = getattr(module, name, None) if module is not None else None
    if isinstance(candidate, type) and issubclass(candidate, CoexArchiveError):
        return candidate
    return None


class HoldBackExpected(logging.Filter):
    """Drop Beam's traceback log for an expected failure; it is raised and reported anyway.

    In process the record carries the exception; from a worker process the runner relays the
    worker's log entry as text (on the root logger), which names the error the same way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            return expected_failure(record.exc_info[1]) is None
        if record.levelno >= logging.ERROR:
            # A relayed entry is a protobuf text dump: its newlines arrive escaped.
            text = record.getMessage().replace("\\n", "\n")
            return expected_failure(RuntimeError(text)) is None
        return True


@contextmanager
def quiet_expected_failures() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _BEAM_ERROR_LOGGERS]
    hold_back = HoldBackExpected()
    for logger in loggers:
        logger.addFilter(hold_back)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(hold_back)


_BEAM_ERROR_LOGGERS = (
    "",  # the root logger and the job service: where worker processes' entries are relayed
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.common",
    "apache_beam.runners.worker.sdk_worker",
    "apache_beam.runners.portability.fn_api_runner.fn_runner",
    "apache_beam.runners.worker.bundle_processor",
)
