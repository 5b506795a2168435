"""An in-memory :class:`~coexarchive.store.base.ObjectStore` for tests, faithful to Object Lock."""

from __future__ import annotations

import bisect
import builtins
import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from coexarchive._internal.clock import now_ms
from coexarchive.errors import ObjectExistsError, ObjectMissingError, RetentionError
from coexarchive.store.base import ObjectInfo, Retention, sha256_hex


class MemoryStore:
    """Create-only, lock-aware object store held in a dict.

    ``unsafe_objects`` and :meth:`unsafe_delete` bypass every guarantee; they exist so tests can
    play the attacker (tamper with or remove evidence) and check that verification notices.
    """

    def __init__(self) -> None:
        self.unsafe_objects: dict[str, bytes] = {}
        self._retention: dict[str, Retention] = {}
        self._legal_hold: dict[str, bool] = {}
        self._version_ids: dict[str, str] = {}
        self._written: dict[str, datetime] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self.object_lock = True  # tests set False to play a bucket without Object Lock

    def require_object_lock(self) -> None:
        if not self.object_lock:
            raise RetentionError("in-memory store has Object Lock switched off")

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention | None = None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Create ``key``; False if identical bytes are there, ObjectExistsError if others are."""
        data = bytes(data)
        with self._lock:
            existing = self.unsafe_objects.get(key)
            if existing is not None:
                if existing == data:
                    return False
                raise ObjectExistsError(
                    key, f"stored sha256 {sha256_hex(existing)}, new sha256 {sha256_hex(data)}"
                )
            self.unsafe_objects[key] = data
            self._version_ids[key] = f"v{next(self._versions)}"
            self._written[key] = datetime.now(UTC).replace(microsecond=0)
            if retention is not None:
                self._retention[key] = retention
            return True

    def get(self, key: str) -> bytes:
        try:
            return self.unsafe_objects[key]
        except KeyError:
            raise ObjectMissingError(key) from None

    def exists(self, key: str) -> bool:
        return key in self.unsafe_objects

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(self.unsafe_objects)
        # Python orders str by code point, which is S3's UTF-8 byte order.
        start = bisect.bisect_left(keys, prefix)
        for key in keys[start:]:
            if not key.startswith(prefix):
                return
            yield key

    def info(self, key: str) -> ObjectInfo:
        with self._lock:
            data = self.get(key)
            return ObjectInfo(
                key=key,
                size=len(data),
                version_id=self._version_ids.get(key),
                retention=self._retention.get(key),
                legal_hold=self._legal_hold.get(key, False),
                last_modified=self._written.get(key),
            )

    def set_legal_hold(self, key: str, on: bool) -> None:
        with self._lock:
            self.get(key)
            self._legal_hold[key] = on

    def extend_retention(self, key: str, retention: Retention) -> None:
        """Refuse what S3 refuses without a governance bypass: shortening or changing mode."""
        with self._lock:
            self.get(key)
            current = self._retention.get(key)
            if current is not None and (
                retention.mode != current.mode or retention.retain_until < current.retain_until
            ):
                raise RetentionError(
                    f"refusing to change retention of {key!r} from {current.mode} until "
                    f"{current.retain_until.isoformat()} to {retention.mode} until "
                    f"{retention.retain_until.isoformat()}"
                )
            self._retention[key] = retention

    def versions(self, key: str) -> builtins.list[str]:
        """One version per key: the in-memory store keeps no history."""
        version = self._version_ids.get(key)
        return [version] if version is not None and key in self.unsafe_objects else []

    def dispose(self, key: str) -> None:
        """Delete ``key`` as S3 would: refused under legal hold or before its retention ends."""
        with self._lock:
            self.get(key)
            if self._legal_hold.get(key, False):
                raise RetentionError(f"{key!r} is under legal hold: it cannot be deleted")
            retention = self._retention.get(key)
            now = datetime.fromtimestamp(now_ms() / 1000, tz=UTC)
            if retention is not None and retention.retain_until > now:
                raise RetentionError(
                    f"{key!r} is retained until {retention.retain_until.isoformat()}: it cannot "
                    "be deleted yet"
                )
        self.unsafe_delete(key)

    def unsafe_delete(self, key: str) -> None:
        """Remove ``key`` and its lock state regardless of retention or legal hold."""
        with self._lock:
            self.unsafe_objects.pop(key, None)
            self._retention.pop(key, None)
            self._legal_hold.pop(key, None)
            self._version_ids.pop(key, None)
