"""A local Graph API media server for tests, the demo and the media benchmark.

It plays the two calls the media fetcher makes to Meta:

- ``GET /{version}/{media-id}`` with ``Authorization: Bearer <token>`` answers ``url``,
  ``mime_type``, ``sha256`` (hex), ``file_size`` and ``id``; a media id is known for 7 days after
  it was created (then 404, Graph error code 100), the token is required (401, code 190);
- ``GET <url>`` with the same bearer token answers the bytes; the URL expires 5 minutes after it
  was issued (then 404).

Faults can be queued per media id and per call (``resolve`` or ``download``): ``429`` with
``Retry-After``, a Graph rate-limit error code, ``5xx``, a truncated body, bytes that do not match
the advertised hash, or a wrong token answer. The server's clock is a parameter, so a test can
move time past the URL's 5 minutes or the id's 7 days.

Content is deterministic: :func:`media_content` derives an attachment's bytes from its media id
and MIME type, so the simulation can put their real SHA-256 in its webhooks and the server can
serve them without keeping them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import struct
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from coexarchive._internal.clock import DAY_MS, now_ms
from coexarchive.errors import ConfigError
from coexarchive.raw import decode_landing

__all__ = [
    "DEMO_GRAPH_TOKEN",
    "GRAPH_VERSION",
    "Fault",
    "GraphMediaServer",
    "MediaItem",
    "library_from_landing",
    "media_content",
    "serve_landing",
    "serve_until_stopped",
    "simulation_end_ms",
]

DEMO_GRAPH_TOKEN = "coexarchive-demo-graph-token"  # noqa: S105 (a published test value)
GRAPH_VERSION = "v21.0"
URL_LIFETIME_MS = 5 * 60 * 1000
ID_LIFETIME_MS = 7 * DAY_MS
_BLOCK = 64 * 1024
_SIZES = {"image": (20_000, 60_000), "audio": (8_000, 40_000), "video": (100_000, 400_000)}


def _size_for(media_id: str, mime_type: str) -> int:
    low, high = _SIZES.get(mime_type.split("/", 1)[0], (4_000, 80_000))
    if "webp" in mime_type:
        low, high = 2_000, 30_000
    seed = int.from_bytes(hashlib.sha256(media_id.encode()).digest()[:8], "big")
    return low + seed % (high - low)


def _chunks(media_id: str, size: int) -> Iterator[bytes]:
    """Deterministic bytes: a 64 KiB block seeded by the id, numbered per block."""
    seed = int.from_bytes(hashlib.sha256(b"media\x1f" + media_id.encode()).digest()[:8], "big")
    base = random.Random(seed).randbytes(_BLOCK)  # noqa: S311 (test content, not secrets)
    sent, number = 0, 0
    while sent < size:
        block = number.to_bytes(8, "big") + base[8:]
        piece = block[: size - sent]
        sent += len(piece)
        number += 1
        yield piece


def media_content(media_id: str, mime_type: str, size: int | None = None) -> bytes:
    """The bytes the local server serves for ``media_id`` (small files only: held in memory).

    An image of no given size is a real picture (a PNG, whatever MIME type Meta announced, as
    browsers go by the bytes), so that transcripts show something; other content is noise.
    """
    if size is None and mime_type.startswith("image/"):
        return _picture(media_id, _size_for(media_id, mime_type))
    return b"".join(_chunks(media_id, size if size is not None else _size_for(media_id, mime_type)))


def _picture(media_id: str, size: int) -> bytes:
    """A deterministic PNG of roughly ``size`` bytes: a colour gradient with some grain."""
    seed = int.from_bytes(hashlib.sha256(b"picture\x1f" + media_id.encode()).digest()[:8], "big")
    rng = random.Random(seed)  # noqa: S311 (test content, not secrets)
    side = max(16, int((size / 3) ** 0.5))
    tint = [rng.randrange(256) for _ in range(3)]
    rows = []
    for y in range(side):
        grain = rng.randbytes(side)
        row = bytearray(b"\x00")
        for x in range(side):
            g = grain[x] & 0x3F
            row += bytes(
                ((x * 255 // side + tint[0] + g) & 0xFF, (y * 255 // side + tint[1] + g) & 0xFF,
                 (tint[2] + g) & 0xFF)
            )  # fmt: skip
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


@dataclass
class MediaItem:
    """One media id the server knows: when it was created and what it serves."""

    media_id: str
    mime_type: str
    created_ms: int
    size: int
    sha256: str = ""  # hex; computed on registration
    content_id: str = ""  # whose bytes it serves (another id's: the same file sent twice)

    picture: bytes | None = None  # a real image's bytes (see ``media_content``)

    def chunks(self) -> Iterator[bytes]:
        if self.picture is not None:
            return (self.picture[i : i + _BLOCK] for i in range(0, len(self.picture), _BLOCK))
        return _chunks(self.content_id or self.media_id, self.size)


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour: ``kind`` is ``429``, ``rate_code``, ``5xx``, ``truncated``,
    ``bad_hash``, ``short`` (fewer bytes than ``file_size``, complete body) or ``forbidden``."""

    kind: str
    call: str = "download"  # "resolve" or "download"
    retry_after: int = 1
    status: int = 503


@dataclass
class _State:
    items: dict[str, MediaItem] = field(default_factory=dict)
    faults: dict[tuple[str, str], deque[Fault]] = field(default_factory=dict)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GraphMediaServer:
    """The local server; ``start()`` serves on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        *,
        token: str = DEMO_GRAPH_TOKEN,
        version: str = GRAPH_VERSION,
        clock: Callable[[], int] = now_ms,
        port: int = 0,
    ) -> None:
        self.token = token
        self.version = version
        self.clock = clock
        self._state = _State()
        self._url_key = random.Random().randbytes(32)  # noqa: S311 (signs test URLs)
        try:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        except OSError as exc:
            raise ConfigError(f"cannot serve media on 127.0.0.1:{port}: {exc.strerror}") from None
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GraphMediaServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="graph-media", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GraphMediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it serves ---------------------------------------------------------------------

    def add(
        self,
        media_id: str,
        mime_type: str,
        *,
        created_ms: int,
        size: int | None = None,
        same_bytes_as: str | None = None,
    ) -> MediaItem:
        """Register a media id (its content follows from the id, or from ``same_bytes_as``)."""
        content_id = same_bytes_as or media_id
        picture = None
        if size is None and mime_type.startswith("image/"):
            picture = media_content(content_id, mime_type)
            size = len(picture)
        elif size is None:
            size = _size_for(content_id, mime_type)
        item = MediaItem(
            media_id, mime_type, created_ms, size, content_id=content_id, picture=picture
        )
        digest = hashlib.sha256()
        for chunk in item.chunks():
            digest.update(chunk)
        item.sha256 = digest.hexdigest()
        with self._state.lock:
            self._state.items[media_id] = item
        return item

    def add_all(self, items: Iterable[tuple[str, str, int]]) -> int:
        count = 0
        for media_id, mime_type, created_ms in items:
            self.add(media_id, mime_type, created_ms=created_ms)
            count += 1
        return count

    def fail(self, media_id: str, *faults: Fault) -> None:
        """Queue faults for ``media_id``: each answers one call of its kind, in order."""
        with self._state.lock:
            for fault in faults:
                self._state.faults.setdefault((media_id, fault.call), deque()).append(fault)

    def calls(self, media_id: str, call: str = "download") -> int:
        """How many times ``call`` was answered for ``media_id`` (faults included)."""
        with self._state.lock:
            return self._state.calls[(media_id, call)]

    def environment(self) -> dict[str, str]:
        """The variables that point the media fetcher at this server."""
        return {
            "COEXARCHIVE_GRAPH_URL": self.base_url,
            "COEXARCHIVE_GRAPH_TOKEN": self.token,
            "COEXARCHIVE_GRAPH_VERSION": self.version,
        }

    # -- used by the handler ------------------------------------------------------------------

    def _next(self, media_id: str, call: str) -> tuple[MediaItem | None, Fault | None]:
        with self._state.lock:
            self._state.calls[(media_id, call)] += 1
            queue = self._state.faults.get((media_id, call))
            fault = queue.popleft() if queue else None
            return self._state.items.get(media_id), fault

    def _url_sig(self, media_id: str, expires: int) -> str:
        message = f"{media_id}\x1f{expires}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()[:32]


def _handler_for(server: GraphMediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small header writes must not wait for delayed ACKs

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests and the demo print their own lines

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {server.token}":
                self._error(401, 190, "Invalid OAuth access token.", "OAuthException")
                return
            parts = urlsplit(self.path)
            segments = [s for s in parts.path.split("/") if s]
            if len(segments) == 2 and segments[0] == "dl":
                self._download(segments[1], parse_qs(parts.query))
            elif len(segments) == 2 and segments[0] == server.version:
                self._resolve(segments[1])
            else:
                self._error(400, 2500, "Unknown path components", "OAuthException")

        def _resolve(self, media_id: str) -> None:
            item, fault = server._next(media_id, "resolve")
            if fault is not None and self._fault(fault, item):
                return
            now = server.clock()
            if item is None or now - item.created_ms >= ID_LIFETIME_MS:
                self._error(
                    404,
                    100,
                    "Unsupported get request. Object does not exist.",
                    "GraphMethodException",
                )
                return
            expires = now + URL_LIFETIME_MS
            signature = server._url_sig(media_id, expires)
            url = f"{server.base_url}/dl/{media_id}?exp={expires}&sig={signature}"
            self._json(
                200,
                {
                    "messaging_product": "whatsapp",
                    "url": url,
                    "mime_type": item.mime_type,
                    "sha256": item.sha256,
                    "file_size": item.size,
                    "id": media_id,
                },
            )

        def _download(self, media_id: str, query: dict[str, list[str]]) -> None:
            item, fault = server._next(media_id, "download")
            try:
                expires = int(query.get("exp", ["0"])[0])
            except ValueError:
                expires = 0
            good = hmac.compare_digest(
                query.get("sig", [""])[0], server._url_sig(media_id, expires)
            )
            if item is None or not good or server.clock() >= expires:
                self._error(404, 100, "URL expired or unknown", "GraphMethodException")
                return
            if fault is not None and self._fault(fault, item):
                return
            self.send_response(200)
            self.send_header("Content-Type", item.mime_type)
            self.send_header("Content-Length", str(item.size))
            self.end_headers()
            for chunk in item.chunks():
                self.wfile.write(chunk)

        def _fault(self, fault: Fault, item: MediaItem | None) -> bool:
            """Answer ``fault``; False when it only changes the bytes (handled here too)."""
            if fault.kind == "429":
                self.send_response(429)
                self.send_header("Retry-After", str(fault.retry_after))
                body = _graph_error(130429, "Rate limit hit", "OAuthException")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif fault.kind == "rate_code":
                self._error(400, 80007, "Rate limit issues", "OAuthException")
            elif fault.kind == "5xx":
                self._error(fault.status, 1, "An unknown error occurred", "OAuthException")
            elif fault.kind == "forbidden":
                self._error(403, 10, "Permission denied", "OAuthException")
            elif fault.kind in ("truncated", "bad_hash", "short") and item is not None:
                self._bad_body(fault.kind, item)
            else:
                return False
            return True

        def _bad_body(self, kind: str, item: MediaItem) -> None:
            data = b"".join(item.chunks())
            self.send_response(200)
            self.send_header("Content-Type", item.mime_type)
            if kind == "short":
                data = data[: len(data) // 2]
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "truncated":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if kind == "bad_hash":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.wfile.write(data)

        def _error(self, status: int, code: int, message: str, kind: str) -> None:
            self._json(status, None, raw=_graph_error(code, message, kind))

        def _json(self, status: int, tree: Any, *, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(tree).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _graph_error(code: int, message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


_MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


def library_from_landing(objects: Iterable[tuple[str, bytes]]) -> list[tuple[str, str, int]]:
    """(media id, MIME type, created ms) of every attachment the landed webhooks reference.

    An id is taken as created when the webhook that carries it was delivered: a history
    follow-up's media is uploaded for it, however old the message it completes.
    """
    found: dict[str, tuple[str, str, int]] = {}
    for key, data in objects:
        for line in decode_landing(data, key=key):
            if line.delivery is None:
                continue
            try:
                tree = json.loads(line.delivery.body)
            except ValueError:
                continue
            for item in _items(tree):
                media = item.get(item.get("type", ""), None)
                if item.get("type") in _MEDIA_TYPES and isinstance(media, dict):
                    media_id, mime = media.get("id"), media.get("mime_type")
                    if isinstance(media_id, str) and isinstance(mime, str):
                        found.setdefault(media_id, (media_id, mime, line.delivery.received_at))
    return list(found.values())


def _items(tree: Any) -> Iterator[dict[str, Any]]:
    """Every message-like object of a webhook body (live, echoes, history and follow-ups).

    The simulation sends malformed bodies too (ingest quarantines them): whatever is not the
    documented shape is skipped here.
    """
    if not isinstance(tree, dict):
        return
    for entry in _dicts(tree.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            for name in ("messages", "message_echoes"):
                yield from _dicts(value.get(name))
            for history in _dicts(value.get("history")):
                for thread in _dicts(history.get("threads")):
                    yield from _dicts(thread.get("messages"))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def simulation_end_ms(start_ms: int, days: int) -> int:
    """The moment a simulation's traffic ends plus an hour: "now" for its media fetch."""
    return start_ms + days * DAY_MS + 3_600_000


def serve_landing(
    objects: Iterable[tuple[str, bytes]], *, clock: Callable[[], int], port: int = 0
) -> GraphMediaServer:
    """A started server holding every attachment the landed webhooks reference."""
    server = GraphMediaServer(clock=clock, port=port).start()
    server.add_all(library_from_landing(objects))
    return server


def serve_until_stopped(objects: list[tuple[str, bytes]], port: int) -> None:
    """Serve the simulated attachments as the Graph API would, until Ctrl-C or SIGTERM.

    The server's clock stands an hour after the last delivery, so ids are as fresh as at the
    end of the simulated days (older than 7 days then: 404, as Meta answers).
    """
    import threading

    from coexarchive._internal.signals import stop_on_signals

    library = library_from_landing(objects)
    now = max((created for _, _, created in library), default=0) + 3_600_000
    server = GraphMediaServer(port=port, clock=lambda: now).start()
    server.add_all(library)
    print(
        f"serving {len(library)} attachment(s) as the Graph API on {server.base_url}; fetch them:"
    )
    for name, value in server.environment().items():
        print(f"  export {name}={value}")
    print("  export COEXARCHIVE_MEDIA_SECRETS=<any secret; give ingest the same>")
    print("  coexarchive ingest && coexarchive media fetch && coexarchive ingest")
    stop = threading.Event()
    try:
        with stop_on_signals(stop, what="media server stops"):
            stop.wait()
    finally:
        server.stop()
