"""Local console accounts: argon2id password hashes, a TOTP second factor, roles.

The account file is JSON (``{"v": 1, "users": {name: {"password", "totp", "roles"}}}``), written
with mode 0600 beside the keys. It holds no plain password; the TOTP secrets in it are as
sensitive as the signing keys and live in the same place. Production sign-in is OpenID Connect;
these accounts are the embedded default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import argon2
import orjson
import pyotp

from coexarchive.errors import AuthError, ConfigError

__all__ = ["ROLES", "Account", "AccountFile", "hash_password", "new_totp_secret"]

ROLES: Final = ("reviewer", "auditor", "legal", "admin")
ACCOUNTS_VERSION: Final = 1
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_MIN_PASSWORD = 12
# RFC 9106's second recommended option (argon2id, 64 MiB, 3 passes, 4 lanes).
_HASHER: Final = argon2.PasswordHasher(
    time_cost=3, memory_cost=65_536, parallelism=4, type=argon2.Type.ID
)
# A hash to check against when the name is unknown, so that a wrong name costs what a wrong
# password costs and the timing does not tell which names exist.
_DUMMY_HASH: Final = _HASHER.hash("not-a-password-of-anyone")


def hash_password(password: str) -> str:
    if len(password) < _MIN_PASSWORD:
        raise ConfigError(f"a console password has at least {_MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def new_totp_secret() -> str:
    return pyotp.random_base32()


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    totp_secret: str
    roles: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {
            "password": self.password_hash,
            "totp": self.totp_secret,
            "roles": sorted(self.roles),
        }

    def provisioning_uri(self, issuer: str) -> str:
        """The ``otpauth://`` URI an authenticator app reads (usually from a QR code)."""
        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.name, issuer_name=issuer)


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    unknown = sorted(chosen - set(ROLES))
    if unknown or not chosen:
        raise ConfigError(f"roles are one or more of {', '.join(ROLES)} (got {sorted(chosen)})")
    return chosen


class AccountFile:
    """The account file: read on every sign-in, so an account removed is refused at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Account]:
        if not self.path.exists():
            return {}
        try:
            document = orjson.loads(self.path.read_bytes())
            if document.get("v") != ACCOUNTS_VERSION:
                raise ConfigError(f"{self.path}: not a version {ACCOUNTS_VERSION} account file")
            return {
                name: Account(
                    name,
                    str(entry["password"]),
                    str(entry["totp"]),
                    check_roles(entry["roles"]),
                )
                for name, entry in document["users"].items()
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.path}: unreadable console account file ({exc})") from None

    def save(self, accounts: Mapping[str, Account]) -> None:
        document = {
            "v": ACCOUNTS_VERSION,
            "users": {name: accounts[name].to_json() for name in sorted(accounts)},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        os.replace(temporary, self.path)

    def add(self, name: str, password: str, roles: Iterable[str]) -> Account:
        if not _NAME.match(name):
            raise ConfigError("an account name is 1-64 letters, digits, '.', '_', '@' or '-'")
        accounts = self.load()
        if name in accounts:
            raise ConfigError(f"account {name!r} exists; remove it first to replace it")
        account = Account(name, hash_password(password), new_totp_secret(), check_roles(roles))
        accounts[name] = account
        self.save(accounts)
        return account

    def remove(self, name: str) -> None:
        accounts = self.load()
        if accounts.pop(name, None) is None:
            raise ConfigError(f"no console account {name!r}")
        self.save(accounts)

    def authenticate(self, name: str, password: str) -> Account:
        """The account if ``password`` is its password; the second factor is checked after."""
        account = self.load().get(name)
        try:
            _HASHER.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            account = None
        if account is None:
            raise AuthError("sign-in refused: wrong name, password or code")
        return account


class TotpChecker:
    """Checks a TOTP code and refuses one already used (RFC 6238 §5.2)."""

    def __init__(self) -> None:
        self._last_step: dict[str, int] = {}

    def check(self, account: Account, code: str, *, now_s: float) -> None:
        totp = pyotp.TOTP(account.totp_secret)
        code = code.strip()
        step = int(now_s) // totp.interval
        matched = None
        if code.isdigit() and len(code) == totp.digits:
            # One step either side: a phone clock a little off still signs in.
            for candidate in (step - 1, step, step + 1):
                if pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
                    matched = candidate
        if matched is None or matched <= self._last_step.get(account.name, -1):
            raise AuthError("sign-in refused: wrong name, password or code")
        self._last_step[account.name] = matched
