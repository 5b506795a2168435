"""Beam's portability path on one machine: an embedded job service and an external worker pool.

The pipeline is translated to its proto, submitted to the embedded job service
(``--job_endpoint=embed``) and run by SDK harnesses in *separate processes* that a worker pool
(``apache_beam.runners.worker.worker_pool_main``) starts and that talk the Fn API over gRPC: the
path Flink, Spark and Dataflow take, minus their job servers. Whatever does not survive pickling,
staging or the Fn API between processes fails here first.

The pool starts each harness as ``python -c …`` from PATH, so the venv's interpreter goes first on
the pool's PATH. The embedded service refuses ``PROCESS`` environments and ``LOOPBACK`` keeps the
harness in the submitting process, hence ``EXTERNAL``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

_STARTED = re.compile(r"Started worker pool servicer at port: (\S+?:\d+)")
_HARNESS = "Starting worker with command"


class WorkerPool:
    """A running pool: its address and how many SDK harness processes it has started."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.harnesses_started = 0


@contextmanager
def worker_pool(
    env: Mapping[str, str] | None = None, *, timeout: float = 60.0
) -> Iterator[WorkerPool]:
    """A worker pool in its own process group, stopped (with its harnesses) on leaving."""
    child_env = dict(os.environ if env is None else env)
    child_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + child_env.get("PATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=0"],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pool = WorkerPool(_wait_for_address(proc, timeout))
        _follow_log(proc, pool)
        yield pool
    finally:
        # The pool and the harnesses it started share its process group.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_for_address(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = _STARTED.search(line)
        if found:
            return found.group(1)
    raise RuntimeError("worker pool did not start:\n" + "".join(seen[-20:]))


def _follow_log(proc: subprocess.Popen[str], pool: WorkerPool) -> None:
    """Read the pool's log in the background (a full pipe would block it); count harnesses."""
    import threading

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if _HARNESS in line:
                pool.harnesses_started += 1

    threading.Thread(target=read, daemon=True, name="worker-pool-log").start()


def portable_args(address: str, *extra: str, workers: int = 2) -> list[str]:
    """Beam arguments running a pipeline on the embedded job service, harnesses from the pool."""
    return [
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={address}",
        f"--direct_num_workers={workers}",
        *extra,
    ]


def portable_options(address: str, *extra: str, workers: int = 2) -> PipelineOptions:
    return PipelineOptions(portable_args(address, *extra, workers=workers))
