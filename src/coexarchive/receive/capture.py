"""Outbound capture for sending systems: record every Cloud API send with the receiver.

The content of messages the business sends through the Cloud API never comes back by webhook,
only their statuses do. Call :meth:`OutboundCapture.record` right after each successful send::

    capture = OutboundCapture("https://archive.internal/outbound", capture_secret)
    response = graph.post(f"/{phone_number_id}/messages", json=request)
    capture.record(phone_number_id, request, response.json())

Each body is signed like a webhook: ``X-Hub-Signature-256`` is the HMAC-SHA256 of the exact bytes
keyed with the capture secret (the receiver's ``COEXARCHIVE_OUTBOUND_TOKEN``), so the landed
capture carries its own proof of origin (``schemas/RAW_LANDING.md`` §4). It uses only the standard
library, so it drops into any sending system.

Media: a send with a media id (``{"type": "image", "image": {"id": ...}}``, media the sending system
uploaded) is archived like an inbound attachment: ``coexarchive media fetch`` resolves the id with
the Graph API and stores the bytes (Meta keeps uploaded media 30 days). A send by ``link``
(``{"type": "image", "image": {"link": "https://..."}}``) is fetched by the same job from the
link itself, over http(s) only and without any credential, and sealed with the hash of the bytes
it got; the link must stay downloadable until the job's next run, or the send is sealed as a
media gap naming why (``not_found``, ``too_large``, ``forbidden``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from coexarchive._internal.clock import now_ms
from coexarchive.errors import CaptureError, InvalidArgumentError
from coexarchive.raw import SIGNATURE_HEADER, signature_header

__all__ = ["CaptureError", "OutboundCapture", "capture_body"]

USER_AGENT = "coexarchive-capture/1"


def capture_body(
    phone_number_id: str,
    request: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    sent_at: int | None = None,
) -> bytes:
    """The landed body: the exact send request and Graph response, plus where and when."""
    capture: dict[str, Any] = {
        "phone_number_id": phone_number_id,
        "request": request,
        "response": response,
    }
    if sent_at is not None:
        capture["sent_at"] = sent_at
    return json.dumps(capture, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class OutboundCapture:
    """Posts signed sends to the receiver's ``/outbound``, retrying a few times."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgumentError("the capture URL must be http:// or https://")
        if not token.strip():
            # The receiver refuses empty secrets, so every capture would be lost at the door.
            raise InvalidArgumentError(
                "the capture secret is empty: use the receiver's COEXARCHIVE_OUTBOUND_TOKEN"
            )
        self.url = url
        self._secret = token.encode("utf-8")
        self.timeout = timeout
        self.attempts = attempts
        self.clock_ms = clock_ms

    def __repr__(self) -> str:
        return f"OutboundCapture({self.url!r}, token=<hidden>)"

    def record(
        self,
        phone_number_id: str,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        sent_at: int | None = None,
    ) -> None:
        """Land one send; returns once the receiver made it durable, else CaptureError."""
        body = capture_body(
            phone_number_id,
            request,
            response,
            sent_at=self.clock_ms() if sent_at is None else sent_at,
        )
        last = "no attempt made"
        for attempt in range(self.attempts):
            status, last = self._post(body)
            if status == 200:
                return
            if status is not None and 400 <= status < 500:
                break  # the receiver refused this body; retrying cannot help
            time.sleep(min(2.0, 0.2 * 2**attempt))
        raise CaptureError(f"outbound capture not confirmed by {self.url}: {last}")

    def _post(self, body: bytes) -> tuple[int | None, str]:
        http_request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                SIGNATURE_HEADER: signature_header(self._secret, body),
                "user-agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as reply:  # noqa: S310
                return reply.status, f"HTTP {reply.status}"
        except urllib.error.HTTPError as error:
            return error.code, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return None, type(error).__name__
