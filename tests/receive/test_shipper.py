"""The shipper: land closed segments under Object Lock, trim only after the store confirms."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coexarchive.errors import StorageError
from coexarchive.raw import decode_landing, encode_landing
from coexarchive.receive.shipper import Shipper, encode_segment, ship_segment
from coexarchive.receive.spool import Spool
from coexarchive.store.base import Retention
from coexarchive.store.memory import MemoryStore

LOCK = Retention("GOVERNANCE", datetime(2030, 1, 1, tzinfo=UTC))
RECEIVED = 1_767_571_200_000  # 2026-01-05


def retention_for(key: str) -> Retention:
    return LOCK


class FlakyStore(MemoryStore):
    """A store that fails while ``down`` is set, like S3 behind a broken network."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.attempts = 0

    def put(self, key: str, data: bytes, **kwargs: object) -> bool:  # type: ignore[override]
        self.attempts += 1
        if self.down:
            raise StorageError("connection refused")
        return super().put(key, data, **kwargs)  # type: ignore[arg-type]


def filled_spool(directory: Path, count: int = 20, *, segment_bytes: int = 400) -> Spool:
    spool = Spool(directory, "rcv-a", segment_bytes=segment_bytes)
    spool.open()

    async def fill() -> None:
        for n in range(count):
            await spool.append(
                "webhook", {"content-type": "application/json"}, b'{"n":%d}' % n, RECEIVED
            )

    asyncio.run(fill())
    spool.close()
    return spool


def landed_bodies(store: MemoryStore) -> list[bytes]:
    return [
        line.delivery.body
        for key in store.list("raw/")
        for line in decode_landing(store.get(key), key=key)
        if line.delivery is not None
    ]


def test_ships_every_segment_under_lock_and_trims(tmp_path: Path) -> None:
    store = MemoryStore()
    spool = filled_spool(tmp_path)
    segments = len(spool.closed_segments())
    assert segments > 1
    assert Shipper(spool, store, retention_for).ship_once()
    keys = list(store.list("raw/"))
    assert len(keys) == segments
    assert keys[0] == "raw/date=2026-01-05/rcv-a-00000000000000000000.jsonl.zst"
    assert all(store.info(key).retention == LOCK for key in keys)
    assert sorted(landed_bodies(store)) == sorted(b'{"n":%d}' % n for n in range(20))
    assert not spool.closed_segments() and not list((tmp_path / "segments").iterdir())


def test_store_down_keeps_everything_then_resumes(tmp_path: Path) -> None:
    store = FlakyStore()
    store.down = True
    spool = filled_spool(tmp_path)
    shipper = Shipper(spool, store, retention_for)
    assert not shipper.ship_once()
    assert shipper.stats.failures == 1 and store.attempts == 1  # stops at the first refusal
    assert len(spool.closed_segments()) > 1
    store.down = False
    assert shipper.ship_once()
    assert len(landed_bodies(store)) == 20


def test_crash_between_upload_and_trim_reuploads_as_a_no_op(tmp_path: Path) -> None:
    store = MemoryStore()
    spool = filled_spool(tmp_path, segment_bytes=1 << 20)
    (segment,) = spool.closed_segments()
    # The upload happened, the trim did not (the process died in between).
    deliveries = spool.read(segment)
    store.put(
        "raw/date=2026-01-05/rcv-a-00000000000000000000.jsonl.zst", encode_landing(deliveries)
    )
    again = Spool(tmp_path, "rcv-a")
    again.open()
    shipper = Shipper(again, store, retention_for)
    assert shipper.ship_once()
    again.close()
    assert shipper.stats.already_there == 1
    assert len(landed_bodies(store)) == 20


def test_same_lines_compressed_differently_count_as_shipped(tmp_path: Path) -> None:
    import zstandard

    store = MemoryStore()
    spool = filled_spool(tmp_path, segment_bytes=1 << 20)
    (segment,) = spool.closed_segments()
    lines = zstandard.ZstdDecompressor().decompress(encode_landing(spool.read(segment)))
    other = zstandard.ZstdCompressor(level=19).compress(lines)
    store.put("raw/date=2026-01-05/rcv-a-00000000000000000000.jsonl.zst", other)
    assert Shipper(spool, store, retention_for).ship_once()
    assert not spool.closed_segments()


def test_different_object_at_the_key_is_never_overwritten_and_segment_kept(tmp_path: Path) -> None:
    store = MemoryStore()
    spool = filled_spool(tmp_path, segment_bytes=1 << 20)
    key = "raw/date=2026-01-05/rcv-a-00000000000000000000.jsonl.zst"
    store.put(key, b"someone else's bytes")
    shipper = Shipper(spool, store, retention_for)
    assert not shipper.ship_once()
    assert shipper.stats.conflicts == 1
    assert store.get(key) == b"someone else's bytes"
    assert len(spool.closed_segments()) == 1


@pytest.mark.parametrize("count", [1, 3])
def test_background_thread_ships_and_stop_drains(tmp_path: Path, count: int) -> None:
    store = MemoryStore()
    spool = filled_spool(tmp_path, count)
    shipper = Shipper(spool, store, retention_for, poll=0.05)
    shipper.start()
    shipper.stop(drain_for=5.0)
    assert len(landed_bodies(store)) == count


def test_streamed_segment_encodes_exactly_as_the_read_one(tmp_path: Path) -> None:
    spool = filled_spool(tmp_path, segment_bytes=1 << 20)
    (segment,) = spool.closed_segments()
    deliveries = spool.read(segment)
    stream = spool.stream(segment)
    assert not isinstance(stream, list)  # decoded as consumed, not all at once
    encoded = encode_segment(stream)
    assert encoded is not None
    key, data, count, last_seq = encoded
    assert data == encode_landing(deliveries)
    assert (count, last_seq) == (len(deliveries), deliveries[-1].seq)
    assert key == ship_segment(MemoryStore(), deliveries, retention_for)[0]
    assert encode_segment(iter([])) is None


def test_encoder_process_lands_the_same_objects_as_the_thread(tmp_path: Path) -> None:
    here, there = MemoryStore(), MemoryStore()
    assert Shipper(filled_spool(tmp_path / "a"), here, retention_for).ship_once()
    shipper = Shipper(filled_spool(tmp_path / "b"), there, retention_for, encode_in_process=True)
    try:
        assert shipper.ship_once()
    finally:
        shipper.stop()
    assert shipper._encoder is None, "stop ends the encoder process"
    keys = list(here.list("raw/"))
    assert len(keys) > 1 and keys == list(there.list("raw/"))
    assert all(here.get(key) == there.get(key) for key in keys)


def test_a_killed_encoder_is_replaced_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    store = MemoryStore()
    spool = filled_spool(tmp_path)
    segments = len(spool.closed_segments())
    shipper = Shipper(spool, store, retention_for, encode_in_process=True)
    try:
        pid = shipper._start_encoder().submit(os.getpid).result()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            shipper.ship_once()
        assert list(store.list("raw/")) == [] and len(spool.closed_segments()) == segments
        assert shipper.ship_once()  # a new encoder
    finally:
        shipper.stop()
    assert sorted(landed_bodies(store)) == sorted(b'{"n":%d}' % n for n in range(20))
    assert not spool.closed_segments()


def test_encoder_process_ends_when_the_receiver_is_killed(tmp_path: Path) -> None:
    code = (
        "import os, sys, time\n"
        "from coexarchive.receive.shipper import Shipper\n"
        "from coexarchive.receive.spool import Spool\n"
        "from coexarchive.store.memory import MemoryStore\n"
        "spool = Spool(sys.argv[1], 'rcv-a')\n"
        "shipper = Shipper(spool, MemoryStore(), lambda key: None, encode_in_process=True)\n"
        "print(shipper._start_encoder().submit(os.getpid).result(), flush=True)\n"
        "time.sleep(60)\n"
    )
    receiver = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "spool")], stdout=subprocess.PIPE
    )
    with receiver:
        assert receiver.stdout is not None
        encoder = int(receiver.stdout.readline())
        assert alive(encoder)
        receiver.kill()
    deadline = time.monotonic() + 10
    while alive(encoder) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(encoder):
        os.kill(encoder, signal.SIGKILL)
        pytest.fail("the encoder process outlived its receiver")


def alive(pid: int) -> bool:
    """Running, not exited (a zombie nobody reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
