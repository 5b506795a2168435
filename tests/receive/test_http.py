"""The receiver over real HTTP (uvicorn on 127.0.0.1): handshake, signatures, limits, endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from coexarchive.raw import Delivery, signature_header
from coexarchive.receive.app import Receiver, ReceiverConfig, create_app
from coexarchive.receive.capture import CaptureError, OutboundCapture
from coexarchive.receive.server import uvicorn_config
from coexarchive.receive.spool import Spool

pytestmark = pytest.mark.integration

SECRET = b"current-app-secret"
OLD_SECRET = b"previous-app-secret"
VERIFY_TOKEN = "verify-me-7f3a"
OUTBOUND_TOKEN = "outbound-token-91c2"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
# Meta signs the raw bytes: UTF-8 text here, escaped \u sequences in other deliveries.
NON_ASCII = '{"entry":[{"changes":[{"value":{"text":"äöå مرحبا 👋"}}]}]}'.encode()
CAPTURE = {
    "phone_number_id": "900000000000001",
    "request": {"messaging_product": "whatsapp", "to": "447700900123", "type": "text",
                "text": {"body": "Your order shipped"}},
    "response": {"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT1"}]},
}  # fmt: skip


@dataclass
class Running:
    url: str
    spool: Spool
    receiver: Receiver

    def landed(self) -> list[Delivery]:
        self.spool.flush_active()
        deadline = time.monotonic() + 5
        while self.spool._fd is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        return [d for s in self.spool.closed_segments() for d in self.spool.read(s)]


def serve(receiver: Receiver) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(create_app(receiver)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def make_receiver(tmp_path: Path, **spool_options: int) -> Receiver:
    config = ReceiverConfig(
        app_secrets=(SECRET, OLD_SECRET),
        verify_token=VERIFY_TOKEN,
        capture_secrets=(OUTBOUND_TOKEN.encode(),),
    )
    spool = Spool(tmp_path / "spool", "rcv-test", segment_age=3600, **spool_options)
    spool.open()
    return Receiver(config, spool)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    receiver = make_receiver(tmp_path)
    for url in serve(receiver):
        yield Running(url, receiver.spool, receiver)
    receiver.spool.close()


def post(running: Running, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(running.url + "/webhook", content=body, headers=headers or {})


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-hub-signature-256": signature_header(secret, body),
    }


# --- GET handshake ------------------------------------------------------------------------------


def handshake(running: Running, **params: str) -> httpx.Response:
    return httpx.get(running.url + "/webhook", params={f"hub.{k}": v for k, v in params.items()})


def test_handshake_echoes_the_challenge(running: Running) -> None:
    reply = handshake(running, mode="subscribe", verify_token=VERIFY_TOKEN, challenge="1158201444")
    assert (reply.status_code, reply.text) == (200, "1158201444")
    assert reply.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"mode": "subscribe", "verify_token": "wrong", "challenge": "1"}, 403),
        ({"mode": "subscribe", "verify_token": VERIFY_TOKEN + "x", "challenge": "1"}, 403),
        ({"mode": "subscribe", "verify_token": "", "challenge": "1"}, 403),
        ({"mode": "unsubscribe", "verify_token": VERIFY_TOKEN, "challenge": "1"}, 403),
        ({"verify_token": VERIFY_TOKEN, "challenge": "1"}, 400),
        ({"mode": "subscribe", "challenge": "1"}, 400),
        ({"mode": "subscribe", "verify_token": VERIFY_TOKEN}, 400),
        ({"mode": "subscribe", "verify_token": VERIFY_TOKEN, "challenge": "<script>"}, 400),
        ({}, 400),
    ],
    ids=["wrong_token", "token_suffix", "empty_token", "wrong_mode", "no_mode", "no_token",
         "no_challenge", "reflected_markup", "no_params"],
)  # fmt: skip
def test_handshake_refusals(running: Running, params: dict[str, str], status: int) -> None:
    reply = handshake(running, **params)
    assert reply.status_code == status
    assert "1" not in reply.text or (status == 400 and "hub.challenge" in reply.text)


def test_handshake_refused_when_no_verify_token_is_configured(tmp_path: Path) -> None:
    receiver = make_receiver(tmp_path)
    receiver.config = ReceiverConfig(app_secrets=(SECRET,))
    for url in serve(receiver):
        reply = httpx.get(url + "/webhook", params={"hub.mode": "subscribe",
                          "hub.verify_token": "", "hub.challenge": "5"})  # fmt: skip
        assert reply.status_code == 403
    receiver.spool.close()


# --- POST signatures ----------------------------------------------------------------------------


def test_signed_delivery_is_landed_exactly_with_its_signature(running: Running) -> None:
    headers = signed(BODY) | {"user-agent": "facebookexternalua", "authorization": "Bearer leak"}
    reply = post(running, BODY, headers)
    assert reply.status_code == 200
    (delivery,) = running.landed()
    assert delivery.body == BODY and delivery.source == "webhook"
    assert delivery.headers == {
        "content-type": "application/json",
        "user-agent": "facebookexternalua",
        "x-hub-signature-256": headers["x-hub-signature-256"],
    }


def test_non_ascii_body_is_verified_on_the_raw_bytes(running: Running) -> None:
    assert post(running, NON_ASCII, signed(NON_ASCII)).status_code == 200
    # The same text re-serialised with \u escapes is different bytes: its signature does not fit.
    escaped = json.dumps(json.loads(NON_ASCII), separators=(",", ":")).encode()
    assert escaped != NON_ASCII
    assert post(running, escaped, signed(NON_ASCII)).status_code == 403
    assert [d.body for d in running.landed()] == [NON_ASCII]


def test_rotated_secrets_are_all_accepted(running: Running) -> None:
    assert post(running, BODY, signed(BODY, OLD_SECRET)).status_code == 200
    assert post(running, BODY, signed(BODY, SECRET)).status_code == 200
    assert post(running, BODY, signed(BODY, b"retired-secret")).status_code == 403


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 403),
        ("sha256=", 403),
        ("sha1=" + "0" * 40, 403),
        ("sha256=" + "0" * 64, 403),
        ("sha256=" + "z" * 64, 403),
        ("sha256=" + "ab" * 31, 403),
        ("SHA256=" + signature_header(SECRET, BODY)[7:], 403),
        (signature_header(SECRET, BODY)[:-1], 403),
        (signature_header(SECRET, BODY + b" "), 403),
    ],
    ids=["missing", "empty", "no_digest", "sha1", "zeros", "not_hex", "short", "upper_prefix",
         "truncated", "other_body"],
)  # fmt: skip
def test_bad_signatures_are_refused_and_never_stored(
    running: Running, header: str | None, status: int
) -> None:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["x-hub-signature-256"] = header
    assert post(running, BODY, headers).status_code == status
    assert running.landed() == []


def test_legacy_sha1_header_alone_is_not_enough(running: Running) -> None:
    reply = post(running, BODY, {"x-hub-signature": "sha1=" + "0" * 40})
    assert reply.status_code == 401
    assert running.landed() == []


def test_signed_body_that_is_not_json_is_landed(running: Running) -> None:
    for body in (b"not json at all", b"\xff\xfe\x00binary", b"", b'{"truncated":'):
        assert post(running, body, signed(body)).status_code == 200
    assert sorted(d.body for d in running.landed()) == sorted(
        [b"not json at all", b"\xff\xfe\x00binary", b"", b'{"truncated":']
    )


# --- size limit ---------------------------------------------------------------------------------


def test_body_at_the_limit_is_accepted(running: Running) -> None:
    body = b'{"pad":"' + b"a" * (3 * 1024 * 1024 - 10) + b'"}'
    assert len(body) == 3 * 1024 * 1024
    assert post(running, body, signed(body)).status_code == 200


def test_over_3_mb_declared_is_refused(running: Running) -> None:
    body = b"a" * (3 * 1024 * 1024 + 1)
    assert post(running, body, signed(body)).status_code == 413
    assert running.landed() == []


def test_over_3_mb_streamed_without_length_is_cut_off(running: Running) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # up to 8 MB, but the receiver stops reading at 3 MB
            sent += 1
            yield b"a" * 131_072

    headers = {"x-hub-signature-256": "sha256=" + "0" * 64}
    try:
        reply = httpx.post(running.url + "/webhook", content=chunks(), headers=headers)
        assert reply.status_code == 413
    except httpx.TransportError:
        pass  # the server may close the connection before the client finishes sending
    assert running.landed() == []


@pytest.mark.parametrize("length", ["-1", "abc", "1e9"])
def test_bad_content_length_is_refused(running: Running, length: str) -> None:
    with socket.create_connection(("127.0.0.1", int(running.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nx-hub-signature-256: sha256=00\r\n"
            b"Content-Length: " + length.encode() + b"\r\n\r\n"
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"413")
    assert running.landed() == []


# --- endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/docs", "/redoc", "/openapi.json", "/debug", "/heapdump", "/management/heapdump",
     "/actuator", "/env", "/webhook/", "/webhook/x", "/metrics/", "/spool", "/admin",
     "/.git/config", "/static/x", "/WEBHOOK"],
)  # fmt: skip
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nothing_else_answers(running: Running, path: str, method: str) -> None:
    reply = httpx.request(method, running.url + path, follow_redirects=False)
    assert reply.status_code == 404
    assert "server" not in reply.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/webhook"), ("DELETE", "/webhook"), ("PATCH", "/webhook"), ("GET", "/outbound"),
     ("POST", "/healthz"), ("POST", "/metrics"), ("DELETE", "/readyz"), ("OPTIONS", "/webhook"),
     ("TRACE", "/webhook")],
)  # fmt: skip
def test_wrong_methods_are_refused(running: Running, method: str, path: str) -> None:
    assert httpx.request(method, running.url + path).status_code == 405


def test_health_readiness_and_metrics(running: Running) -> None:
    assert httpx.get(running.url + "/healthz").status_code == 200
    head = httpx.head(running.url + "/healthz")
    assert (head.status_code, head.content) == (200, b"")
    assert httpx.get(running.url + "/readyz").status_code == 200
    post(running, BODY, signed(BODY))
    post(running, BODY, {"x-hub-signature-256": "sha256=" + "1" * 64})
    handshake(running, mode="subscribe", verify_token=VERIFY_TOKEN, challenge="42")
    text = httpx.get(running.url + "/metrics").text
    assert 'coexarchive_receiver_responses_total{endpoint="webhook",status="200"} 2' in text
    assert 'coexarchive_receiver_rejections_total{reason="signature_invalid"} 1' in text
    assert "coexarchive_receiver_durable_seconds_count 1" in text
    assert "coexarchive_spool_bytes" in text or "# TYPE" in text
    for secret in (SECRET.decode(), OLD_SECRET.decode(), VERIFY_TOKEN, OUTBOUND_TOKEN, "object"):
        assert secret not in text


def test_logs_carry_no_secret_and_no_content(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post(running, NON_ASCII, signed(NON_ASCII))
    post(running, NON_ASCII, signed(NON_ASCII, b"nope"))
    handshake(running, mode="subscribe", verify_token="guess", challenge="1")
    handshake(running, mode="subscribe", verify_token=VERIFY_TOKEN, challenge="1")
    capture_body = json.dumps(CAPTURE).encode()
    httpx.post(
        running.url + "/outbound", content=capture_body, headers=signed(capture_body, b"guess")
    )
    ours = [r for r in caplog.records if r.name.startswith(("coexarchive", "uvicorn"))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "refused" in logged
    for leak in ("äöå", "مرحبا", "guess", VERIFY_TOKEN, SECRET.decode(), "Your order"):
        assert leak not in logged


# --- backpressure -------------------------------------------------------------------------------


def test_full_spool_answers_503_so_meta_retries(tmp_path: Path) -> None:
    receiver = make_receiver(tmp_path, max_bytes=3_500)
    body = b'{"pad":"' + b"x" * 1_500 + b'"}'
    for url in serve(receiver):
        statuses = [httpx.post(url + "/webhook", content=body, headers=signed(body)).status_code
                    for _ in range(4)]  # fmt: skip
        assert statuses[:2] == [200, 200]
        assert statuses[2:] == [503, 503]
        assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.get(url + "/healthz").status_code == 200
    receiver.spool.close()


def test_closed_spool_answers_503(tmp_path: Path) -> None:
    receiver = make_receiver(tmp_path)
    receiver.spool.close()
    for url in serve(receiver):
        assert httpx.post(url + "/webhook", content=BODY, headers=signed(BODY)).status_code == 503
        assert httpx.get(url + "/readyz").status_code == 503


def test_concurrent_deliveries_share_fsyncs(running: Running) -> None:
    bodies = [b'{"n":%d}' % n for n in range(200)]

    async def send_all() -> list[int]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=running.url, limits=limits) as client:
            replies = await asyncio.gather(
                *(client.post("/webhook", content=b, headers=signed(b)) for b in bodies)
            )
        return [reply.status_code for reply in replies]

    assert asyncio.run(send_all()) == [200] * 200
    assert running.spool.stats.batches < 200
    assert sorted(d.body for d in running.landed()) == sorted(bodies)


# --- outbound capture ---------------------------------------------------------------------------


def test_outbound_capture_is_landed_as_outbound(running: Running) -> None:
    capture = OutboundCapture(running.url + "/outbound", OUTBOUND_TOKEN)
    capture.record(CAPTURE["phone_number_id"], CAPTURE["request"], CAPTURE["response"],  # type: ignore[arg-type]
                   sent_at=1_767_571_200_123)  # fmt: skip
    (delivery,) = running.landed()
    assert delivery.source == "outbound"
    assert json.loads(delivery.body) == CAPTURE | {"sent_at": 1_767_571_200_123}
    assert delivery.headers["user-agent"] == "coexarchive-capture/1"
    # The capture keeps its own proof of origin, checkable again at ingest.
    assert delivery.headers["x-hub-signature-256"] == signature_header(
        OUTBOUND_TOKEN.encode(), delivery.body
    )


CAPTURE_BODY = json.dumps(CAPTURE).encode()


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("", 403), ("Bearer " + OUTBOUND_TOKEN, 403), ("sha256=" + "0" * 64, 403),
     (signature_header(b"guess", CAPTURE_BODY), 403),
     (signature_header(OUTBOUND_TOKEN.encode(), CAPTURE_BODY + b" "), 403),
     (signature_header(OUTBOUND_TOKEN.encode()[:-1], CAPTURE_BODY), 403)],
    ids=["missing", "empty", "bearer_token", "zeros", "wrong_secret", "other_body", "short_secret"],
)  # fmt: skip
def test_outbound_refuses_bad_signatures(running: Running, header: str | None, status: int) -> None:
    headers = {} if header is None else {"x-hub-signature-256": header}
    reply = httpx.post(running.url + "/outbound", content=CAPTURE_BODY, headers=headers)
    assert reply.status_code == status
    assert running.landed() == []


def test_refusals_are_counted_under_their_endpoints_reasons(running: Running) -> None:
    httpx.post(running.url + "/outbound", content=CAPTURE_BODY)
    httpx.post(running.url + "/outbound", content=CAPTURE_BODY, headers=signed(CAPTURE_BODY))
    post(running, BODY, {})
    text = httpx.get(running.url + "/metrics").text
    for reason in ("capture_signature_missing", "capture_signature_invalid", "signature_missing"):
        assert f'coexarchive_receiver_rejections_total{{reason="{reason}"}} 1' in text
    assert 'reason="signature_invalid"' not in text
    assert running.landed() == []


def test_outbound_refuses_a_body_signed_with_the_app_secret(running: Running) -> None:
    # A Meta-signed webhook body is not a capture: the two secrets are separate.
    reply = httpx.post(
        running.url + "/outbound", content=CAPTURE_BODY, headers=signed(CAPTURE_BODY)
    )
    assert reply.status_code == 403
    assert running.landed() == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"request":{},"response":{}}',
     json.dumps(CAPTURE | {"response": {"error": {"code": 131030}}}).encode(),
     json.dumps(CAPTURE | {"request": "text"}).encode(),
     json.dumps(CAPTURE | {"sent_at": "yesterday"}).encode()],
    ids=["not_json", "array", "no_phone", "no_wamid", "request_not_object", "bad_sent_at"],
)  # fmt: skip
def test_outbound_malformed_is_refused_with_422(running: Running, body: bytes) -> None:
    headers = signed(body, OUTBOUND_TOKEN.encode())
    reply = httpx.post(running.url + "/outbound", content=body, headers=headers)
    assert reply.status_code == 422
    assert running.landed() == []


def test_outbound_disabled_without_a_token(tmp_path: Path) -> None:
    receiver = make_receiver(tmp_path)
    receiver.config = ReceiverConfig(app_secrets=(SECRET,))
    for url in serve(receiver):
        headers = signed(CAPTURE_BODY, OUTBOUND_TOKEN.encode())
        reply = httpx.post(url + "/outbound", content=CAPTURE_BODY, headers=headers)
        assert reply.status_code == 404
    receiver.spool.close()


def test_capture_helper_raises_when_not_confirmed(running: Running) -> None:
    with pytest.raises(CaptureError, match="HTTP 403"):
        OutboundCapture(running.url + "/outbound", "wrong", attempts=1).record(
            "900000000000001",
            CAPTURE["request"],
            CAPTURE["response"],  # type: ignore[arg-type]
        )
    unreachable = OutboundCapture("http://127.0.0.1:9/outbound", OUTBOUND_TOKEN, attempts=1)
    with pytest.raises(CaptureError, match="not confirmed"):
        unreachable.record("900000000000001", {}, {"messages": [{"id": "wamid.X"}]})
    assert "wrong" not in repr(OutboundCapture(running.url, "wrong"))


@pytest.mark.parametrize("token", ["", "  "])
def test_capture_helper_refuses_an_empty_secret_at_construction(token: str) -> None:
    with pytest.raises(ValueError, match="COEXARCHIVE_OUTBOUND_TOKEN"):
        OutboundCapture("http://127.0.0.1:9/outbound", token)
