"""Appending one record at a time to one of the archive's own chains (access log, hold register).

Each record is sealed into its own segment and the commit is then stated in a new archive head,
so a reader of the archive head sees every access and every hold. Two processes may append to
the same chain at once: the one that loses the race for a seq (:class:`SealError` from
:class:`ChainWriter`) rebuilds its writer from the store and tries again, a few times.
"""

from __future__ import annotations

from coexarchive.archive_head import write_head_after
from coexarchive.errors import SealError
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.segments import ChainWriter, Manifest
from coexarchive.store.base import ObjectStore

__all__ = ["APPEND_ATTEMPTS", "AuditChainWriter"]

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
