"""Appending one record at a time to one of the archive's own chains (access log, hold register).

Each record is sealed into its own segment and the commit is then stated in a new archive head,
so a reader of the archive head sees every access and every hold. Two processes may append to
the same chain at once: the one that loses the race for a seq (:class:`SealError` from
:class:`ChainWriter`) rebuilds its writer from the store and tries again, a few times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from coexarchive.archive_head import write_head_after
from coexarchive.errors import SealError
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.segments import ChainWriter, Manifest
from coexarchive.store.base import ObjectStore

if TYPE_CHECKING:
    from coexarchive.settings import Settings

__all__ = ["APPEND_ATTEMPTS", "AuditChainClient", "AuditChainWriter"]

APPEND_ATTEMPTS = 5


class AuditChainWriter:
    """Seals single records into ``chain_id`` and states each commit in the archive head.

    ``what`` names the chain in the error raised when every attempt lost its race.
    """

    def __init__(
        self,
        store: ObjectStore,
        chain_id: str,
        *,
        signer: Signer,
        archive_name: str,
        what: str,
        policy: RetentionPolicy | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        self.store = store
        self.chain_id = chain_id
        self.signer = signer
        self.archive_name = archive_name
        self.what = what
        self.policy = policy
        self.trust = trust
        self._writer: ChainWriter | None = None

    def append(self, record: Record) -> Manifest:
        """Seal ``record``; returns the manifest that commits it."""
        last_error: SealError | None = None
        for _attempt in range(APPEND_ATTEMPTS):
            # The writer keeps the chain head between appends, so later appends cost four PUTs
            # and no listing; after a lost race it is rebuilt from the store.
            if self._writer is None:
                self._writer = ChainWriter(
                    self.store,
                    self.chain_id,
                    signer=self.signer,
                    archive_name=self.archive_name,
                    policy=self.policy,
                )
            try:
                manifest = self._writer.append([record])[0].manifest
            except SealError as exc:  # another writer committed this seq first
                self._writer = None
                last_error = exc
                continue
            write_head_after(
                self.store,
                [manifest],
                signer=self.signer,
                archive_name=self.archive_name,
                trust=self.trust,
            )
            return manifest
        raise SealError(f"could not append to the {self.what}: {last_error}")


class AuditChainClient:
    """What every writer of an oversight chain (access log, hold register, supervision) holds:
    the store, the audit signer, the archive's name, the retention policy, and the trust file
    that opens earlier archive heads."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        signer: Signer,
        archive_name: str,
        policy: RetentionPolicy | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.archive_name = archive_name
        self.policy = policy
        self.trust = trust

    @property
    def verifying_trust(self) -> TrustStore:
        """The trust file's keys and the audit signer's own: what this client accepts as signed."""
        from coexarchive.segments import own_trust

        return own_trust(self.signer, self.trust)

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        store: ObjectStore | None = None,
        *,
        signer: Signer | None = None,
        trust: TrustStore | None = None,
    ) -> Self:
        """One configured as ``settings`` say: the audit signer (which refuses a key the trust
        file does not list), the archive's name and policy, and the trust file if there is one."""
        if trust is None and settings.trust_file.exists():
            trust = settings.trust()
        return cls(
            store if store is not None else settings.store(),
            signer=signer if signer is not None else settings.audit_signer(),
            archive_name=settings.archive_name,
            policy=settings.policy(),
            trust=trust,
        )
