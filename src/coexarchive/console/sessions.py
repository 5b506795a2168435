"""Console sessions, CSRF tokens and sign-in throttling.

A session lives on the server; its cookie carries only a random id and an HMAC over it with a
key made when the console starts (a restart signs everyone out). A session ends when it has
been idle for ``idle_ms``, when ``absolute_ms`` have passed since sign-in, or at sign-out; an
ended session's cookie is refused even if it is replayed. Every form carries the session's CSRF
token, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from coexarchive.errors import AuthError

__all__ = ["Session", "SessionStore", "Throttle"]

IDLE_MS: Final = 15 * 60_000
ABSOLUTE_MS: Final = 8 * 3_600_000


@dataclass
class Session:
    id: str
    user: str
    roles: frozenset[str]
    method: str  # "local" or "oidc"
    created_ms: int
    seen_ms: int
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    id_token: str | None = None  # OpenID Connect: the hint for the provider's sign-out


class SessionStore:
    def __init__(
        self,
        clock: Callable[[], int],
        *,
        idle_ms: int = IDLE_MS,
        absolute_ms: int = ABSOLUTE_MS,
        key: bytes | None = None,
    ) -> None:
        self.clock = clock
        self.idle_ms = idle_ms
        self.absolute_ms = absolute_ms
        self._key = key or secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def create(
        self, user: str, roles: frozenset[str], method: str, *, id_token: str | None = None
    ) -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        now = self.clock()
        session = Session(
            secrets.token_urlsafe(32), user, roles, method, now, now, id_token=id_token
        )
        with self._lock:
            self._sessions[session.id] = session
        return session, f"{session.id}.{self._mac(session.id)}"

    def open(self, cookie: str | None) -> Session | None:
        """The live session the cookie names, touched; None when there is none."""
        if not cookie or cookie.count(".") != 1:
            return None
        sid, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(sid).encode()):
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.seen_ms > self.idle_ms or now - session.created_ms > self.absolute_ms:
                del self._sessions[sid]
                return None
            session.seen_ms = now
            return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    @staticmethod
    def check_csrf(session: Session, token: str | None) -> None:
        if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise AuthError("the form was refused: its security token is missing or stale")


class Throttle:
    """Refuses sign-in attempts for a name or an address after too many recent failures.

    While refused, no password is checked at all, so guessing costs the attacker the window.
    """

    def __init__(
        self, clock: Callable[[], int], *, failures: int = 5, window_ms: int = 15 * 60_000
    ) -> None:
        self.clock = clock
        self.failures = failures
        self.window_ms = window_ms
        self._failed: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: int) -> list[int]:
        kept = [t for t in self._failed.get(key, []) if now - t < self.window_ms]
        self._failed[key] = kept
        return kept

    def check(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            if any(len(self._recent(key, now)) >= self.failures for key in keys):
                raise AuthError("too many failed sign-ins: wait 15 minutes or ask an administrator")

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failed.pop(key, None)
