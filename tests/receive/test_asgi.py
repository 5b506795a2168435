"""The receiver's ASGI application called directly: the request shapes a client rarely sends.

Bodies in several chunks, a client that goes away mid-body, repeated signature headers, a handler
that fails: each against a real spool, so "nothing stored" means nothing reached the disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coexarchive.raw import Delivery, signature_header
from coexarchive.receive.app import Receiver, ReceiverConfig, create_app
from coexarchive.receive.spool import Spool

SECRET = b"current-app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[{"text":"hello \xc3\xa4"}]}'


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    spool = Spool(tmp_path / "spool", "rcv-test", segment_age=3600)
    spool.open()
    config = ReceiverConfig(app_secrets=(b"rotated-out", SECRET), max_body_bytes=1000)
    yield Receiver(config, spool)
    spool.close()


def landed(receiver: Receiver) -> list[Delivery]:
    spool = receiver.spool
    spool.flush_active()
    for _ in range(500):
        if spool._fd is None:
            break
        time.sleep(0.01)
    return [d for s in spool.closed_segments() for d in spool.read(s)]


def call(
    receiver: Receiver,
    messages: list[dict[str, Any]],
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "POST",
    path: str = "/webhook",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run one request through the app; returns status, headers and body as sent."""
    app = create_app(receiver)
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": headers}  # fmt: skip
    queue = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start, body = sent
    assert start["type"] == "http.response.start"
    return start["status"], dict(start["headers"]), body["body"]


def chunks(data: bytes, size: int) -> list[dict[str, Any]]:
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [
        {"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
        for n, part in enumerate(parts)
    ]


def signed(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"x-hub-signature-256", signature_header(SECRET, body).encode()),
    ]


def test_a_body_in_many_chunks_is_landed_exactly(receiver: Receiver) -> None:
    status, _, _ = call(receiver, chunks(BODY, 7), signed(BODY))
    assert status == 200
    [delivery] = landed(receiver)
    assert delivery.body == BODY
    assert delivery.headers["x-hub-signature-256"] == signature_header(SECRET, BODY)


def test_chunks_past_the_limit_are_cut_off_and_never_stored(receiver: Receiver) -> None:
    body = b"a" * 1001
    status, _, _ = call(receiver, chunks(body, 300), signed(body))
    assert status == 413
    assert receiver.metrics.rejections["too_large"] == 1
    assert landed(receiver) == []


def test_one_piece_past_the_limit_without_a_length_is_refused(receiver: Receiver) -> None:
    body = b"a" * 1001
    status, _, _ = call(receiver, chunks(body, 4096), signed(body))
    assert status == 413
    assert landed(receiver) == []


def test_a_client_gone_mid_body_stores_nothing(receiver: Receiver) -> None:
    messages = [*chunks(BODY, 10)[:2], {"type": "http.disconnect"}]
    status, _, _ = call(receiver, messages, signed(BODY))
    assert status == 400
    assert receiver.metrics.rejections["bad_request"] == 1
    assert landed(receiver) == []


def test_the_first_signature_header_is_the_one_checked_and_kept(receiver: Receiver) -> None:
    forged = (b"x-hub-signature-256", b"sha256=" + b"0" * 64)
    good = signed(BODY)[1]
    status, _, _ = call(receiver, chunks(BODY, 4096), [forged, good])
    assert status == 403
    status, _, _ = call(receiver, chunks(BODY, 4096), [good, forged])
    assert status == 200
    [delivery] = landed(receiver)
    assert delivery.headers["x-hub-signature-256"] == good[1].decode()


def test_header_names_outside_the_allowlist_are_not_kept(receiver: Receiver) -> None:
    headers = [*signed(BODY), (b"authorization", b"Bearer t0ken"), (b"cookie", b"s=1")]
    assert call(receiver, chunks(BODY, 4096), headers)[0] == 200
    [delivery] = landed(receiver)
    assert set(delivery.headers) == {"content-type", "x-hub-signature-256"}


def test_a_failing_handler_answers_500_and_logs_only_the_error_class(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object) -> int:
        raise RuntimeError("hello \xe4 from the body")

    monkeypatch.setattr(receiver.spool, "append", broken)
    caplog.set_level(logging.DEBUG)
    status, headers, _ = call(receiver, chunks(BODY, 4096), signed(BODY))
    assert status == 500
    assert headers[b"cache-control"] == b"no-store"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "RuntimeError" in logged
    assert "hello" not in logged
    assert receiver.metrics.responses["webhook", 500] == 1


def test_refusals_carry_the_security_headers_and_a_length(receiver: Receiver) -> None:
    status, headers, body = call(receiver, chunks(BODY, 4096), [])
    assert status == 401
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"content-length"] == str(len(body)).encode()


def test_lifespan_is_answered(receiver: Receiver) -> None:
    app = create_app(receiver)
    inbox: list[dict[str, str]] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, str]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app({"type": "lifespan"}, receive, send), 5))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
