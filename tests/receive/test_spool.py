"""The spool: group commit, rotation, recovery after a crash, the seq watermark, backpressure."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from coexarchive.errors import ConfigError
from coexarchive.receive.spool import (
    MAGIC,
    Spool,
    SpoolFull,
    SpoolUnavailable,
    encode_frame,
    read_segment,
)

HEADERS = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00", "Cookie": "x"}


def bodies(count: int) -> list[bytes]:
    return [f'{{"n":{n},"text":"héllo"}}'.encode() for n in range(count)]


async def append_all(
    spool: Spool, payloads: list[bytes], received_at: int = 1_767_571_200_000
) -> list[int]:
    return list(
        await asyncio.gather(
            *(spool.append("webhook", HEADERS, body, received_at) for body in payloads)
        )
    )


def segment_files(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*.seg"))


def landed(spool: Spool) -> list[bytes]:
    return [d.body for segment in spool.closed_segments() for d in spool.read(segment)]


def test_concurrent_appends_share_fsyncs_and_keep_exact_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a")
    spool.open()
    payloads = bodies(500)
    seqs = asyncio.run(append_all(spool, payloads))
    spool.close()
    assert sorted(seqs) == list(range(500))
    assert spool.stats.batches < 500  # group commit: fewer fsyncs than deliveries
    deliveries = [d for s in spool.closed_segments() for d in spool.read(s)]
    assert sorted(d.body for d in deliveries) == sorted(payloads)
    # Only allowlisted headers reach the spool, lower-cased.
    assert deliveries[0].headers == {
        "content-type": "application/json",
        "x-hub-signature-256": "sha256=00",
    }


def test_rotation_by_size_gives_several_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a", segment_bytes=2_000)

    async def one_by_one() -> None:
        for body in bodies(100):
            await spool.append("webhook", HEADERS, body, 1)

    spool.open()
    asyncio.run(one_by_one())
    assert len(spool.closed_segments()) >= 3
    spool.close()
    assert len(landed(spool)) == 100


def test_rotation_by_age_closes_a_quiet_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a", segment_age=0.05)
    spool.open()
    asyncio.run(append_all(spool, bodies(3)))
    for _ in range(100):
        if spool.closed_segments():
            break
        asyncio.run(asyncio.sleep(0.02))
    assert [len(spool.read(s)) for s in spool.closed_segments()] == [3]
    spool.close()


def test_torn_tail_is_truncated_and_every_complete_frame_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a")
    spool.open()
    asyncio.run(append_all(spool, bodies(10)))
    spool.close()
    (path,) = segment_files(tmp_path)
    torn = encode_frame(10, 1, "webhook", {}, b"never fsync'd")[:-5]
    with open(path, "ab") as handle:
        handle.write(torn)
    again = Spool(tmp_path, "rcv-a")
    report = again.open()
    assert report.truncated_bytes == len(torn)
    assert report.deliveries == 10
    assert len(landed(again)) == 10
    # The torn delivery's seq was never answered 200, but the next one is fresh anyway.
    assert asyncio.run(append_all(again, [b"x"])) == [10]
    again.close()


def test_damage_in_the_middle_salvages_later_frames_and_keeps_a_copy(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a")
    spool.open()
    asyncio.run(append_all(spool, bodies(5)))
    spool.close()
    (path,) = segment_files(tmp_path)
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first frame's payload: its CRC no longer matches
    path.write_bytes(bytes(data))
    again = Spool(tmp_path, "rcv-a")
    report = again.open()
    assert report.damaged_files == [path.name]
    assert (tmp_path / "damaged" / path.name).read_bytes() == bytes(data)
    assert len(landed(again)) == 4
    again.close()


def test_garbage_only_segment_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir(parents=True)
    (tmp_path / "segments" / f"{7:020d}.seg").write_bytes(b"\x00" * 40)
    spool = Spool(tmp_path, "rcv-a")
    report = spool.open()
    assert report.deliveries == 0 and not segment_files(tmp_path)
    assert asyncio.run(append_all(spool, [b"x"])) == [7]  # contiguous: nothing landed at 7
    spool.close()


def test_seq_is_never_reused_after_every_segment_was_trimmed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a")
    spool.open()
    asyncio.run(append_all(spool, bodies(5)))
    spool.close()
    for segment in spool.closed_segments():
        spool.trim(segment, max(d.seq for d in spool.read(segment)))
    assert not segment_files(tmp_path)
    again = Spool(tmp_path, "rcv-a")
    assert again.open().next_seq == 5
    assert asyncio.run(append_all(again, [b"y"])) == [5]
    again.close()


def test_full_spool_refuses_at_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "rcv-a", max_bytes=1_000)
    spool.open()
    asyncio.run(append_all(spool, [b"a" * 400]))
    assert spool.healthy
    with pytest.raises(SpoolFull):
        asyncio.run(append_all(spool, [b"b" * 700]))
    asyncio.run(append_all(spool, [b"c" * 330]))
    assert not spool.healthy  # readiness drops before the very last byte is used
    spool.close()


def test_fsync_failure_answers_unavailable_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, "rcv-a")
    spool.open()
    asyncio.run(append_all(spool, [b"before"]))
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(SpoolUnavailable):
        asyncio.run(append_all(spool, [b"lost, and answered 503"]))
    with pytest.raises(SpoolUnavailable):  # refused at once while the disk is known bad
        asyncio.run(append_all(spool, [b"refused"]))
    assert not spool.healthy
    monkeypatch.setattr(os, "fdatasync", real)
    spool._retry_at = 0.0  # skip the one-second pause before trying the disk again
    asyncio.run(append_all(spool, [b"after"]))
    spool.close()
    assert sorted(landed(spool)) == [b"after", b"before"]
    # The failed batch's seq is given again: seqs stay contiguous, as RAW_LANDING.md requires.
    seqs = [d.seq for s in spool.closed_segments() for d in spool.read(s)]
    assert seqs == [0, 1]


def test_a_second_receiver_cannot_share_the_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path, "rcv-a")
    first.open()
    with pytest.raises(SpoolUnavailable, match="in use"):
        Spool(tmp_path, "rcv-b").open()
    first.close()


def test_append_before_open_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpoolUnavailable):
        asyncio.run(append_all(Spool(tmp_path, "rcv-a"), [b"x"]))


def test_read_segment_ignores_trailing_noise(tmp_path: Path) -> None:
    path = tmp_path / "x.seg"
    path.write_bytes(encode_frame(3, 9, "outbound", {}, b"\xff\x00binary") + MAGIC + b"\x01")
    (delivery,) = read_segment(path, "rcv-a")
    assert (delivery.seq, delivery.received_at, delivery.source, delivery.body) == (
        3,
        9,
        "outbound",
        b"\xff\x00binary",
    )


@pytest.mark.parametrize("receiver_id", ["RCV", "rcv_1", "", "-x", "a" * 64])
def test_a_spool_refuses_a_receiver_id_its_raw_objects_could_not_carry(
    tmp_path: Path, receiver_id: str
) -> None:
    # Accepted, it would fail every upload later while the receiver kept answering 200.
    with pytest.raises(ConfigError, match="a-z, 0-9 and '-'"):
        Spool(tmp_path / "spool", receiver_id)
    assert not (tmp_path / "spool").exists()
