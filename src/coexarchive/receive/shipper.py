"""The shipper: closed spool segments → landing objects under ``raw/`` → trim, in seq order.

A segment is removed from the spool only after ``store.put`` confirmed the object (created, or
identical bytes already there). A crash between upload and trim re-uploads the same bytes to the
same key, which the create-only store answers as a no-op. When the store is down, the shipper
backs off and retries; the spool keeps every delivery meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from coexarchive.errors import CoexArchiveError, FormatError, ObjectExistsError
from coexarchive.raw import Delivery, decode_landing, encode_landing, landing_key
from coexarchive.receive.spool import ClosedSegment, Spool
from coexarchive.store.base import ObjectStore, Retention

__all__ = ["Shipper", "ShipperStats", "ship_segment"]

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
    key = landing_key(deliveries[0].receiver_id, deliveries[0].seq, deliveries[0].received_at)
    data = encode_landing(deliveries)
    try:
        created = store.put(
            key, data, retention=retention_for(key), content_type="application/zstd"
        )
    except ObjectExistsError:
        # Another encoder version may compress the same lines differently: compare the lines.
        if not _same_deliveries(store.get(key), key, deliveries):
            raise
        created = False
    return key, created


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

    def _ship(self, segment: ClosedSegment) -> bool:
        deliveries = self.spool.read(segment)
        if not deliveries:
            self.spool.trim(segment, segment.first_seq)
            return True
        try:
            key, created = ship_segment(self.store, deliveries, self.retention_for)
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
        self.spool.trim(segment, deliveries[-1].seq)
        self.stats.objects += 1
        self.stats.deliveries += len(deliveries)
        self.stats.already_there += 0 if created else 1
        self.stats.last_success = time.time()
        log.info("shipped", extra={"key": key, "deliveries": len(deliveries)})
        return True

    def _run(self) -> None:
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
