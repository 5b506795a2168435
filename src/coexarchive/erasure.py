"""Erasure by crypto-shredding: destroy one customer's data keys, seal that it was done.

``Eraser.plan`` finds everything the archive holds of a customer and says what an erasure would
do and what it cannot: a hold that covers the customer, records sealed in plaintext (version 1)
and raw landing objects (evidence kept as received) each stop it. ``Eraser.erase`` refuses on
any of them before destroying anything (fail closed: never a silent partial erasure), then
destroys every data key of the customer, seals an ``erasure`` record on the ``erasures`` chain
(with its archive head) and purges derived data. A crash after the keys are destroyed and
before the record is sealed is finished by running ``erase`` again: the tombstones name the
destroyed keys.

The format is ``schemas/SEALING.md``, "Record version 2" and "Erasure record".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from coexarchive.audit_chain import AuditChainClient, AuditChainWriter
from coexarchive.datakeys import DataKeyStore
from coexarchive.errors import ErasureError, InvalidArgumentError
from coexarchive.export.holds import Hold, active_holds, read_register
from coexarchive.query.views import ArchiveCatalog, Segment
from coexarchive.records import RECORD_SCHEMA, Direction, Kind, Origin, Record, stable_id
from coexarchive.seal.personal import PERSONAL_FIELDS, PERSONAL_RECORD_VERSION
from coexarchive.segments import OVERSIGHT_CHAINS, Manifest

__all__ = ["ERASURES_CHAIN", "Eraser", "ErasureOutcome", "ErasurePlan", "normalise_customer"]

ERASURES_CHAIN = "erasures"
DETAIL_VERSION = 1
_COLUMNS = ("chain_id", "seq", "record_version", "raw_key", *PERSONAL_FIELDS)


def normalise_customer(customer: str) -> str:
    """A customer id as the archive stores it: no spaces, no leading ``+``."""
    cleaned = "".join(customer.split()).lstrip("+")
    if not cleaned:
        raise InvalidArgumentError("--customer is empty")
    return cleaned


@dataclass
class ErasurePlan:
    """What the archive holds of one customer, and what stands in the way of erasing it."""

    customer: str
    records: dict[str, int] = field(default_factory=dict)  # chain → version-2 records
    plaintext: dict[str, list[int]] = field(default_factory=dict)  # chain → v1 seqs
    raw_keys: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)  # matters whose hold covers the customer
    live_keys: list[str] = field(default_factory=list)
    destroyed_keys: list[str] = field(default_factory=list)

    def blockers(self, *, keep_raw: bool) -> list[str]:
        """Why an erasure must not start; empty when it may."""
        reasons = []
        if self.holds:
            reasons.append(
                f"customer {self.customer} is under legal hold ({', '.join(self.holds)}): an "
                "erasure would destroy held evidence; release the hold first if the matter allows"
            )
        if self.plaintext:
            where = "; ".join(
                f"chain {chain} seq {_ranges(seqs)}"
                for chain, seqs in sorted(self.plaintext.items())
            )
            count = sum(len(seqs) for seqs in self.plaintext.values())
            reasons.append(
                f"{count} record(s) of customer {self.customer} were sealed before this archive "
                f"encrypted personal content (record version 1: {where}); their text cannot be "
                "shredded, only disposed of with their segments at the end of retention"
            )
        if self.raw_keys and not keep_raw:
            reasons.append(
                f"{len(self.raw_keys)} raw landing object(s) hold this customer's deliveries as "
                f"received (first: {self.raw_keys[0]}); they are evidence under Object Lock and "
                "are not encrypted. Pass --keep-raw to erase the sealed records anyway; the "
                "erasure record then names them as not erased, until disposition removes them"
            )
        if not self.records and not self.live_keys and not self.destroyed_keys:
            reasons.append(f"the archive holds no records and no data key of {self.customer}")
        return reasons


@dataclass(frozen=True)
class ErasureOutcome:
    plan: ErasurePlan
    destroyed: tuple[str, ...]  # key ids destroyed by this call
    sealed: Manifest | None
    purged: int  # search documents removed


class Eraser(AuditChainClient):
    """Plans and carries out erasures; seals each into the ``erasures`` chain."""

    @cached_property
    def catalog(self) -> ArchiveCatalog:
        return ArchiveCatalog(self.store)

    def plan(self, customer: str, keys: DataKeyStore) -> ErasurePlan:
        customer = normalise_customer(customer)
        plan = ErasurePlan(customer)
        plan.holds = sorted(
            hold.matter
            for hold in active_holds(read_register(self.store, self.verifying_trust)).values()
            if hold.active and _covers(hold, customer, self._chains_of(customer))
        )
        rows = self._rows(customer)
        versions = rows.column("record_version").to_pylist()
        chains = rows.column("chain_id").to_pylist()
        seqs = rows.column("seq").to_pylist()
        personal = [rows.column(name).to_pylist() for name in PERSONAL_FIELDS]
        counts: Counter[str] = Counter()
        for row, version in enumerate(versions):
            if version == PERSONAL_RECORD_VERSION:
                counts[chains[row]] += 1
            elif any(
                _has_content(name, values[row])
                for name, values in zip(PERSONAL_FIELDS, personal, strict=True)
            ):
                plan.plaintext.setdefault(chains[row], []).append(seqs[row])
        plan.records = dict(sorted(counts.items()))
        plan.raw_keys = sorted({k for k in rows.column("raw_key").to_pylist() if k})
        live = keys.live_key(customer)
        plan.live_keys = [live.key_id] if live is not None else []
        plan.destroyed_keys = keys.destroyed(customer)
        return plan

    def erase(
        self,
        customer: str,
        keys: DataKeyStore,
        *,
        reason: str,
        who: str,
        now_ms: int,
        keep_raw: bool = False,
        purge: Sequence[Callable[[str], int]] = (),
    ) -> ErasureOutcome:
        """Refuse (:class:`ErasureError`) or destroy the keys, seal, and purge derived data."""
        if not reason.strip():
            raise InvalidArgumentError("--reason is required: say which request this honours")
        plan = self.plan(customer, keys)
        blockers = plan.blockers(keep_raw=keep_raw)
        if blockers:
            raise ErasureError(
                "erasure refused, nothing was destroyed:\n  - " + "\n  - ".join(blockers)
            )
        destroyed = tuple(keys.destroy(plan.customer, reason=reason))
        key_ids = sorted(set(plan.destroyed_keys) | set(destroyed))
        detail = {
            "v": DETAIL_VERSION,
            "customer": plan.customer,
            "key_ids": key_ids,
            "records": plan.records,
            "reason": reason,
            "who": who,
            "not_erased": (
                {
                    "raw": plan.raw_keys,
                    "why": "raw deliveries are evidence kept as received under Object Lock; "
                    "disposition removes them when their retention ends",
                }
                if plan.raw_keys
                else {}
            ),
        }
        sealed = self._seal(plan.customer, detail, now_ms=now_ms)
        purged = sum(purge_one(plan.customer) for purge_one in purge)
        return ErasureOutcome(plan, destroyed, sealed, purged)

    # -- reading ------------------------------------------------------------------------------

    def _conversation_segments(self) -> list[Segment]:
        self.catalog.refresh()
        return [s for s in self.catalog.segments() if s.chain_id not in OVERSIGHT_CHAINS]

    def _rows(self, customer: str) -> pa.Table:
        segments = self._conversation_segments()
        segments = self.catalog.customer_segments(customer, segments) if segments else []
        if not segments:
            return RECORD_SCHEMA.empty_table().select(list(_COLUMNS))
        wanted = ds.field("customer_id") == customer
        return self.catalog.dataset(segments).to_table(columns=list(_COLUMNS), filter=wanted)

    def _chains_of(self, customer: str) -> set[str]:
        rows = self._rows(customer)
        return set(pc.unique(rows.column("chain_id")).to_pylist()) if rows.num_rows else set()

    # -- sealing ------------------------------------------------------------------------------

    def _seal(self, customer: str, detail: dict[str, Any], *, now_ms: int) -> Manifest:
        text = orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()
        record = Record(
            chain_id=ERASURES_CHAIN,
            record_id=stable_id(ERASURES_CHAIN, customer, now_ms, text),
            kind=Kind.ERASURE.value,
            origin=Origin.AUDITOR.value,
            direction=Direction.NONE.value,
            event_time=now_ms,
            received_time=now_ms,
            customer_id=customer,
            status="erased",
            detail=text,
        )
        writer = AuditChainWriter(
            self.store,
            ERASURES_CHAIN,
            signer=self.signer,
            archive_name=self.archive_name,
            what="erasure register",
            policy=self.policy,
            trust=self.trust,
        )
        return writer.append(record)


def read_erasures(store: Any) -> list[dict[str, Any]]:
    """Every sealed erasure's detail, in seq order (for listings and tests)."""
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    segments = catalog.segments(chains=[ERASURES_CHAIN])
    if not segments:
        return []
    table = catalog.dataset(segments).to_table(columns=["seq", "detail"]).sort_by("seq")
    return [orjson.loads(text) for text in table.column("detail").to_pylist()]


def _covers(hold: Hold, customer: str, chains: set[str]) -> bool:
    for scope in hold.scopes:
        held_customer = scope.get("customer")
        if held_customer is not None and normalise_customer(str(held_customer)) == customer:
            return True
        if scope.get("chain") in chains:
            return True
    return False


def _has_content(name: str, value: Any) -> bool:
    """Whether a version-1 field carries personal content (an empty detail does not)."""
    if value is None:
        return False
    return not (name == "detail" and value in ("", "{}"))


def _ranges(seqs: Sequence[int]) -> str:
    ordered = sorted(seqs)
    parts, start, prev = [], ordered[0], ordered[0]
    for seq in ordered[1:]:
        if seq != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = seq
        prev = seq
    parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)
