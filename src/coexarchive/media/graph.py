"""The Graph API media client: resolve a media id, then stream its bytes.

``GET /{version}/{media-id}`` (bearer token) answers a download URL valid for 5 minutes with the
MIME type, SHA-256 and size; ``GET <url>`` with the same token answers the bytes. Connections are
kept alive per thread (``http.client``), so a pool of threads downloads without reconnecting.

Failures become :class:`MediaFetchError` with a cause the fetcher acts on: Graph's rate limits
(HTTP 429, error codes 4, 17, 32, 613, 80007, 130429, 131048, 131056) and 5xx are retried; 404
(code 100) is an unknown or expired id; a token Graph refuses (401, code 190) stops the job.
The bearer token is sent only to the Graph host itself and to Meta's download hosts over HTTPS.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urljoin, urlsplit

from coexarchive._internal.clock import now_ms
from coexarchive.errors import ConfigError, MediaFetchError
from coexarchive.media.receipt import Cause

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v21.0"
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
# Hosts Meta serves media downloads from; the token goes to no other host.
DOWNLOAD_HOST_SUFFIXES = (".fbsbx.com", ".facebook.com", ".fbcdn.net", ".whatsapp.net")
MAX_RETRY_AFTER_S = 600.0
_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class GraphConfig:
    """Where the Graph API is and the system-user token that reads media."""

    base_url: str = DEFAULT_GRAPH_URL
    token: str = field(default="", repr=False)
    version: str = DEFAULT_GRAPH_VERSION
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"COEXARCHIVE_GRAPH_URL {self.base_url!r} is not an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError("COEXARCHIVE_GRAPH_URL must use https unless it is on loopback")
        if not self.token:
            raise ConfigError(
                "no Graph API token: set COEXARCHIVE_GRAPH_TOKEN to a system-user token that "
                "may read the number's media"
            )

    @property
    def on_loopback(self) -> bool:
        """Graph is the local test server (tests and the embedded default)."""
        return urlsplit(self.base_url).hostname in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class MediaInfo:
    """Graph's answer for one media id (``unverified_``: nothing checked it yet)."""

    url: str
    mime_type: str | None
    unverified_sha256: str | None
    file_size: int | None


class GraphClient:
    """Thread-safe: each thread keeps its own keep-alive connections."""

    def __init__(self, config: GraphConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, to close at the end
        self._opened_lock = threading.Lock()
        self._graph_host = urlsplit(config.base_url).hostname

    def resolve(self, media_id: str) -> MediaInfo:
        """The download URL and Meta's metadata of ``media_id``."""
        base = self.config.base_url.rstrip("/")
        url = f"{base}/{self.config.version}/{quote(media_id, safe='')}"
        status, headers, body = self._request(url, limit=_MAX_ERROR_BODY)
        if status != 200:
            raise _failure(status, headers, body, when="resolving the media id")
        try:
            tree = json.loads(body)
            found = tree["url"]
        except (ValueError, KeyError, TypeError):
            raise MediaFetchError(
                "Graph answered the media id without a url", cause=Cause.SERVER_ERROR
            ) from None
        size = tree.get("file_size")
        sha256, mime = tree.get("sha256"), tree.get("mime_type")
        return MediaInfo(
            url=str(found),
            mime_type=mime if isinstance(mime, str) else None,
            unverified_sha256=sha256 if isinstance(sha256, str) else None,
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    def download(self, url: str, write: Callable[[bytes], None], *, limit: int, chunk: int) -> int:
        """Stream ``url`` into ``write`` in pieces of at most ``chunk`` bytes; the byte count.

        More than ``limit`` bytes (announced or received) is ``too_large``; a body that ends
        before its ``Content-Length`` is ``truncated``; 401/403/404/410 on the URL mean it
        expired (``url_expired``: resolve the id again).
        """
        self._check_download_host(url)
        conn, path = self._connection(url)
        try:
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            if response.status != 200:
                body = response.read(_MAX_ERROR_BODY)
                if response.status in (401, 403, 404, 410):
                    raise MediaFetchError(
                        f"download URL answered {response.status}", cause=Cause.URL_EXPIRED
                    )
                raise _failure(
                    response.status, dict(response.getheaders()), body, when="downloading"
                )
            return _stream(response, write, limit=limit, chunk=chunk)
        except MediaFetchError:
            self._drop(url)  # an error answer, too large or truncated: not reusable
            raise
        except http.client.IncompleteRead:
            self._drop(url)
            raise MediaFetchError("download ended early", cause=Cause.TRUNCATED) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(url)
            raise MediaFetchError(
                f"download failed ({type(exc).__name__})", cause=Cause.NETWORK
            ) from None

    def close(self) -> None:
        """Close every thread's connections (call when no request is in flight)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}", "User-Agent": "coexarchive-media/1"}

    def _check_download_host(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == self._graph_host and parts.scheme == urlsplit(self.config.base_url).scheme:
            return
        if parts.scheme == "https" and host.endswith(DOWNLOAD_HOST_SUFFIXES):
            return
        raise MediaFetchError(
            f"refusing to send the Graph token to download host {host!r}",
            cause=Cause.FORBIDDEN,
        )

    def _request(self, url: str, *, limit: int) -> tuple[int, dict[str, str], bytes]:
        conn, path = self._connection(url)
        try:
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            body = response.read(limit + 1)
            if len(body) > limit:
                self._drop(url)
                raise MediaFetchError("Graph answer too large", cause=Cause.SERVER_ERROR)
            if response.will_close:
                self._drop(url)
            return response.status, dict(response.getheaders()), body
        except (OSError, http.client.HTTPException) as exc:
            self._drop(url)
            raise MediaFetchError(
                f"Graph request failed ({type(exc).__name__})", cause=Cause.NETWORK
            ) from None

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        connections: dict[tuple[str, str, int | None], http.client.HTTPConnection]
        connections = getattr(self._local, "connections", None) or {}
        self._local.connections = connections
        conn = connections.get(origin)
        if conn is None:
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = kind(origin[1], origin[2], timeout=self.config.timeout_s)
            connections[origin] = conn
            with self._opened_lock:
                self._opened.append(conn)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return conn, path or "/"

    def _drop(self, url: str) -> None:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        conn = getattr(self._local, "connections", {}).pop(origin, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def _failure(status: int, headers: dict[str, str], body: bytes, *, when: str) -> MediaFetchError:
    code = _graph_code(body)
    retry_after = _retry_after({k.lower(): v for k, v in headers.items()})
    where = f"{when}: HTTP {status}" + (f", Graph error code {code}" if code is not None else "")
    if status == 429 or code in RATE_LIMIT_CODES:
        return MediaFetchError(where, cause=Cause.RATE_LIMITED, retry_after=retry_after)
    if status == 401 or code == 190:
        return MediaFetchError(
            f"{where}: Graph refuses the token (COEXARCHIVE_GRAPH_TOKEN)",
            cause=Cause.FORBIDDEN,
            fatal=True,
        )
    if status == 403 or code in (10, 200):
        return MediaFetchError(where, cause=Cause.FORBIDDEN)
    if (status in (400, 404) and code == 100) or status in (404, 410):
        return MediaFetchError(where, cause=Cause.NOT_FOUND)
    return MediaFetchError(where, cause=Cause.SERVER_ERROR, retry_after=retry_after)


def _graph_code(body: bytes) -> int | None:
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, int) else None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_ms() / 1000
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


LINK_MAX_REDIRECTS = 3


class LinkClient:
    """Downloads a send's ``link`` (an untrusted URL the sending system chose).

    Only ``http`` and ``https``, to any host, with no credentials at all: no bearer token, no
    cookies, no auth taken from the URL's user-info (a URL that carries one is refused). A
    redirect is followed only to another http(s) URL, at most ``LINK_MAX_REDIRECTS`` times. One
    connection per request, closed after it; every read is bounded by ``timeout_s``.

    A host that resolves to any address that is not globally routable (loopback, private ranges,
    link-local such as the cloud metadata service, reserved) is refused, and the connection goes
    to the address that was checked (no second lookup a rebinding DNS could answer differently);
    ``allow_private`` lifts that only for the embedded default and tests, whose servers are local.
    """

    def __init__(self, *, timeout_s: float = 30.0, allow_private: bool = False) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private

    def download(self, url: str, write: Callable[[bytes], None], *, limit: int, chunk: int) -> int:
        """Stream the link into ``write`` (as :meth:`GraphClient.download`); the byte count.

        A scheme other than http(s) is ``forbidden``; 404/410 is ``not_found``; 401/403 is
        ``forbidden``; other answers are retried like Graph's.
        """
        for _hop in range(LINK_MAX_REDIRECTS + 1):
            conn, path = _link_connection(url, self.timeout_s, allow_private=self.allow_private)
            response: http.client.HTTPResponse | None = None
            try:
                conn.request("GET", path, headers={"User-Agent": "coexarchive-media/1"})
                response = conn.getresponse()
                if response.status in (301, 302, 303, 307, 308):
                    location = response.getheader("Location") or ""
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    if response.status in (404, 410):
                        raise MediaFetchError(
                            f"link answered {response.status}", cause=Cause.NOT_FOUND
                        )
                    if response.status in (401, 403):
                        raise MediaFetchError(
                            f"link answered {response.status}", cause=Cause.FORBIDDEN
                        )
                    # Never Graph's reading of the answer: a link host must not stop the job
                    # (a "token refused" body) nor pause every worker (a long Retry-After).
                    raise MediaFetchError(
                        f"link answered {response.status}", cause=Cause.SERVER_ERROR
                    )
                return _stream(response, write, limit=limit, chunk=chunk)
            except http.client.IncompleteRead:
                raise MediaFetchError("download ended early", cause=Cause.TRUNCATED) from None
            except (OSError, http.client.HTTPException) as exc:
                raise MediaFetchError(
                    f"link download failed ({type(exc).__name__})", cause=Cause.NETWORK
                ) from None
            finally:
                if response is not None:
                    response.close()  # it owns the socket once the server said it will close
                conn.close()
        raise MediaFetchError(
            f"link redirected more than {LINK_MAX_REDIRECTS} times", cause=Cause.FORBIDDEN
        )

    def close(self) -> None:
        """Nothing is kept open between downloads."""


def _link_connection(
    url: str, timeout_s: float, *, allow_private: bool = False
) -> tuple[http.client.HTTPConnection, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MediaFetchError("link is not a valid URL", cause=Cause.FORBIDDEN) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MediaFetchError(
            f"link scheme {parts.scheme!r} is not http or https", cause=Cause.FORBIDDEN
        )
    if parts.username is not None or parts.password is not None:
        raise MediaFetchError("link carries credentials; refused", cause=Cause.FORBIDDEN)
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    address = _checked_address(host, port, allow_private=allow_private)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        return _PinnedHTTPSConnection(host, port, address, timeout_s), path
    return _PinnedHTTPConnection(host, port, address, timeout_s), path


def _checked_address(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to: every address ``host`` resolves to must be global."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise MediaFetchError("link host does not resolve", cause=Cause.NETWORK) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise MediaFetchError("link host does not resolve", cause=Cause.NETWORK)
    if not allow_private:
        for address in addresses:
            if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
                raise MediaFetchError(
                    "link host resolves to a non-public address; refused", cause=Cause.FORBIDDEN
                )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the address that was checked, with the URL's host in ``Host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the address that was checked; the certificate is checked for the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _stream(
    response: http.client.HTTPResponse, write: Callable[[bytes], None], *, limit: int, chunk: int
) -> int:
    length = response.getheader("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    if expected is not None and expected > limit:
        raise MediaFetchError(
            f"download announces {expected} bytes, over the {limit}-byte limit",
            cause=Cause.TOO_LARGE,
        )
    received = 0
    while True:
        piece = response.read(chunk)
        if not piece:
            break
        received += len(piece)
        if received > limit:
            raise MediaFetchError(f"download passed the {limit}-byte limit", cause=Cause.TOO_LARGE)
        write(piece)
    if expected is not None and received != expected:
        raise MediaFetchError(
            f"download ended after {received} of {expected} bytes", cause=Cause.TRUNCATED
        )
    return received


__all__ = ["DEFAULT_GRAPH_URL", "GraphClient", "GraphConfig", "LinkClient", "MediaInfo"]
