"""The coexarchive exception tree.

Every expected failure raises a subclass of :class:`CoexArchiveError`; the CLI catches only the
root, prints its message and exits non-zero.

::

    CoexArchiveError
    ├── ConfigError              bad settings, missing key or trust file
    ├── FormatError              bytes that do not follow a published format
    │   └── CanonicalizationError   a value that has no canonical encoding (e.g. a float)
    ├── StorageError             the object store failed or refused
    │   ├── ObjectExistsError       a create-only write found different bytes already there
    │   ├── ObjectMissingError      a key that should exist does not
    │   └── RetentionError          object-lock settings missing, wrong or refused
    ├── SealError                sealing cannot continue (e.g. a concurrent writer won the chain)
    ├── ProofError               an inclusion or consistency proof does not verify
    ├── SignatureError           a signed note does not verify against the trust file
    └── VerificationError        an archive check failed; carries every failure found
"""

from __future__ import annotations

from dataclasses import dataclass, field


class CoexArchiveError(Exception):
    """Root of every error coexarchive raises on purpose."""

    def diagnostics(self) -> str:
        """A human explanation of what failed and what to do about it."""
        return str(self)


class ConfigError(CoexArchiveError):
    """Settings are missing or inconsistent."""


class FormatError(CoexArchiveError):
    """Bytes do not follow a published coexarchive format."""


class CanonicalizationError(FormatError):
    """A value cannot be put in canonical form (floats, non-string keys, NaN)."""


class StorageError(CoexArchiveError):
    """The object store failed or refused an operation."""


class ObjectExistsError(StorageError):
    """A create-only write found an object with different bytes at the key."""

    def __init__(self, key: str, detail: str = "") -> None:
        self.key = key
        super().__init__(
            f"refusing to overwrite {key!r}: an object with different content exists"
            + (f" ({detail})" if detail else "")
        )


class ObjectMissingError(StorageError):
    """A key that should exist does not."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object {key!r} does not exist")


class RetentionError(StorageError):
    """Object Lock settings are missing, wrong, or a change to them was refused."""


class SealError(CoexArchiveError):
    """Sealing cannot continue."""


class ProofError(CoexArchiveError):
    """An inclusion or consistency proof does not verify."""


class SignatureError(CoexArchiveError):
    """A signed note does not carry a valid signature from a trusted key."""


@dataclass(frozen=True)
class Failure:
    """One failed verification check, located precisely."""

    step: str
    message: str
    chain_id: str | None = None
    key: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"chain {self.chain_id}" if self.chain_id else "",
                f"object {self.key}" if self.key else "",
                f"seq {self.seq}" if self.seq is not None else "",
            )
            if part
        )
        return f"[{self.step}] {self.message}" + (f" ({where})" if where else "")


@dataclass
class VerificationError(CoexArchiveError):
    """An archive or bundle did not verify; ``failures`` lists every check that failed."""

    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics())

    def diagnostics(self) -> str:
        head = f"verification failed: {len(self.failures)} check(s) did not hold"
        return "\n".join([head, *(f"  - {failure}" for failure in self.failures)])
