"""Continuous ingest: watch ``raw/`` and seal new landing objects within a bounded delay.

Each pass lists the raw objects of recent days, drops those the ingest ledger already names, runs
the ingest pipeline's steps on the rest, and then records them in the ledger: one create-only
marker object per raw key under ``ingested/``. A restart reads the ledger and never re-processes
an old object; a crash between sealing and marking re-runs that batch, which the pipeline's
de-duplication turns into a no-op.

Latency is measured per delivery from its ``received_at`` (taken when the request arrived, just
before the 200) to the end of the pass that sealed it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from coexarchive._internal.clock import now_ms
from coexarchive.errors import CoexArchiveError, ObjectExistsError
from coexarchive.raw import decode_landing, parse_landing_key
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.store.layout import RAW_PREFIX

__all__ = [
    "INGESTED_PREFIX",
    "ContinuousIngest",
    "Ledger",
    "PassResult",
    "marker_key",
    "pipeline_runner",
]

log = logging.getLogger("coexarchive.ingest.follow")

INGESTED_PREFIX = layout.INGESTED_PREFIX
BatchRunner = Callable[[Sequence[str]], Any]


def marker_key(raw_key: str) -> str:
    """The ledger marker that says ``raw_key`` was ingested."""
    return INGESTED_PREFIX + raw_key


class Ledger:
    """Which raw objects were ingested: a create-only marker object per raw key."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def done(self, raw_prefix: str) -> set[str]:
        """Raw keys under ``raw_prefix`` that have a marker."""
        skip = len(INGESTED_PREFIX)
        return {key[skip:] for key in self.store.list(INGESTED_PREFIX + raw_prefix)}

    def mark(self, raw_keys: Iterable[str]) -> None:
        for raw_key in raw_keys:
            body = orjson.dumps({"v": 1, "raw_key": raw_key})
            # Already marked is fine: the ledger says the same thing either way.
            with contextlib.suppress(ObjectExistsError):
                self.store.put(marker_key(raw_key), body, content_type="application/json")


@dataclass
class PassResult:
    """What one pass did."""

    keys: list[str] = field(default_factory=list)
    latencies_ms: list[int] = field(default_factory=list)
    summary: Any = None
    error: str = ""  # why the pass failed (it is retried), else empty


class ContinuousIngest:
    """Polls ``raw/`` and ingests new objects with ``run_batch``; see the module docstring."""

    def __init__(
        self,
        store: ObjectStore,
        run_batch: BatchRunner,
        *,
        poll: float = 5.0,
        lookback_days: int = 8,
        max_batch: int = 1000,
        clock_ms: Callable[[], int] = now_ms,
        window: int = 100_000,
        full_scan_every: float = 3600.0,
    ) -> None:
        self.store = store
        self.run_batch = run_batch
        self.poll = poll
        self.lookback_days = lookback_days
        self.max_batch = max_batch
        self.clock_ms = clock_ms
        self.ledger = Ledger(store)
        self.latencies: deque[int] = deque(maxlen=window)
        self.passes = 0
        self.objects = 0
        self._seen: set[str] = set()
        self.full_scan_every = full_scan_every
        self._last_full_scan: float | None = None

    def pending(self) -> list[str]:
        """Landing objects not yet in the ledger, oldest seq first within a receiver."""
        # Recent days on most passes; all of raw/ at start and now and then, so that an object
        # shipped late into an old date partition (a long S3 outage) is still found.
        now = time.monotonic()
        full = self._last_full_scan is None or now - self._last_full_scan >= self.full_scan_every
        prefixes = [RAW_PREFIX] if full else self._recent_prefixes()
        found: list[str] = []
        for prefix in prefixes:
            done = self.ledger.done(prefix) | self._seen
            found += [
                key
                for key in self.store.list(prefix)
                if key not in done and parse_landing_key(key) is not None
            ]
        if full:
            self._last_full_scan = now
        return found

    def step(self) -> PassResult:
        """One pass: find new raw objects, ingest them, record them in the ledger."""
        keys = self.pending()[: self.max_batch]
        result = PassResult(keys=keys)
        if not keys:
            return result
        received = [at for key in keys for at in self._received_times(key)]
        result.summary = self.run_batch(keys)
        sealed_at = self.clock_ms()
        self.ledger.mark(keys)
        self._seen.update(keys)
        result.latencies_ms = [max(0, sealed_at - at) for at in received]
        self.latencies.extend(result.latencies_ms)
        self.passes += 1
        self.objects += len(keys)
        log.info("ingested", extra={"deliveries": len(received), "objects": len(keys)})
        return result

    def follow(
        self,
        stop: threading.Event | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        """Run passes until ``stop`` is set; a failed pass is logged and retried.

        ``on_pass`` hears of every pass, failed ones included (with ``error`` set).
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            started = time.monotonic()
            try:
                result = self.step()
            except Exception as error:  # Beam and boto3 raise many types; every one means retry
                log.error("ingest pass failed; will retry", extra={"error": type(error).__name__})
                result = PassResult(error=_reason(error))
            if on_pass is not None:
                on_pass(result)
            if len(result.keys) < self.max_batch:
                stop.wait(max(0.0, self.poll - (time.monotonic() - started)))

    def p95_ms(self) -> int | None:
        """95th percentile of 200-to-sealed latency over the recent window, in ms."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def _received_times(self, key: str) -> list[int]:
        try:
            lines = decode_landing(self.store.get(key), key=key)
        except CoexArchiveError:
            return []  # ingest quarantines what cannot be read; it has no latency to report
        return [line.delivery.received_at for line in lines if line.delivery is not None]

    def _recent_prefixes(self) -> list[str]:
        today = datetime.fromtimestamp(self.clock_ms() / 1000, tz=UTC).date()
        days = range(-self.lookback_days, 2)
        self._forget_older_than(today - timedelta(days=self.lookback_days))
        return [f"{RAW_PREFIX}date={(today + timedelta(days=d)).isoformat()}/" for d in days]

    def _forget_older_than(self, oldest: Any) -> None:
        cutoff = oldest.isoformat()
        self._seen = {
            key for key in self._seen if (parsed := parse_landing_key(key)) and parsed[0] >= cutoff
        }


def _reason(error: Exception) -> str:
    """What to tell the operator about a failed pass: our own message, else only the type."""
    if isinstance(error, CoexArchiveError):
        return error.diagnostics()
    return type(error).__name__


def pipeline_runner(
    store_spec: Any, seal_spec: Any, beam_args: Sequence[str] = (), *, auth: Any
) -> BatchRunner:
    """A batch runner that runs the ingest pipeline (FnApiRunner by default) over given keys.

    ``auth`` (a :class:`coexarchive.raw.DeliveryAuth`) authenticates every delivery.
    """

    def run_batch(keys: Sequence[str]) -> Any:
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipelines.ingest import run_pipeline

        options = PipelineOptions(list(beam_args) or ["--runner=FnApiRunner"])
        summary = run_pipeline(list(keys), store_spec, seal_spec, options, auth=auth)
        # A chain refused for an unsigned tail must not have its raw objects marked as ingested.
        summary.check()
        return summary

    return run_batch


def follow_from_settings(
    settings: Any,
    *,
    auth: Any,
    poll: float = 5.0,
    beam_args: Sequence[str] = (),
    stop: Any = None,
    on_pass: Callable[[PassResult], None] | None = None,
) -> ContinuousIngest:
    """``coexarchive ingest --follow``: ingest new raw objects until interrupted."""
    from pipelines.ingest import SealSpec, StoreSpec

    store_spec = StoreSpec(
        settings.bucket, settings.endpoint_url, settings.region_name, settings.sse_kms_key_id
    )
    seal_spec = SealSpec(
        str(settings.key_file),
        settings.archive_name,
        settings.retention,
        trust_file=str(settings.trust_file) if settings.trust_file.exists() else None,
        tsa_file=str(settings.tsa_file) if settings.tsa_file.exists() else None,
        witness_file=str(settings.witness_file) if settings.witness_file.exists() else None,
    )
    follower = ContinuousIngest(
        store_spec.open(), pipeline_runner(store_spec, seal_spec, beam_args, auth=auth), poll=poll
    )
    with contextlib.suppress(KeyboardInterrupt):
        follower.follow(stop, on_pass)
    return follower
