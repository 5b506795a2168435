"""The coexarchive exception tree.

Every expected failure raises a subclass of :class:`CoexArchiveError`; the CLI catches only the
root, prints its message and exits non-zero.

Every exception class coexarchive raises on purpose is defined here, so that this tree is the
whole list; modules re-export the ones they raise (``coexarchive.verify.ArchiveVerificationError``
is this module's class).

::

    CoexArchiveError
    ├── ConfigError              bad settings, missing key or trust file, a bad option value
    │   ├── InvalidArgumentError    a value an API refuses (also a ValueError)
    │   ├── SearchIndexError        the search index is missing, foreign or unwritable
    │   └── SearchSyntaxError       a search query outside the search language
    ├── FormatError              bytes that do not follow a published format
    │   ├── CanonicalizationError   a value that has no canonical encoding (e.g. a float)
    │   ├── ParseError              a line a parser refuses (also a ValueError)
    │   └── BundleReadError         a bundle (or an archive in one) refused before or while read
    ├── StorageError             the object store failed or refused
    │   ├── ObjectExistsError       a create-only write found different bytes already there
    │   ├── ObjectMissingError      a key that should exist does not
    │   └── RetentionError          object-lock settings missing, wrong or refused
    ├── SealError                sealing cannot continue (e.g. a concurrent writer won the chain)
    │   └── UnsignedTailError       a chain ends in objects no trusted key signed
    ├── ProofError               an inclusion or consistency proof does not verify
    ├── SignatureError           a signed note does not verify against the trust file
    ├── QueryError               DuckDB refused or failed an auditor's statement
    │   └── SandboxError            a statement the SQL sandbox does not run
    ├── SpoolError               the receiver's spool cannot take a delivery (answer non-200)
    │   ├── SpoolFull               the spool holds as many bytes as it may
    │   └── SpoolUnavailable        writing or syncing the spool failed, or it is not open
    ├── CaptureError             the receiver did not confirm an outbound capture
    ├── AnchorError              a timestamp authority or witness was unreachable or refused
    ├── AuthError                the console refused a sign-in, a session or an action
    ├── DataKeyError             a customer's data key is missing, wrong or unusable
    │   └── DecryptionError         a sealed field did not open (wrong key or tampered ciphertext)
    ├── ErasureError             an erasure cannot be carried out in full (nothing was destroyed)
    ├── MediaFetchError          the Graph API did not hand over an attachment; carries the cause
    ├── PipelineError            an expected failure inside a Beam worker, known by its text
    └── VerificationError        an archive check failed; carries every failure found
        ├── ArchiveVerificationError   ``verify`` failed; carries the full report
        └── BundleVerificationError    ``verify-bundle`` failed; carries the full report
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coexarchive.export.verify_bundle import BundleReport
    from coexarchive.verify import Report


class CoexArchiveError(Exception):
    """Root of every error coexarchive raises on purpose."""

    def diagnostics(self) -> str:
        """A human explanation of what failed and what to do about it."""
        return str(self)


class ConfigError(CoexArchiveError):
    """Settings are missing or inconsistent."""


class SearchIndexError(ConfigError):
    """The search index is missing, belongs to another archive, or cannot be written."""


class SearchSyntaxError(ConfigError):
    """A search query that does not follow the search language."""


class InvalidArgumentError(ConfigError, ValueError):
    """A value an API or command refuses (a bad receiver id, chain id or URL).

    Also a ValueError, as Python's own argument checks are, so that callers which validate
    input by catching ValueError keep working.
    """


class FormatError(CoexArchiveError):
    """Bytes do not follow a published coexarchive format."""


class ParseError(FormatError, ValueError):
    """A parser refused its input; also a ValueError, like the JSON errors it sits beside."""


class BundleReadError(FormatError):
    """A bundle, or an archive inside one, that is refused before (or while) it is read."""


class CanonicalizationError(FormatError):
    """A value cannot be put in canonical form (floats, non-string keys, NaN)."""


class StorageError(CoexArchiveError):
    """The object store failed or refused an operation."""


class ObjectExistsError(StorageError):
    """A create-only write found an object with different bytes at the key."""

    def __init__(self, key: str, detail: str = "") -> None:
        self.key = key
        self.detail = detail
        super().__init__(
            f"refusing to overwrite {key!r}: an object with different content exists"
            + (f" ({detail})" if detail else "")
        )

    def __reduce__(self) -> tuple[type[ObjectExistsError], tuple[str, str]]:
        # Pickled across processes (Beam workers): rebuilt from its fields, not its message.
        return type(self), (self.key, self.detail)


class ObjectMissingError(StorageError):
    """A key that should exist does not."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object {key!r} does not exist")

    def __reduce__(self) -> tuple[type[ObjectMissingError], tuple[str]]:
        return type(self), (self.key,)


class RetentionError(StorageError):
    """Object Lock settings are missing, wrong, or a change to them was refused."""


class SealError(CoexArchiveError):
    """Sealing cannot continue."""


class UnsignedTailError(SealError):
    """A chain ends in objects no trusted key signed: the writer will not sign past them."""

    def __init__(self, chain_id: str, key: str, reason: str) -> None:
        self.chain_id = chain_id
        self.key = key
        self.reason = reason
        super().__init__(
            f"chain {chain_id}: {key} is past the last signed checkpoint and is not signed "
            f"({reason}); it may be forged, so nothing was sealed on this chain. Run "
            "`coexarchive verify` and find out who wrote it before sealing more on this chain"
        )

    def __reduce__(self) -> tuple[type[UnsignedTailError], tuple[str, str, str]]:
        return type(self), (self.chain_id, self.key, self.reason)


class ProofError(CoexArchiveError):
    """An inclusion or consistency proof does not verify."""


class SignatureError(CoexArchiveError):
    """A signed note does not carry a valid signature from a trusted key."""


class QueryError(CoexArchiveError):
    """DuckDB refused or failed a statement (the attempt is still in the access log)."""


class SandboxError(QueryError):
    """A statement the SQL sandbox does not run."""


class SpoolError(CoexArchiveError):
    """The spool cannot take a delivery; the receiver answers non-200 so that Meta retries."""


class SpoolFull(SpoolError):
    """The spool holds as many bytes as it may (S3 is probably unreachable)."""


class SpoolUnavailable(SpoolError):
    """Writing or syncing the spool failed, or the spool is not open."""


class CaptureError(CoexArchiveError):
    """The receiver did not confirm the capture; the caller should retry or queue it."""


class AnchorError(CoexArchiveError):
    """A timestamp authority or witness was unreachable, refused, or answered out of protocol.

    Never fatal to sealing: the head records what it lacks and a later run fills it.
    """

    def __init__(self, message: str, *, status: int | None = None, size: int | None = None) -> None:
        # ``status``: the HTTP status the authority or witness answered; ``size``: the tree size a
        # witness's 409 Conflict named.
        self.status = status
        self.size = size
        super().__init__(message)

    def __reduce__(self) -> tuple[type[AnchorError], tuple[str], dict[str, int | None]]:
        return type(self), (str(self),), {"status": self.status, "size": self.size}


class AuthError(CoexArchiveError):
    """The review console refused a sign-in, a session, a form or an action for a role.

    Its message is safe to show to whoever caused it: it never says which part of a sign-in
    was wrong.
    """


class DataKeyError(CoexArchiveError):
    """A customer's data key is missing from the key store, or the store cannot unwrap it."""


class DecryptionError(DataKeyError):
    """A sealed personal field did not open: wrong key, or ciphertext or tag altered."""


class ErasureError(CoexArchiveError):
    """An erasure was refused before anything was destroyed (a hold, unencrypted records)."""


class MediaFetchError(CoexArchiveError):
    """The Graph API did not hand over an attachment's bytes.

    ``cause`` is a ``coexarchive.media.Cause`` value; ``retry_after`` the seconds Graph asked
    to wait (429 ``Retry-After``), if any; ``fatal`` means no fetch can succeed with these
    settings (a refused token), so the job stops rather than record every attachment as a gap.
    """

    def __init__(
        self,
        message: str,
        *,
        cause: str = "",
        retry_after: float | None = None,
        fatal: bool = False,
    ) -> None:
        self.cause = cause
        self.retry_after = retry_after
        self.fatal = fatal
        super().__init__(message)

    def __reduce__(self) -> tuple[type[MediaFetchError], tuple[str], dict[str, object]]:
        state: dict[str, object] = {"cause": self.cause, "retry_after": self.retry_after}
        state["fatal"] = self.fatal
        return type(self), (str(self),), state


class PipelineError(CoexArchiveError):
    """An expected failure raised inside a pipeline worker process.

    Beam hands it back only as text; ``error_type`` names the original class.
    """

    def __init__(self, message: str, *, error_type: str = "") -> None:
        self.error_type = error_type
        super().__init__(message)


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


class ArchiveVerificationError(VerificationError):
    """A verification that failed, with the full report of what was and was not verified."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(failures=list(report.failures))


class BundleVerificationError(VerificationError):
    """A bundle that did not verify, with the full report."""

    def __init__(self, report: BundleReport) -> None:
        self.report = report
        super().__init__(failures=list(report.failures))
