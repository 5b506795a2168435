"""The receiver's HTTP surface: /webhook, /outbound, /healthz, /readyz and /metrics.

Nothing else answers (no docs, no debug or dump endpoints). A POST is answered 200 only once its
exact bytes and kept headers are fsync'd to the spool; a signature that does not check out is
refused before anything is stored, and a correctly signed body is landed whatever it contains.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coexarchive._internal.clock import now_ms
from coexarchive.errors import InvalidArgumentError
from coexarchive.raw import SIGNATURE_HEADER, secrets_from, verify_signature
from coexarchive.receive._metrics import Metrics
from coexarchive.receive.spool import Spool, SpoolError, SpoolFull

__all__ = ["MAX_BODY_BYTES", "Receiver", "ReceiverConfig", "create_app"]

log = logging.getLogger("coexarchive.receive")

# Meta: "Webhook payloads can be up to 3 MB."
MAX_BODY_BYTES = 3 * 1024 * 1024
# Meta's challenge is a number; anything else is not echoed back.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")
_PLAIN = "text/plain; charset=utf-8"
_SECURITY_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


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


def create_app(receiver: Receiver) -> Starlette:
    """The ASGI application; handlers find the :class:`Receiver` on ``app.state``."""
    app = Starlette(
        routes=[
            Route("/webhook", webhook, methods=["GET", "POST"]),
            Route("/outbound", outbound, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
    # "/webhook/" is not an endpoint: answer 404, not a redirect to one.
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    return app


# --- handlers ---------------------------------------------------------------------------------


async def webhook(request: Request) -> Response:
    receiver: Receiver = request.app.state.receiver
    if request.method == "GET":
        response = handshake(receiver.config, request.query_params)
    else:
        response = await _webhook_post(receiver, request)
    receiver.metrics.responses["webhook", response.status_code] += 1
    return response


def handshake(config: ReceiverConfig, params: Mapping[str, str]) -> Response:
    """Meta's GET verification: echo ``hub.challenge`` when the verify token matches."""
    mode = params.get("hub.mode")
    token, challenge = params.get("hub.verify_token"), params.get("hub.challenge")
    if mode is None or token is None or challenge is None:
        return _plain(400, "missing hub.mode, hub.verify_token or hub.challenge")
    if config.verify_token is None or not _same_secret(token, config.verify_token):
        log.warning("webhook handshake refused: wrong verify token")
        return _plain(403, "verification refused")
    if mode != "subscribe":
        return _plain(403, "verification refused")
    if not _CHALLENGE.fullmatch(challenge):
        return _plain(400, "unexpected hub.challenge")
    return _plain(200, challenge)


async def _webhook_post(receiver: Receiver, request: Request) -> Response:
    started = time.perf_counter()
    received_at = receiver.config.clock_ms()
    # Step 1: the HMAC is over the exact bytes received, under any current app secret.
    body = await _signed_body(receiver, request, receiver.config.app_secrets, "")
    if isinstance(body, Response):
        return body
    # Step 2: durable before answering; what the body contains is ingest's business.
    response = await _land(receiver, "webhook", request, body, received_at)
    if response.status_code == 200:
        receiver.metrics.latency.observe(time.perf_counter() - started)
    return response


async def outbound(request: Request) -> Response:
    """A business system's Cloud API send, signed like a webhook with a capture secret."""
    receiver: Receiver = request.app.state.receiver
    response = await _outbound(receiver, request)
    receiver.metrics.responses["outbound", response.status_code] += 1
    return response


async def _outbound(receiver: Receiver, request: Request) -> Response:
    received_at = receiver.config.clock_ms()
    secrets = receiver.config.capture_secrets
    if not secrets:
        return _plain(404, "Not Found")
    body = await _signed_body(receiver, request, secrets, "capture_")
    if isinstance(body, Response):
        return body
    problem = outbound_problem(body)
    if problem is not None:
        # Our own sender can fix its request; Meta is not involved, so a 4xx is safe here.
        return _reject(receiver, 422, "outbound_malformed", problem)
    return await _land(receiver, "outbound", request, body, received_at)


async def _signed_body(
    receiver: Receiver, request: Request, secrets: Sequence[bytes], reason_prefix: str
) -> bytes | Response:
    """The request's exact bytes if their signature verifies under one of ``secrets``.

    Otherwise the rejection to answer with, counted under ``reason_prefix`` and the reason.
    """
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is None:
        return _reject(receiver, 401, reason_prefix + "signature_missing")
    body = await _read_body(request, receiver.config.max_body_bytes)
    if isinstance(body, Response):
        receiver.metrics.rejections[_reason(body)] += 1
        return body
    if not verify_signature(body, signature, secrets):
        return _reject(receiver, 403, reason_prefix + "signature_invalid")
    return body


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


async def healthz(request: Request) -> Response:
    return _plain(200, "ok")


async def readyz(request: Request) -> Response:
    receiver: Receiver = request.app.state.receiver
    if receiver.spool.healthy:
        return _plain(200, "ready")
    return _plain(503, "spool full or failing")


async def metrics(request: Request) -> Response:
    receiver: Receiver = request.app.state.receiver
    return Response(
        receiver.metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
        headers=_SECURITY_HEADERS,
    )


# --- helpers ----------------------------------------------------------------------------------


async def _land(
    receiver: Receiver, source: str, request: Request, body: bytes, received_at: int
) -> Response:
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
    ]
    try:
        await receiver.spool.append(source, headers, body, received_at)
    except SpoolFull:
        return _reject(receiver, 503, "spool_full")
    except SpoolError:
        return _reject(receiver, 503, "spool_unavailable")
    return Response(b"", status_code=200)


async def _read_body(request: Request, limit: int) -> bytes | Response:
    """The body, read as it streams in and abandoned as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            return _plain(400, "bad content-length")
        if int(declared) > limit:
            return _plain(413, "payload too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _plain(413, "payload too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject(receiver: Receiver, status: int, reason: str, detail: str | None = None) -> Response:
    receiver.metrics.rejections[reason] += 1
    log.warning("request refused", extra={"status": status, "reason": reason})
    return _plain(status, detail or reason.replace("_", " "))


def _reason(response: Response) -> str:
    return "too_large" if response.status_code == 413 else "bad_request"


def _plain(status: int, text: str) -> Response:
    return Response(text, status_code=status, media_type=_PLAIN, headers=_SECURITY_HEADERS)


def _same_secret(given: str, expected: str) -> bool:
    # Hashing first makes the comparison constant-time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest(),
    )


def app_secrets_from(text: str) -> tuple[bytes, ...]:
    """Comma- or newline-separated secrets; blanks ignored (the same parser as ingest's)."""
    return secrets_from(text)
