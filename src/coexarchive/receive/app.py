"""The receiver's HTTP surface: /webhook, /outbound, /healthz, /readyz and /metrics.

Nothing else answers (no docs, no debug or dump endpoints). A POST is answered 200 only once its
exact bytes and kept headers are fsync'd to the spool; a signature that does not check out is
refused before anything is stored, and a correctly signed body is landed whatever it contains.

The application is a plain ASGI callable rather than a framework's: five fixed paths need no
router, and every object a framework builds per request (request, headers view, stream, response,
middleware frames) is event-loop time that each durable POST would otherwise pay.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from coexarchive._internal.clock import now_ms
from coexarchive.errors import InvalidArgumentError
from coexarchive.raw import KEPT_HEADERS, SIGNATURE_HEADER, secrets_from, verify_signature
from coexarchive.receive._metrics import Metrics
from coexarchive.receive.spool import Spool, SpoolError, SpoolFull

__all__ = ["MAX_BODY_BYTES", "Receiver", "ReceiverApp", "ReceiverConfig", "create_app"]

log = logging.getLogger("coexarchive.receive")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Meta: "Webhook payloads can be up to 3 MB."
MAX_BODY_BYTES = 3 * 1024 * 1024
# Meta's challenge is a number; anything else is not echoed back.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")
_PLAIN = b"text/plain; charset=utf-8"
_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
_SIGNATURE = SIGNATURE_HEADER.encode()
_KEPT = frozenset(name.encode() for name in KEPT_HEADERS)
# The durable 200 is the same every time: built once, sent as is.
_OK_START: Message = {"type": "http.response.start", "status": 200,
                      "headers": [(b"content-length", b"0")]}  # fmt: skip
_OK_BODY: Message = {"type": "http.response.body", "body": b""}
# Methods each path answers; HEAD goes with GET, as HTTP allows.
_METHODS = {
    "/webhook": frozenset({"GET", "HEAD", "POST"}),
    "/outbound": frozenset({"POST"}),
    "/healthz": frozenset({"GET", "HEAD"}),
    "/readyz": frozenset({"GET", "HEAD"}),
    "/metrics": frozenset({"GET", "HEAD"}),
}


@dataclass(frozen=True)
class ReceiverConfig:
    """Secrets and limits; secrets come from the environment or files, never arguments."""

    app_secrets: tuple[bytes, ...]
    verify_token: str | None = None
    # Keys of the HMAC that sending systems put on /outbound captures (RAW_LANDING.md §4).
    capture_secrets: tuple[bytes, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    durable_timeout: float = 10.0
    clock_ms: Callable[[], int] = field(default=now_ms)

    def __post_init__(self) -> None:
        if not self.app_secrets or not all(self.app_secrets):
            raise InvalidArgumentError("at least one non-empty app secret is required")

    def __repr__(self) -> str:
        # A config printed in a traceback or a log must not leak secrets.
        return (
            f"ReceiverConfig(app_secrets=<{len(self.app_secrets)} hidden>, "
            f"capture_secrets=<{len(self.capture_secrets)} hidden>, ...)"
        )


@dataclass
class Receiver:
    """What the handlers need: the config, the spool, and the metrics."""

    config: ReceiverConfig
    spool: Spool
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(frozen=True)
class Reply:
    """A complete answer: status, content type and body (security headers are always added)."""

    status: int
    body: bytes = b""
    content_type: bytes | None = _PLAIN

    @classmethod
    def text(cls, status: int, text: str) -> Reply:
        return cls(status, text.encode())


_OK = Reply(200, content_type=None)


@dataclass(frozen=True)
class _Head:
    """What a POST handler reads from the request line and headers, in one pass."""

    signature: str | None
    content_length: bytes | None
    kept: dict[str, str]


class ReceiverApp:
    """The ASGI application: five fixed paths; anything else is 404, a wrong method 405."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return  # uvicorn runs with ws="none"; nothing else is served
        path, method = scope["path"], scope["method"]
        # Fast path: the only request that comes in thousands a second.
        if path == "/webhook" and method == "POST":
            reply = await self._guarded(self._webhook_post(scope, receive))
            self.receiver.metrics.responses["webhook", reply.status] += 1
        else:
            reply = await self._guarded(self._other(scope, receive, path, method))
        # For HEAD the server sends the headers and drops the body.
        await _send(send, reply)

    async def _guarded(self, handler: Awaitable[Reply]) -> Reply:
        try:
            return await handler
        except Exception as error:
            # The class only: an exception's message could carry request content.
            log.error("request failed", extra={"error": type(error).__name__})
            return Reply.text(500, "Internal Server Error")

    async def _other(self, scope: Scope, receive: Receive, path: str, method: str) -> Reply:
        allowed = _METHODS.get(path)
        if allowed is None:
            # "/webhook/" is not an endpoint either: 404, never a redirect to one.
            return Reply.text(404, "Not Found")
        if method not in allowed:
            return Reply.text(405, "Method Not Allowed")
        receiver = self.receiver
        if path == "/webhook":
            query = scope.get("query_string", b"").decode("latin-1")
            reply = handshake(receiver.config, dict(parse_qsl(query, keep_blank_values=True)))
            receiver.metrics.responses["webhook", reply.status] += 1
            return reply
        if path == "/outbound":
            reply = await self._outbound(scope, receive)
            receiver.metrics.responses["outbound", reply.status] += 1
            return reply
        if path == "/healthz":
            return Reply.text(200, "ok")
        if path == "/readyz":
            if receiver.spool.healthy:
                return Reply.text(200, "ready")
            return Reply.text(503, "spool full or failing")
        return Reply(200, receiver.metrics.render().encode(), _METRICS_TYPE)

    async def _webhook_post(self, scope: Scope, receive: Receive) -> Reply:
        receiver = self.receiver
        started = time.perf_counter()
        received_at = receiver.config.clock_ms()
        # Step 1: the HMAC is over the exact bytes received, under any current app secret.
        head = _read_head(scope)
        body = await self._signed_body(head, receive, receiver.config.app_secrets, "")
        if isinstance(body, Reply):
            return body
        # Step 2: durable before answering; what the body contains is ingest's business.
        reply = await self._land("webhook", head, body, received_at)
        if reply is _OK:
            receiver.metrics.latency.observe(time.perf_counter() - started)
        return reply

    async def _outbound(self, scope: Scope, receive: Receive) -> Reply:
        """A business system's Cloud API send, signed like a webhook with a capture secret."""
        receiver = self.receiver
        received_at = receiver.config.clock_ms()
        secrets = receiver.config.capture_secrets
        if not secrets:
            return Reply.text(404, "Not Found")
        head = _read_head(scope)
        body = await self._signed_body(head, receive, secrets, "capture_")
        if isinstance(body, Reply):
            return body
        problem = outbound_problem(body)
        if problem is not None:
            # Our own sender can fix its request; Meta is not involved, so a 4xx is safe here.
            return self._reject(422, "outbound_malformed", problem)
        return await self._land("outbound", head, body, received_at)

    async def _signed_body(
        self, head: _Head, receive: Receive, secrets: Sequence[bytes], reason_prefix: str
    ) -> bytes | Reply:
        """The request's exact bytes if their signature verifies under one of ``secrets``.

        Otherwise the rejection to answer with, counted under ``reason_prefix`` and the reason.
        """
        if head.signature is None:
            return self._reject(401, reason_prefix + "signature_missing")
        body = await _read_body(head, receive, self.receiver.config.max_body_bytes)
        if isinstance(body, Reply):
            reason = "too_large" if body.status == 413 else "bad_request"
            self.receiver.metrics.rejections[reason] += 1
            return body
        if not verify_signature(body, head.signature, secrets):
            return self._reject(403, reason_prefix + "signature_invalid")
        return body

    async def _land(self, source: str, head: _Head, body: bytes, received_at: int) -> Reply:
        try:
            await self.receiver.spool.append(source, head.kept, body, received_at)
        except SpoolFull:
            return self._reject(503, "spool_full")
        except SpoolError:
            return self._reject(503, "spool_unavailable")
        return _OK

    def _reject(self, status: int, reason: str, detail: str | None = None) -> Reply:
        self.receiver.metrics.rejections[reason] += 1
        log.warning("request refused", extra={"status": status, "reason": reason})
        return Reply.text(status, detail or reason.replace("_", " "))


def create_app(receiver: Receiver) -> ReceiverApp:
    """The ASGI application serving ``receiver``."""
    return ReceiverApp(receiver)


def handshake(config: ReceiverConfig, params: Mapping[str, str]) -> Reply:
    """Meta's GET verification: echo ``hub.challenge`` when the verify token matches."""
    mode = params.get("hub.mode")
    token, challenge = params.get("hub.verify_token"), params.get("hub.challenge")
    if mode is None or token is None or challenge is None:
        return Reply.text(400, "missing hub.mode, hub.verify_token or hub.challenge")
    if config.verify_token is None or not _same_secret(token, config.verify_token):
        log.warning("webhook handshake refused: wrong verify token")
        return Reply.text(403, "verification refused")
    if mode != "subscribe":
        return Reply.text(403, "verification refused")
    if not _CHALLENGE.fullmatch(challenge):
        return Reply.text(400, "unexpected hub.challenge")
    return Reply.text(200, challenge)


def outbound_problem(body: bytes) -> str | None:
    """Why a capture body is unusable, or None; names fields only, never their content."""
    try:
        capture = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if not isinstance(capture, dict):
        return "body is not a JSON object"
    phone_number_id = capture.get("phone_number_id")
    if not isinstance(phone_number_id, str) or not phone_number_id:
        return "phone_number_id must be a non-empty string"
    if not isinstance(capture.get("request"), dict):
        return "request must be the Graph API send body (an object)"
    response = capture.get("response")
    if not isinstance(response, dict):
        return "response must be the Graph API response (an object)"
    messages = response.get("messages")
    if not (
        isinstance(messages, list)
        and messages
        and isinstance(messages[0], dict)
        and isinstance(messages[0].get("id"), str)
    ):
        return "response.messages[0].id (the wamid) is missing"
    sent_at = capture.get("sent_at")
    if sent_at is not None and (type(sent_at) is not int or sent_at < 0):
        return "sent_at must be milliseconds since the epoch"
    return None


# --- helpers ----------------------------------------------------------------------------------


def _read_head(scope: Scope) -> _Head:
    """Signature, declared length and the kept headers (first value of each wins), in one pass."""
    signature: str | None = None
    content_length: bytes | None = None
    kept: dict[str, str] = {}
    # ASGI servers give header names lower-cased, as bytes.
    for name, value in scope["headers"]:
        if name in _KEPT:
            key = name.decode("latin-1")
            if key not in kept:
                kept[key] = value.decode("latin-1")
                if name == _SIGNATURE:
                    signature = kept[key]
        elif name == b"content-length" and content_length is None:
            content_length = value
    return _Head(signature, content_length, kept)


async def _read_body(head: _Head, receive: Receive, limit: int) -> bytes | Reply:
    """The body, read as it streams in and abandoned as soon as it passes ``limit`` bytes."""
    declared = head.content_length
    if declared is not None:
        if not declared.isdigit():
            return Reply.text(400, "bad content-length")
        if int(declared) > limit:
            return Reply.text(413, "payload too large")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and message["type"] == "http.request":
        # The usual case: a webhook arrives in one piece.
        if len(body) > limit:
            return Reply.text(413, "payload too large")
        return body
    chunks = [body]
    size = len(body)
    while True:
        if message["type"] == "http.disconnect":
            # Nothing is stored and nobody is left to answer: this reply is never sent.
            return Reply.text(400, "client disconnected")
        if size > limit:
            return Reply.text(413, "payload too large")
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)


async def _send(send: Send, reply: Reply) -> None:
    if reply is _OK:
        await send(_OK_START)
        await send(_OK_BODY)
        return
    headers = [(b"content-length", str(len(reply.body)).encode())]
    if reply.content_type is not None:
        headers.append((b"content-type", reply.content_type))
    headers += _SECURITY_HEADERS
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to start or stop here: the spool and shipper belong to the server's start().
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _same_secret(given: str, expected: str) -> bool:
    # Hashing first makes the comparison constant-time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest(),
    )


def app_secrets_from(text: str) -> tuple[bytes, ...]:
    """Comma- or newline-separated secrets; blanks ignored (the same parser as ingest's)."""
    return secrets_from(text)
