"""Sealing records that enrichment makes outside the ingest pipeline (imports, assessments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coexarchive.dedup import DedupIndex
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.seal.personal import PersonalSealer
from coexarchive.segments import ChainWriter, own_trust
from coexarchive.store.base import ObjectStore

__all__ = ["SealOutcome", "seal_new"]


@dataclass(frozen=True)
class SealOutcome:
    chain_id: str
    sealed: int
    duplicates: int
    segments: int
    tree_size: int


def seal_new(
    store: ObjectStore,
    chain_id: str,
    records: Sequence[Record],
    *,
    signer: Signer,
    archive_name: str,
    policy: RetentionPolicy,
    personal: PersonalSealer | None = None,
    trust: TrustStore | None = None,
) -> SealOutcome:
    """De-duplicate ``records`` against the chain and seal the new ones, like the ingest job
    (encrypting personal fields with ``personal`` when the archive seals them so). ``trust``:
    keys besides ``signer``'s whose checkpoints count (the audit key sealing the holds)."""
    from coexarchive.export.holds import NewDataHolds  # holds read the query catalog

    writer = ChainWriter(
        store,
        chain_id,
        signer=signer,
        archive_name=archive_name,
        policy=policy,
        trust=trust,
        personal=personal,
        legal_holds=NewDataHolds.load(store, own_trust(signer, trust)),
    )
    state = writer.state()
    classified = DedupIndex(
        store, chain_id, committed_size=state.size, trust=writer.trust
    ).classify(records)
    results = writer.append(classified.new) if classified.new else []
    duplicates = classified.duplicates + len(classified.observations)
    return SealOutcome(chain_id, len(classified.new), duplicates, len(results), writer.state().size)
