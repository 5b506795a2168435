"""The object-store seam: one small protocol, implemented by S3 and by an in-memory twin."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

LockMode = Literal["COMPLIANCE", "GOVERNANCE"]

_LOCK_MODES: tuple[LockMode, ...] = ("COMPLIANCE", "GOVERNANCE")


def _whole_seconds_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, rounded *up* to a whole second (S3 keeps whole seconds)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"retain_until must be timezone-aware, got naive {moment!r}")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        # Rounding up means a lock is never shorter than asked for.
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


@dataclass(frozen=True)
class Retention:
    """An Object Lock retention: a mode and a tz-aware UTC retain-until, in whole seconds."""

    mode: LockMode
    retain_until: datetime

    def __post_init__(self) -> None:
        if self.mode not in _LOCK_MODES:
            raise ValueError(f"lock mode must be COMPLIANCE or GOVERNANCE, got {self.mode!r}")
        object.__setattr__(self, "retain_until", _whole_seconds_utc(self.retain_until))


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object (its current version)."""

    key: str
    size: int
    version_id: str | None
    retention: Retention | None
    legal_hold: bool
    # When the store wrote it (S3 LastModified): the store's word, not part of anything signed.
    last_modified: datetime | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """A create-only object store with Object Lock retention and legal holds."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention | None = None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Create ``key``; False if identical bytes are already there, else ObjectExistsError."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes, or ObjectMissingError."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` currently exists."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``, in lexicographic (UTF-8 byte) order."""
        ...

    def info(self, key: str) -> ObjectInfo:
        """Size, version, retention and legal hold as the server reports them."""
        ...

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Place or remove a legal hold on the object's current version."""
        ...

    def extend_retention(self, key: str, retention: Retention) -> None:
        """Set a retention at least as strong; RetentionError if refused."""
        ...

    def dispose(self, key: str) -> None:
        """Delete every version of ``key`` (and its delete markers): content gone for good.

        Object Lock decides: RetentionError while any version is retained or under legal hold.
        Only disposition calls it, after sealing what it deletes (``coexarchive.disposition``).
        """
        ...

    def versions(self, key: str) -> builtins.list[str]:
        """Ids of every stored version of exactly ``key``, delete markers excluded.

        More than one means something was written on top of a create-only object.
        """
        ...


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
