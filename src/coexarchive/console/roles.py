"""Which role may do what in the console: the one table every route is checked against."""

from __future__ import annotations

from typing import Final

__all__ = ["PERMISSIONS", "allowed"]

_EVERYONE: Final = frozenset({"reviewer", "auditor", "legal", "admin"})

# Permission → roles holding it. Reviewers work the queue; auditors read everything and decide
# nothing; legal holds and exports; admins run the console (verify now) and read the access log.
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "overview": _EVERYONE,
    "verify": frozenset({"admin"}),
    "search": _EVERYONE,
    "conversation": _EVERYONE,
    "review.view": frozenset({"reviewer", "auditor", "admin"}),
    "review.act": frozenset({"reviewer", "admin"}),
    "reports": frozenset({"auditor", "legal", "admin"}),
    "holds.view": frozenset({"legal", "admin"}),
    "holds.act": frozenset({"legal"}),
    "exports": frozenset({"legal"}),
    "access": frozenset({"auditor", "admin"}),
}


def allowed(permission: str, roles: frozenset[str]) -> bool:
    return bool(PERMISSIONS[permission] & roles)
