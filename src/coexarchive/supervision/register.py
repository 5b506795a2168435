"""The supervision chains: ``policies`` (each policy version) and ``reviews`` (hits, decisions).

Both are internal chains written with the audit key, sealed and checkpointed like every chain,
and each commit ends with a signed archive head (so ``coexarchive verify`` covers them). Records:

- ``policy`` (chain ``policies``, origin ``auditor``): ``detail`` = ``{v, name, version, sha256,
  policy, who}``, ``policy`` being the validated policy's canonical JSON object;
- ``hit`` (chain ``reviews``, origin ``system``): a message met a rule of a policy version;
- ``review`` (chain ``reviews``, origin ``auditor`` or ``system`` for ``scan``): ``assign``,
  ``decide``, ``reopen`` of a hit, or the summary of a ``scan``.

Readers check each segment against its manifest's SHA-256 and each row against its leaf hash
before they use it, as the hold register does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pyarrow as pa

from coexarchive.archive_head import write_head_after
from coexarchive.audit_chain import AuditChainClient
from coexarchive.errors import FormatError, SealError
from coexarchive.records import Direction, Origin, Record, stable_id
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.segments import ChainWriter, Manifest, list_manifests, read_segment
from coexarchive.store.base import ObjectStore, sha256_hex

__all__ = [
    "POLICIES_CHAIN",
    "REVIEWS_CHAIN",
    "ChainRow",
    "Sealer",
    "detail_text",
    "read_chain",
]

POLICIES_CHAIN: Final = "policies"
REVIEWS_CHAIN: Final = "reviews"
DETAIL_VERSION: Final = 1
_APPEND_ATTEMPTS: Final = 5
_READERS: Final = 16
_COLUMNS: Final = ("seq", "record_id", "kind", "event_time", "ref_record_id", "detail")


def detail_text(document: Mapping[str, Any]) -> str:
    return orjson.dumps({"v": DETAIL_VERSION, **document}, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class ChainRow:
    """One record of a supervision chain, checked against its seal."""

    seq: int
    record_id: str
    kind: str
    event_time: int
    ref_record_id: str | None
    detail: Mapping[str, Any]


def read_chain(store: ObjectStore, chain_id: str) -> list[ChainRow]:
    """Every record of the chain in ``seq`` order, each checked against its leaf hash."""
    keys = list_manifests(store, chain_id)
    if not keys:
        return []
    # Each decision is a segment of its own: fetch them in parallel to hide S3's latency.
    with ThreadPoolExecutor(max_workers=min(_READERS, len(keys))) as pool:
        segments = list(pool.map(lambda key: _read_segment(store, chain_id, key), keys))
    rows = sorted((row for segment in segments for row in segment), key=lambda row: row.seq)
    if [row.seq for row in rows] != list(range(len(rows))):
        raise FormatError(f"chain {chain_id}: records are missing between seq 0 and {len(rows)}")
    return rows


def _read_segment(store: ObjectStore, chain_id: str, key: str) -> list[ChainRow]:
    manifest = Manifest.from_bytes(store.get(key), key=key)
    data = store.get(manifest.segment.key)
    if sha256_hex(data) != manifest.segment.sha256:
        raise FormatError(
            f"{manifest.segment.key}: segment of chain {chain_id} differs from its manifest: "
            "the archive may have been altered; run `coexarchive verify`"
        )
    table = read_segment(data, key=manifest.segment.key)
    leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
    if recompute_leaf_hashes(table) != leaves:
        raise FormatError(
            f"{manifest.segment.key}: a record of chain {chain_id} does not match its seal; "
            "run `coexarchive verify`"
        )
    return chain_rows(table, chain_id, manifest.segment.key)


def chain_rows(table: pa.Table, chain_id: str, segment_key: str) -> list[ChainRow]:
    """The rows of a checked segment ``table`` as :class:`ChainRow`, each detail parsed."""
    rows = []
    for row in table.select(list(_COLUMNS)).to_pylist():
        try:
            detail = orjson.loads(row["detail"])
        except orjson.JSONDecodeError:
            raise FormatError(
                f"{segment_key}: seq {row['seq']} of chain {chain_id} has a detail that is not JSON"
            ) from None
        rows.append(
            ChainRow(
                seq=int(row["seq"]),
                record_id=str(row["record_id"]),
                kind=str(row["kind"]),
                event_time=round(row["event_time"].timestamp() * 1000),
                ref_record_id=row["ref_record_id"],
                detail=detail,
            )
        )
    return rows


def internal_record(
    chain_id: str,
    kind: str,
    identity: Sequence[str | int | None],
    detail: Mapping[str, Any],
    *,
    now_ms: int,
    origin: Origin,
    ref_record_id: str | None = None,
    status: str | None = None,
) -> Record:
    text = detail_text(detail)
    return Record(
        chain_id=chain_id,
        record_id=stable_id(*identity),
        kind=kind,
        origin=origin.value,
        direction=Direction.NONE.value,
        event_time=now_ms,
        received_time=now_ms,
        ref_record_id=ref_record_id,
        status=status,
        detail=text,
    )


def event_id(*parts: str | int | None, detail: Mapping[str, Any]) -> tuple[str | int | None, ...]:
    """Identity parts of an event record: its parts plus the digest of its detail."""
    digest = hashlib.sha256(detail_text(detail).encode()).hexdigest()
    return (*parts, digest)


class Sealer(AuditChainClient):
    """Appends records to a supervision chain with the audit key, then signs an archive head."""

    def seal(
        self,
        chain_id: str,
        build: Callable[[list[ChainRow]], Sequence[Record]],
    ) -> tuple[list[Record], Manifest | None]:
        """Seal what ``build`` makes of the chain as it stands, atomically.

        ``build`` gets the chain's records and returns the records to append (none: nothing is
        sealed). If another writer commits in between, the append fails and ``build`` runs
        again on the longer chain, so a decision is checked against the chain it extends.
        """
        last: SealError | None = None
        for _attempt in range(_APPEND_ATTEMPTS):
            writer = ChainWriter(
                self.store,
                chain_id,
                signer=self.signer,
                archive_name=self.archive_name,
                policy=self.policy,
                trust=self.trust,
            )
            size = writer.state().size
            rows = read_chain(self.store, chain_id)
            if len(rows) != size:
                last = SealError(f"chain {chain_id} moved while it was read")
                continue
            records = list(build(rows))
            if not records:
                return [], None
            try:
                results = writer.append(records)
            except SealError as exc:  # another writer committed this seq first
                last = exc
                continue
            manifests = [result.manifest for result in results]
            write_head_after(
                self.store,
                manifests,
                signer=self.signer,
                archive_name=self.archive_name,
                trust=self.trust,
            )
            return records, manifests[-1]
        raise SealError(f"could not append to chain {chain_id}: {last}")
