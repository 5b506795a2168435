"""The media fetcher against the local Graph server: every failure, retries, dedup, crashes."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from coexarchive.errors import MediaFetchError
from coexarchive.media.receipt import MB, media_key
from coexarchive.store.memory import MemoryStore
from coexarchive.testing.graph import Fault, GraphMediaServer
from support.media import receipts, ref_for

pytestmark = pytest.mark.integration

DAY = 86_400_000


def test_fetch_stores_bytes_by_hash_with_the_referencing_records_retention(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    summary = make_fetcher(store, raw).run([ref])
    assert summary.stored == 1 and summary.receipts == 1
    (receipt,) = receipts(raw)
    key = receipt["object_key"]
    data = store.get(key)
    assert (
        key == media_key(hashlib.sha256(data).hexdigest()) == f"media/v1/sha256={receipt['sha256']}"
    )
    assert receipt["outcome"] == "stored" and receipt["size"] == len(data)
    assert receipt["completes"]["record_id"] == ref.record_id
    retention = store.info(key).retention
    assert retention is not None and retention.retain_until.year == 2027
    # The receipt is raw evidence, under Object Lock like every raw object.
    (receipt_key,) = raw.list("raw/")
    assert raw.info(receipt_key).retention is not None


def test_same_bytes_in_two_messages_are_stored_once_and_referenced_twice(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    first = ref_for(graph_server, "m1", created_ms=graph_clock())
    # A second media id serving the very same bytes (a forwarded photo).
    graph_server.add("m2", "image/jpeg", created_ms=graph_clock(), same_bytes_as="m1")
    second = ref_for(graph_server, "m2", created_ms=graph_clock(), register=False,
                     advertised=first.advertised_sha256)  # fmt: skip
    summary = make_fetcher(store, raw, concurrency=1).run([first, second])
    both = receipts(raw)
    assert {r["media_id"] for r in both} == {"m1", "m2"}
    assert len({r["object_key"] for r in both}) == 1
    assert list(store.list("media/")) == [both[0]["object_key"]]
    assert summary.stored == 1 and summary.already_stored == 1
    assert graph_server.calls("m2") == 0  # known by its hash: not downloaded again


@pytest.mark.parametrize(
    ("faults", "calls"),
    [
        ([Fault("429", call="resolve", retry_after=3)], ("resolve", 2)),
        ([Fault("rate_code", call="resolve")], ("resolve", 2)),
        (
            [Fault("5xx", call="resolve"), Fault("5xx", call="download", status=500)],
            ("download", 2),
        ),
        ([Fault("truncated")], ("download", 2)),
        ([Fault("bad_hash"), Fault("bad_hash")], ("download", 3)),
        ([Fault("short")], ("download", 2)),
        ([Fault("429", retry_after=2)], ("download", 2)),
    ],
    ids=[
        "429",
        "graph-rate-code",
        "5xx",
        "truncated",
        "hash-mismatch",
        "size-mismatch",
        "429-download",
    ],
)
def test_transient_failures_are_retried_until_the_bytes_check(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any, faults: list[Fault],
    calls: tuple[str, int],
) -> None:  # fmt: skip
    store, raw = MemoryStore(), MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    graph_server.fail("m1", *faults)
    fetcher = make_fetcher(store, raw)
    assert fetcher.run([ref]).stored == 1
    (receipt,) = receipts(raw)
    assert receipt["outcome"] == "stored" and receipt["attempts"] == len(faults) + 1
    assert hashlib.sha256(store.get(receipt["object_key"])).hexdigest() == receipt["sha256"]
    assert graph_server.calls("m1", calls[0]) == calls[1]


def test_retry_after_is_honoured_by_every_worker(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    graph_server.fail("m1", Fault("429", call="resolve", retry_after=3))
    fetcher = make_fetcher()
    fetcher.run([ref])
    assert fetcher.sleeps and 2.9 < max(fetcher.sleeps) <= 3.0


def test_hash_mismatch_never_stores_the_bytes_and_is_retried_next_run_inside_the_window(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    graph_server.fail("m1", *[Fault("bad_hash")] * 3)
    summary = make_fetcher(store, raw, max_attempts=3).run([ref])
    assert summary.deferred == {"hash_mismatch": 3 // 3} and receipts(raw) == []
    assert list(store.list("media/")) == []
    assert make_fetcher(store, raw).run([ref]).stored == 1  # Graph recovered: stored


def test_persistent_failure_after_the_window_is_sealed_as_a_named_gap(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock() - 7 * DAY + 60_000)
    graph_server.fail("m1", *[Fault("5xx", call="resolve")] * 2)
    graph_clock.advance(60_000)  # the window closes while it keeps failing
    summary = make_fetcher(raw_store=raw, max_attempts=2).run([ref])
    (receipt,) = receipts(raw)
    assert receipt["outcome"] == "failed" and receipt["cause"] == "server_error"
    assert summary.failed == {"server_error": 1}


def test_expired_id_is_a_final_gap_and_not_retried(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    graph_clock.advance(7 * DAY)
    fetcher = make_fetcher(raw_store=raw)
    fetcher.run([ref])
    (receipt,) = receipts(raw)
    assert (receipt["outcome"], receipt["cause"], receipt["attempts"]) == ("failed", "expired", 1)
    assert graph_server.calls("m1", "resolve") == 1


def test_unknown_id_inside_the_window_is_not_found(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    ref = ref_for(graph_server, "ghost", created_ms=graph_clock(), register=False)
    make_fetcher(raw_store=raw).run([ref])
    assert [r["cause"] for r in receipts(raw)] == ["not_found"]


def test_expired_download_url_is_resolved_again(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    fetcher = make_fetcher()
    real_download = fetcher.client.download

    def late_download(url: str, *args: Any, **kwargs: Any) -> int:
        if graph_server.calls("m1", "resolve") == 1:
            graph_clock.advance(5 * 60_000)  # the URL's five minutes pass before it is used
        return real_download(url, *args, **kwargs)

    fetcher.client.download = late_download  # type: ignore[method-assign]
    assert fetcher.run([ref]).stored == 1
    assert graph_server.calls("m1", "resolve") == 2


def test_over_the_size_limit_is_too_large_and_not_downloaded(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    ref = ref_for(graph_server, "big", created_ms=graph_clock(), size=5 * MB + 1)
    make_fetcher(raw_store=raw).run([ref])
    assert [r["cause"] for r in receipts(raw)] == ["too_large"]
    assert graph_server.calls("big") == 0


def test_forbidden_media_is_a_named_gap(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    ref = ref_for(graph_server, "m1", created_ms=graph_clock())
    graph_server.fail("m1", Fault("forbidden", call="resolve"))
    make_fetcher(raw_store=raw).run([ref])
    assert [r["cause"] for r in receipts(raw)] == ["forbidden"]


def test_a_refused_token_stops_the_job_without_recording_gaps(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    raw = MemoryStore()
    refs = [ref_for(graph_server, f"m{i}", created_ms=graph_clock()) for i in range(5)]
    with pytest.raises(MediaFetchError, match="refuses the token") as caught:
        make_fetcher(raw_store=raw, token="wrong").run(refs)
    assert caught.value.fatal and receipts(raw) == []


def test_token_is_never_sent_to_a_foreign_download_host(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    fetcher = make_fetcher()
    with pytest.raises(MediaFetchError, match="refusing to send the Graph token"):
        fetcher.client.download(
            "https://attacker.example/steal", lambda b: None, limit=10, chunk=10
        )
    with pytest.raises(MediaFetchError, match="refusing"):
        fetcher.client.download("http://cdn.fbsbx.com/x", lambda b: None, limit=10, chunk=10)


def test_crash_mid_fetch_rerun_fetches_the_rest_once(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    refs = [ref_for(graph_server, f"m{i}", created_ms=graph_clock()) for i in range(6)]

    class Crash(BaseException):
        pass

    class CrashingStore(MemoryStore):
        """Dies right after storing the third attachment, before its receipt lands."""

        def put(self, key: str, data: bytes, **kwargs: Any) -> bool:
            created = store.put(key, data, **kwargs)
            with lock:
                puts.append(key)
                if len(puts) == 3:
                    raise Crash
            return created

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    lock, puts = threading.Lock(), []
    crashing = CrashingStore()
    for name in ("exists", "info", "get", "list", "extend_retention"):
        setattr(crashing, name, getattr(store, name))
    with pytest.raises(Crash):
        make_fetcher(crashing, raw, concurrency=1).run(refs)
    landed_first = {r["media_id"] for r in receipts(raw)}
    # The crashed one's bytes are stored but its receipt never landed.
    assert "m2" not in landed_first and {"m0", "m1"} <= landed_first

    from coexarchive.media.fetch import landed_receipts

    done = set(landed_receipts(raw))
    rest = [ref for ref in refs if (ref.chain_id, ref.media_id) not in done]
    make_fetcher(store, raw, concurrency=2).run(rest)
    final = receipts(raw)
    assert sorted(r["media_id"] for r in final) == [f"m{i}" for i in range(6)]
    # Every attachment was downloaded exactly once, the one stored before the crash included.
    assert [graph_server.calls(f"m{i}") for i in range(6)] == [1] * 6
    assert len(list(store.list("media/"))) == 6


def test_concurrency_is_bounded(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    refs = [ref_for(graph_server, f"m{i}", created_ms=graph_clock()) for i in range(12)]
    fetcher = make_fetcher(concurrency=3)
    active, peak, lock = [0], [0], threading.Lock()
    real = fetcher.client.download

    def counted(*args: Any, **kwargs: Any) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    fetcher.client.download = counted  # type: ignore[method-assign]
    assert fetcher.run(refs).stored == 12
    assert 1 <= peak[0] <= 3


def test_an_outbound_sends_uploaded_media_id_is_kept_for_thirty_days(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    import dataclasses

    raw = MemoryStore()
    ref = ref_for(graph_server, "up1", created_ms=graph_clock(), register=False)
    inbound = dataclasses.replace(ref, captured_time=graph_clock() - 8 * DAY)
    outbound = dataclasses.replace(inbound, media_id="up2", kind="outbound")
    make_fetcher(raw_store=raw).run([inbound, outbound])
    causes = {r["media_id"]: r["cause"] for r in receipts(raw)}
    # Past 7 days a webhook's id has expired; an uploaded one is merely unknown until day 30.
    assert causes == {"up1": "expired", "up2": "not_found"}
