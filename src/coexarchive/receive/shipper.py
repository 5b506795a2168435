"""The shipper: closed spool segments → landing objects under ``raw/`` → trim, in seq order.

A segment is removed from the spool only after ``store.put`` confirmed the object (created, or
identical bytes already there). A crash between upload and trim re-uploads the same bytes to the
same key, which the create-only store answers as a no-op. When the store is down, the shipper
backs off and retries; the spool keeps every delivery meanwhile.

Encoding a segment (decode its frames, one JSON line per delivery, zstd) is Python work: on the
receiver's own thread it shares the GIL with the event loop, and the deliveries it decodes are
walked by every collection the requests trigger. With ``encode_in_process`` it runs in a child
process that reads the closed segment file itself and returns only the landing bytes; the upload
and the trim stay here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from coexarchive.errors import (
    CoexArchiveError,
    FormatError,
    InvalidArgumentError,
    ObjectExistsError,
)
from coexarchive.raw import Delivery, decode_landing, encode_landing, landing_key
from coexarchive.receive.spool import ClosedSegment, Spool, iter_segment
from coexarchive.store.base import ObjectStore, Retention

__all__ = ["Shipper", "ShipperStats", "encode_segment", "encode_segment_file", "ship_segment"]

log = logging.getLogger("coexarchive.receive.shipper")

RetentionFor = Callable[[str], Retention | None]


@dataclass
class ShipperStats:
    """Counters for the metrics endpoint."""

    objects: int = 0
    deliveries: int = 0
    already_there: int = 0
    failures: int = 0
    conflicts: int = 0
    last_success: float = 0.0


def ship_segment(
    store: ObjectStore, deliveries: list[Delivery], retention_for: RetentionFor
) -> tuple[str, bool]:
    """Land one segment's deliveries; ``(key, created)``. Raises if the store did not confirm."""
    encoded = encode_segment(deliveries)
    if encoded is None:
        raise InvalidArgumentError("a landing object needs at least one delivery")
    key, data, _, _ = encoded
    return key, _put(store, key, data, retention_for, lambda: deliveries)


def encode_segment(deliveries: Iterable[Delivery]) -> tuple[str, bytes, int, int] | None:
    """``(key, landing bytes, deliveries, last seq)``, or None when there is no delivery.

    Reads ``deliveries`` once, keeping only the first alive (it names the key).
    """
    first: Delivery | None = None
    count = 0
    last_seq = -1

    def counted() -> Iterator[Delivery]:
        nonlocal first, count, last_seq
        for delivery in deliveries:
            if first is None:
                first = delivery
            count += 1
            last_seq = delivery.seq
            yield delivery

    data = encode_landing(counted())
    if first is None:
        return None
    return landing_key(first.receiver_id, first.seq, first.received_at), data, count, last_seq


def encode_segment_file(path: str, receiver_id: str) -> tuple[str, bytes, int, int] | None:
    """:func:`encode_segment` of a closed spool segment file; what the encoder process runs."""
    return encode_segment(iter_segment(Path(path), receiver_id))


ENCODER_NICENESS = 10


def _encoder_init() -> None:
    """In the encoder process: yield the CPU to request handling, and end with the receiver.

    Shipping may lag behind a busy event loop; the spool holds what waits. A receiver that is
    SIGKILLed cannot stop its encoder, and the encoder holds its own end of the job queue, so it
    would wait forever: it watches its parent instead.
    """
    os.nice(ENCODER_NICENESS)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _put(
    store: ObjectStore,
    key: str,
    data: bytes,
    retention_for: RetentionFor,
    deliveries: Callable[[], list[Delivery]],
) -> bool:
    """Whether the object was created; False when the same deliveries were already there."""
    try:
        return store.put(key, data, retention=retention_for(key), content_type="application/zstd")
    except ObjectExistsError:
        # Another encoder version may compress the same lines differently: compare the lines.
        if not _same_deliveries(store.get(key), key, deliveries()):
            raise
        return False


def _same_deliveries(existing: bytes, key: str, deliveries: list[Delivery]) -> bool:
    try:
        lines = decode_landing(existing, key=key)
    except FormatError:
        return False
    return [line.delivery for line in lines] == deliveries


class Shipper:
    """Ships closed segments from a spool to an object store, on a background thread."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        retention_for: RetentionFor,
        *,
        min_backoff: float = 0.25,
        max_backoff: float = 30.0,
        poll: float = 1.0,
        encode_in_process: bool = False,
    ) -> None:
        self.spool = spool
        self.store = store
        self.retention_for = retention_for
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.poll = poll
        self.stats = ShipperStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self._shipping = threading.Lock()
        self.encode_in_process = encode_in_process
        self._encoder: ProcessPoolExecutor | None = None
        spool.on_segment_closed(self._wake.set)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-shipper", daemon=True)
        self._thread.start()

    def stop(self, *, drain_for: float = 0.0) -> None:
        """Stop the thread; with ``drain_for``, first try to ship what is left for that long."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        deadline = time.monotonic() + drain_for
        while drain_for and self.spool.closed_segments() and time.monotonic() < deadline:
            if not self.ship_once():
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self._close_encoder()

    @property
    def backlog(self) -> int:
        return len(self.spool.closed_segments())

    def ship_once(self) -> bool:
        """Ship every closed segment in order; False at the first one the store did not take."""
        with self._shipping:
            for segment in self.spool.closed_segments():
                if self._stop.is_set() and self._thread is not None:
                    return False
                if not self._ship(segment):
                    return False
            return True

    def _encode(self, segment: ClosedSegment) -> tuple[str, bytes, int, int] | None:
        if not self.encode_in_process:
            # Streamed: one delivery decoded at a time (see iter_segment), the bytes held instead.
            return encode_segment(self.spool.stream(segment))
        encoder = self._start_encoder()
        job = encoder.submit(encode_segment_file, str(segment.path), self.spool.receiver_id)
        try:
            return job.result()
        except BrokenProcessPool:
            # The encoder died (killed, out of memory): the next pass starts a new one.
            self._close_encoder()
            raise

    def _start_encoder(self) -> ProcessPoolExecutor:
        if self._encoder is None:
            # Spawned, not forked: a fork would copy this process's threads' locks and its open
            # descriptors (the spool's flock, the listening socket) into the child.
            self._encoder = ProcessPoolExecutor(
                1, multiprocessing.get_context("spawn"), initializer=_encoder_init
            )
        return self._encoder

    def _close_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.shutdown(wait=True, cancel_futures=True)

    def _ship(self, segment: ClosedSegment) -> bool:
        encoded = self._encode(segment)
        if encoded is None:
            self.spool.trim(segment, segment.first_seq)
            return True
        key, data, count, last_seq = encoded
        try:
            created = _put(
                self.store, key, data, self.retention_for, lambda: self.spool.read(segment)
            )
        except ObjectExistsError:
            self.stats.conflicts += 1
            log.error(
                "a different object already holds this segment's key; segment kept in the spool",
                extra={"segment": segment.path.name},
            )
            return False
        except Exception as error:  # the store's client raises many types; all mean "retry"
            self.stats.failures += 1
            # Our own errors name keys and causes, never content; others are named by type.
            detail = str(error) if isinstance(error, CoexArchiveError) else type(error).__name__
            log.warning(
                "shipping failed; will retry",
                extra={"segment": segment.path.name, "error": detail},
            )
            return False
        self.spool.trim(segment, last_seq)
        self.stats.objects += 1
        self.stats.deliveries += count
        self.stats.already_there += 0 if created else 1
        self.stats.last_success = time.time()
        log.info("shipped", extra={"key": key, "deliveries": count})
        return True

    def _run(self) -> None:
        if self.encode_in_process:
            # Start the encoder now, not at the first segment: its imports take a second of CPU.
            try:
                self._start_encoder().submit(int).result()
            except Exception as error:  # e.g. no process could be spawned: each pass retries
                log.error("encoder did not start", extra={"error": type(error).__name__})
                self._close_encoder()
        while not self._stop.is_set():
            try:
                shipped = self.ship_once()
            except Exception as error:  # e.g. the spool disk: keep the thread alive, retry
                log.error("shipper pass failed; will retry", extra={"error": type(error).__name__})
                shipped = False
            if shipped:
                self._backoff = 0.0
                self._wake.wait(self.poll)
            else:
                self._backoff = min(self.max_backoff, max(self.min_backoff, self._backoff * 2))
                self._stop.wait(self._backoff)
            self._wake.clear()
