"""The local spool: deliveries made durable (fsync'd) before the receiver answers 200.

A dedicated writer thread takes every append pending at that moment, writes them with one
``write`` and one ``fdatasync`` (group commit), then resolves their waiters. Concurrent deliveries
therefore share an fsync, and a 200 always means "on disk".

On disk, ``<spool>/segments/<first-seq>.seg`` holds length-prefixed, CRC-checked frames. The active
segment rotates by size and age; closed segments are shipped to ``raw/`` by the shipper and removed
only after the upload is confirmed. ``<spool>/next-seq`` keeps the sequence watermark so that a
sequence number (and so a landing key) is never reused, even after every segment was trimmed.

Recovery after a crash truncates a torn tail (bytes that were never fsync'd, so never answered
200) and keeps every complete frame; frames found after damage in the middle of a file are
salvaged, and the damaged file is copied to ``<spool>/damaged/`` for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from coexarchive.errors import ConfigError, SpoolError, SpoolFull, SpoolUnavailable
from coexarchive.raw import Delivery, kept_headers, receiver_id_problem

__all__ = [
    "ClosedSegment",
    "RecoveryReport",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolUnavailable",
    "iter_segment",
    "read_segment",
]

log = logging.getLogger("coexarchive.receive.spool")

MAGIC = b"CXS1"
_FRAME_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
_PAYLOAD_HEAD = struct.Struct("<QQBI")  # seq, received_at, source code, headers length
_SOURCES = ("webhook", "outbound")
_SOURCE_CODES = {name: code for code, name in enumerate(_SOURCES)}
_MAX_PAYLOAD = 64 << 20
_SEGMENT_SUFFIX = ".seg"
_SEQ_FILE = "next-seq"
_Headers = Mapping[str, str] | Iterable[tuple[str, str]]
_LOCK_FILE = "lock"


@dataclass(frozen=True)
class ClosedSegment:
    """A segment that takes no more appends: ready to ship."""

    first_seq: int
    path: Path
    size: int


@dataclass
class RecoveryReport:
    """What recovery found on disk at start."""

    segments: int = 0
    deliveries: int = 0
    truncated_bytes: int = 0
    damaged_files: list[str] = field(default_factory=list)
    next_seq: int = 0


@dataclass
class _Pending:
    received_at: int
    source_code: int
    tail: bytes  # kept headers (JSON) followed by the exact body
    headers_length: int
    size: int  # the whole frame's size on disk
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


@dataclass
class SpoolStats:
    """Counters the metrics endpoint reads; written by the writer thread only."""

    batches: int = 0
    appended: int = 0
    fsync_seconds: float = 0.0
    write_errors: int = 0
    rejected_full: int = 0
    segments_closed: int = 0


def encode_frame(seq: int, received_at: int, source: str, headers: _Headers, body: bytes) -> bytes:
    """One spool frame: header, then seq, receive time, source, kept headers and the exact body."""
    header_bytes = orjson.dumps(kept_headers(headers))
    return _frame(seq, received_at, _SOURCE_CODES[source], len(header_bytes), header_bytes + body)


def _frame(seq: int, received_at: int, source_code: int, headers_length: int, tail: bytes) -> bytes:
    head = _PAYLOAD_HEAD.pack(seq, received_at, source_code, headers_length)
    crc = zlib.crc32(tail, zlib.crc32(head))
    return _FRAME_HEAD.pack(MAGIC, len(head) + len(tail), crc) + head + tail


def _frame_at(data: bytes | memoryview, offset: int) -> tuple[bytes, int] | None:
    """The payload of a complete, intact frame at ``offset`` and the offset after it, or None."""
    end_head = offset + _FRAME_HEAD.size
    if end_head > len(data):
        return None
    magic, length, crc = _FRAME_HEAD.unpack_from(data, offset)
    if magic != MAGIC or length > _MAX_PAYLOAD or end_head + length > len(data):
        return None
    payload = bytes(data[end_head : end_head + length])
    if zlib.crc32(payload) != crc or length < _PAYLOAD_HEAD.size:
        return None
    return payload, end_head + length


def _scan(data: bytes) -> tuple[list[bytes], int, bool]:
    """Intact payloads, the end of the intact prefix, and whether frames follow a damaged part."""
    payloads: list[bytes] = []
    offset = 0
    while offset < len(data):
        frame = _frame_at(data, offset)
        if frame is None:
            break
        payloads.append(frame[0])
        offset = frame[1]
    prefix_end = offset
    salvaged = False
    search = offset + 1
    while offset < len(data):
        # Resynchronise on the next magic that starts an intact frame.
        found = data.find(MAGIC, search)
        if found < 0:
            break
        frame = _frame_at(data, found)
        if frame is None:
            search = found + 1
            continue
        salvaged = True
        payloads.append(frame[0])
        offset = search = frame[1]
    return payloads, prefix_end, salvaged


def _decode_payload(payload: bytes, receiver_id: str) -> Delivery:
    seq, received_at, code, headers_length = _PAYLOAD_HEAD.unpack_from(payload)
    start = _PAYLOAD_HEAD.size
    headers = orjson.loads(payload[start : start + headers_length])
    body = payload[start + headers_length :]
    return Delivery(receiver_id, seq, received_at, _SOURCES[code], headers, body)


def read_segment(path: Path, receiver_id: str) -> list[Delivery]:
    """Every intact delivery in a spool segment file, in file order."""
    return list(iter_segment(path, receiver_id))


def iter_segment(path: Path, receiver_id: str) -> Iterator[Delivery]:
    """The same deliveries as :func:`read_segment`, decoded one at a time as they are consumed.

    The payloads are bytes, which the cyclic collector ignores; decoded deliveries (objects and
    header dicts it does track) then live only while they are encoded, so the receiver's
    collections do not walk a whole segment's worth of them while requests wait.
    """
    payloads, _, _ = _scan(path.read_bytes())
    for payload in payloads:
        yield _decode_payload(payload, receiver_id)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp, fsync, rename, dir fsync)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


class Spool:
    """A group-commit, crash-safe append log of deliveries, rotated into shippable segments."""

    def __init__(
        self,
        directory: Path,
        receiver_id: str,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        segment_age: float = 5.0,
        max_batch_bytes: int = 8 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problem = receiver_id_problem(receiver_id)
        if problem is not None:
            # Refused here, not at the first upload: every shipping pass would fail, and the
            # spool would fill while the receiver kept answering 200.
            raise ConfigError(problem)
        self.directory = Path(directory)
        self.receiver_id = receiver_id
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segment_age = segment_age
        self.max_batch_bytes = max_batch_bytes
        self.stats = SpoolStats()
        self._clock = clock
        self._segments_dir = self.directory / "segments"
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._closed: list[ClosedSegment] = []
        self._closed_bytes = 0
        self._next_seq = 0
        self._fd: int | None = None
        self._active_seq = 0
        self._active_size = 0
        self._active_since = 0.0
        self._failure: OSError | None = None
        self._retry_at = 0.0
        self._running = False
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._listeners: list[Callable[[], None]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Take the spool's lock, recover what is on disk, and start the writer thread."""
        self._segments_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolUnavailable(
                f"spool {self.directory} is in use by another receiver: give each its own"
            ) from None
        report = self._recover()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()
        return report

    def close(self) -> None:
        """Write what is pending, close the active segment and stop the writer."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_active()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def on_segment_closed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the writer thread) whenever a segment becomes shippable."""
        self._listeners.append(listener)

    # --- appending ------------------------------------------------------------------------------

    async def append(self, source: str, headers: _Headers, body: bytes, received_at: int) -> int:
        """Make a delivery durable; returns its seq once it is fsync'd, or raises SpoolError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        header_bytes = orjson.dumps(kept_headers(headers))
        tail = header_bytes + body
        code = _SOURCE_CODES[source]
        size = _FRAME_HEAD.size + _PAYLOAD_HEAD.size + len(tail)
        with self._cond:
            if not self._running:
                raise SpoolUnavailable("the spool is not open")
            if self._failure is not None and self._clock() < self._retry_at:
                raise SpoolUnavailable(f"the spool disk failed recently ({self._failure.strerror})")
            if self.used_bytes() + size > self.max_bytes:
                self.stats.rejected_full += 1
                raise SpoolFull(f"the spool holds {self.used_bytes()} of {self.max_bytes} bytes")
            self._pending.append(
                _Pending(received_at, code, tail, len(header_bytes), size, loop, future)
            )
            self._pending_bytes += size
            self._cond.notify()
        return await future

    def used_bytes(self) -> int:
        """Bytes held: closed segments, the active segment and appends not yet written."""
        return self._closed_bytes + self._active_size + self._pending_bytes

    @property
    def healthy(self) -> bool:
        """Whether the spool is open, not failing, and less than 90% full."""
        room = self.used_bytes() < 0.9 * self.max_bytes
        return self._running and self._failure is None and room

    # --- shipping interface ---------------------------------------------------------------------

    def closed_segments(self) -> list[ClosedSegment]:
        """Segments ready to ship, oldest first."""
        with self._cond:
            return list(self._closed)

    def read(self, segment: ClosedSegment) -> list[Delivery]:
        return read_segment(segment.path, self.receiver_id)

    def stream(self, segment: ClosedSegment) -> Iterator[Delivery]:
        return iter_segment(segment.path, self.receiver_id)

    def trim(self, segment: ClosedSegment, last_seq: int) -> None:
        """Forget a shipped segment: raise the seq watermark durably, then remove the file."""
        watermark = self._read_watermark()
        if last_seq + 1 > watermark:
            _write_durably(self.directory / _SEQ_FILE, f"{last_seq + 1}\n".encode())
        segment.path.unlink(missing_ok=True)
        _fsync_dir(self._segments_dir)
        with self._cond:
            if segment in self._closed:
                self._closed.remove(segment)
                self._closed_bytes -= segment.size

    def flush_active(self) -> None:
        """Close the active segment at the next writer pass, so that it can be shipped."""
        with self._cond:
            self._active_since = -float("inf")
            self._cond.notify()

    # --- recovery -------------------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        report = RecoveryReport()
        next_seq = self._read_watermark()
        for stale in self._segments_dir.glob("*.tmp"):
            stale.unlink()
        for path in sorted(self._segments_dir.glob("*" + _SEGMENT_SUFFIX)):
            payloads = self._repair(path, report)
            first = int(path.stem)
            next_seq = max(next_seq, first)
            if not payloads:
                path.unlink()
                continue
            last = _PAYLOAD_HEAD.unpack_from(payloads[-1])[0]
            next_seq = max(next_seq, last + 1)
            size = path.stat().st_size
            self._closed.append(ClosedSegment(first, path, size))
            self._closed_bytes += size
            report.segments += 1
            report.deliveries += len(payloads)
        _fsync_dir(self._segments_dir)
        self._next_seq = report.next_seq = next_seq
        return report

    def _repair(self, path: Path, report: RecoveryReport) -> list[bytes]:
        data = path.read_bytes()
        payloads, prefix_end, salvaged = _scan(data)
        if salvaged:
            damaged = self.directory / "damaged"
            damaged.mkdir(exist_ok=True)
            shutil.copyfile(path, damaged / path.name)
            _fsync_dir(damaged)
            frames = b"".join(_FRAME_HEAD.pack(MAGIC, len(p), zlib.crc32(p)) + p for p in payloads)
            _write_durably(path, frames)
            report.damaged_files.append(path.name)
            log.error(
                "spool segment damaged in the middle; intact frames kept",
                extra={"segment": path.name, "frames": len(payloads)},
            )
        elif prefix_end < len(data):
            # A torn tail: bytes of a batch that was never fsync'd, so never answered 200.
            with open(path, "r+b") as handle:
                handle.truncate(prefix_end)
                os.fsync(handle.fileno())
            report.truncated_bytes += len(data) - prefix_end
        return payloads

    def _read_watermark(self) -> int:
        try:
            return int((self.directory / _SEQ_FILE).read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._pending and not self._age_due():
                    self._cond.wait(timeout=self._wait_time())
                if not self._pending:
                    if self._age_due():
                        self._close_active()
                    if not self._running:
                        return
                    continue
                batch = self._take_batch()
            self._commit(batch)

    def _wait_time(self) -> float | None:
        if self._fd is None or self._active_size == 0:
            return None
        return max(0.0, self._active_since + self.segment_age - self._clock())

    def _age_due(self) -> bool:
        return (
            self._fd is not None
            and self._active_size > 0
            and self._clock() >= self._active_since + self.segment_age
        )

    def _take_batch(self) -> list[_Pending]:
        taken = 0
        size = 0
        for item in self._pending:
            if taken and size + item.size > self.max_batch_bytes:
                break
            taken += 1
            size += item.size
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch

    def _commit(self, batch: list[_Pending]) -> None:
        # Seqs are given here, in write order, so that a batch that fails leaves no gap: the
        # landing format promises contiguous seqs per receiver (RAW_LANDING.md §2).
        first_seq = self._next_seq
        data = b"".join(
            _frame(
                first_seq + n, item.received_at, item.source_code, item.headers_length, item.tail
            )
            for n, item in enumerate(batch)
        )
        self._next_seq = first_seq + len(batch)
        error: OSError | None = None
        started = time.perf_counter()
        try:
            self._ensure_active(first_seq)
            assert self._fd is not None
            written = 0
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])
            os.fdatasync(self._fd)
        except OSError as exc:
            error = exc
            if self._fail(exc):
                self._next_seq = first_seq
        self.stats.fsync_seconds += time.perf_counter() - started
        with self._cond:
            self._pending_bytes -= len(data)
            if error is None:
                self._active_size += len(data)
                self.stats.batches += 1
                self.stats.appended += len(batch)
        _resolve(batch, first_seq, error)
        if error is None and self._active_size >= self.segment_bytes:
            self._close_active()

    def _ensure_active(self, first_seq: int) -> None:
        if self._fd is not None:
            return
        path = self._segments_dir / f"{first_seq:020d}{_SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The new name must be durable before any 200 depends on the file.
        _fsync_dir(self._segments_dir)
        with self._cond:
            self._active_seq, self._active_size = first_seq, 0
            self._active_since = self._clock()
            self._failure = None

    def _fail(self, error: OSError) -> bool:
        """Close the failed segment; whether it was cut back to its last good frame."""
        self.stats.write_errors += 1
        clean = True
        log.error(
            "spool write failed; answering 503 until it recovers", extra={"errno": error.errno}
        )
        fd, self._fd = self._fd, None
        if fd is not None:
            path = self._segments_dir / f"{self._active_seq:020d}{_SEGMENT_SUFFIX}"
            try:
                # Drop the partial batch so the file ends on a frame that was answered 200.
                os.ftruncate(fd, self._active_size)
                os.fsync(fd)
            except OSError:
                # Frames of the failed batch may stay in the file: their seqs are not reused.
                clean = False
            os.close(fd)
            self._register_closed(path, self._active_seq, self._active_size)
        with self._cond:
            self._active_size = 0
            self._failure = error
            self._retry_at = self._clock() + 1.0
        return clean

    def _close_active(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        path = self._segments_dir / f"{self._active_seq:020d}{_SEGMENT_SUFFIX}"
        self._register_closed(path, self._active_seq, self._active_size)
        with self._cond:
            self._active_size = 0

    def _register_closed(self, path: Path, first_seq: int, size: int) -> None:
        if size == 0:
            path.unlink(missing_ok=True)
            return
        with self._cond:
            self._closed.append(ClosedSegment(first_seq, path, size))
            self._closed_bytes += size
            self.stats.segments_closed += 1
        for listener in self._listeners:
            listener()


def _resolve(batch: list[_Pending], first_seq: int, error: OSError | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[int, _Pending]]] = {}
    for n, item in enumerate(batch):
        by_loop.setdefault(item.loop, []).append((first_seq + n, item))
    for loop, items in by_loop.items():
        # A closed loop raises RuntimeError: nobody waits for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, items, error)


def _settle(items: list[tuple[int, _Pending]], error: OSError | None) -> None:
    for seq, item in items:
        if item.future.done():
            continue
        if error is None:
            item.future.set_result(seq)
        else:
            item.future.set_exception(SpoolUnavailable(f"spool write failed ({error.strerror})"))
