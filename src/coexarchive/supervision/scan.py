"""Scanning archived messages with a sealed policy version and sealing what they hit.

A scan reads every message record (inbound, echoes, Cloud API sends, history, edits) of the
business chains in the window, checking each segment against its manifest's SHA-256 and each row
against its leaf hash, and matches its ``text`` (body or caption) and its document name
(``detail.media.filename``) with the policy's lexicon, its current flags (its own, or those of
its latest ``assessment``) with the flag rules, and its record id with the sample rules.

Each (policy version, rule, message) seals at most one ``hit`` record: its id derives from
exactly those, and a scan leaves out ids the ``reviews`` chain already holds, so scanning again
(or an overlapping window) adds only what is new. The scan's counts are sealed with the hits as
a ``review`` record of action ``scan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from coexarchive.errors import FormatError
from coexarchive.export.holds import INTERNAL_CHAINS
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind, Origin, Record
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.personal import DataKey, KeyLookup, open_if_sealed
from coexarchive.segments import Manifest, read_segment
from coexarchive.store.base import sha256_hex
from coexarchive.supervision.hit_sealing import seal_hit_detail
from coexarchive.supervision.library import SealedPolicy
from coexarchive.supervision.matcher import Match, Matcher
from coexarchive.supervision.register import (
    POLICIES_CHAIN,
    REVIEWS_CHAIN,
    ChainRow,
    Sealer,
    chain_rows,
    detail_text,
    event_id,
    internal_record,
)

__all__ = [
    "MESSAGE_KINDS",
    "SUPERVISION_CHAINS",
    "IngestRow",
    "MessageRow",
    "ScanOutcome",
    "ingest_rows",
    "iso_ms",
    "message_fields",
    "message_fields_of",
    "read_messages",
    "rescan",
]

MESSAGE_KINDS: Final = (
    Kind.MESSAGE.value,
    Kind.ECHO.value,
    Kind.OUTBOUND.value,
    Kind.HISTORY_MESSAGE.value,
    Kind.MESSAGE_EDIT.value,
)
SUPERVISION_CHAINS: Final = frozenset({POLICIES_CHAIN, REVIEWS_CHAIN})
_SKIPPED_CHAINS: Final = INTERNAL_CHAINS | SUPERVISION_CHAINS
_COLUMNS: Final = (
    "chain_id",
    "seq",
    "record_id",
    "kind",
    "event_time",
    "customer_id",
    "text",
    "detail",
    "flags",
    "leaf_hash",
    "ref_record_id",
)


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class MessageRow:
    chain_id: str
    seq: int
    record_id: str
    kind: str
    event_time: int
    customer_id: str | None
    text: str | None
    detail: str
    flags: tuple[str, ...]
    leaf_hash: bytes


def message_fields(row: MessageRow) -> dict[str, str]:
    """What a lexicon reads of a message: its text (body or caption) and its document name."""
    return message_fields_of(row.text, row.detail)


def message_fields_of(text: str | None, detail: str) -> dict[str, str]:
    """The fields a lexicon reads, from a record's ``text`` and ``detail`` JSON."""
    fields: dict[str, str] = {}
    if text:
        fields["text"] = text
    if '"filename"' in detail:
        try:
            media = orjson.loads(detail).get("media")
        except orjson.JSONDecodeError:
            media = None
        name = media.get("filename") if isinstance(media, dict) else None
        if isinstance(name, str) and name:
            fields["filename"] = name
    return fields


def _checked_segment(catalog: ArchiveCatalog, manifest: Manifest) -> pa.Table:
    data = catalog.store.get(manifest.segment.key)
    if sha256_hex(data) != manifest.segment.sha256:
        raise FormatError(
            f"{manifest.segment.key}: segment differs from its manifest; the archive may have "
            "been altered: run `coexarchive verify` before scanning"
        )
    table = read_segment(data, key=manifest.segment.key)
    leaves = [bytes(v) for v in table.column("leaf_hash").to_pylist()]
    if recompute_leaf_hashes(table) != leaves:
        raise FormatError(
            f"{manifest.segment.key}: a record does not match its seal; run `coexarchive verify`"
        )
    return table


@dataclass(frozen=True)
class IngestRow:
    """A ``hit`` or ``review`` record that ingest sealed in a business chain."""

    chain_id: str
    row: ChainRow


def ingest_rows(catalog: ArchiveCatalog, chains: Sequence[str] | None = None) -> list[IngestRow]:
    """Every hit and scan record ingest sealed in the business chains, each checked against its
    segment's manifest and its leaf hash (only segments whose manifest counts such kinds)."""
    wanted = pa.array([Kind.HIT.value, Kind.REVIEW.value])
    found: list[IngestRow] = []
    for chain_id in business_chains(catalog, chains):
        for manifest in catalog.manifests(chain_id):
            if not (manifest.kinds.get(Kind.HIT.value) or manifest.kinds.get(Kind.REVIEW.value)):
                continue
            table = _checked_segment(catalog, manifest)
            table = table.filter(pc.is_in(table["kind"], wanted))
            found += [
                IngestRow(chain_id, row)
                for row in chain_rows(table, chain_id, manifest.segment.key)
            ]
    return found


def business_chains(catalog: ArchiveCatalog, chains: Sequence[str] | None = None) -> list[str]:
    catalog.refresh()
    present = [c for c in catalog.chains() if c not in _SKIPPED_CHAINS]
    return [c for c in present if chains is None or c in chains]


def read_messages(
    catalog: ArchiveCatalog,
    chain_id: str,
    *,
    since: int | None = None,
    until: int | None = None,
    customer: str | None = None,
    keys: KeyLookup | None = None,
) -> tuple[list[MessageRow], dict[str, tuple[str, ...]]]:
    """The chain's message records in the window, and every record's latest reassessed flags.

    Messages sealed with their personal content encrypted are opened with ``keys`` (an erased
    customer's read ``[erased]`` and match nothing); without keys such messages are refused, so
    a scan never passes over ciphertext as if it held no words.
    """
    messages: list[MessageRow] = []
    assessed: dict[str, tuple[int, tuple[str, ...]]] = {}
    for manifest in catalog.manifests(chain_id):
        has_assessments = manifest.kinds.get(Kind.ASSESSMENT.value, 0) > 0
        in_window = not (
            (since is not None and manifest.max_event_time < since)
            or (until is not None and manifest.min_event_time >= until)
        )
        if not in_window and not has_assessments:
            continue
        table = _checked_segment(catalog, manifest).select(list(_COLUMNS))
        if has_assessments:
            for row in table.filter(pc.equal(table["kind"], Kind.ASSESSMENT.value)).to_pylist():
                ref = row["ref_record_id"]
                if ref is not None and row["seq"] > assessed.get(ref, (-1, ()))[0]:
                    assessed[ref] = (row["seq"], tuple(row["flags"] or ()))
        if not in_window:
            continue
        wanted = pc.is_in(table["kind"], pa.array(MESSAGE_KINDS))
        if customer is not None:
            wanted = pc.and_(wanted, pc.equal(table["customer_id"], customer))
        for row in open_if_sealed(table.filter(wanted), keys).to_pylist():
            at = round(row["event_time"].timestamp() * 1000)
            if (since is not None and at < since) or (until is not None and at >= until):
                continue
            messages.append(
                MessageRow(
                    chain_id=row["chain_id"],
                    seq=int(row["seq"]),
                    record_id=row["record_id"],
                    kind=row["kind"],
                    event_time=at,
                    customer_id=row["customer_id"],
                    text=row["text"],
                    detail=row["detail"],
                    flags=tuple(row["flags"] or ()),
                    leaf_hash=bytes(row["leaf_hash"]),
                )
            )
    messages.sort(key=lambda m: m.seq)
    return messages, {ref: flags for ref, (_, flags) in assessed.items()}


@dataclass
class ChainCounts:
    scanned: int = 0
    hits: int = 0
    sampled: int = 0

    def to_json(self) -> dict[str, int]:
        return {"scanned": self.scanned, "hits": self.hits, "sampled": self.sampled}


@dataclass
class ScanOutcome:
    policy: SealedPolicy
    counts: dict[str, ChainCounts] = field(default_factory=dict)
    found: list[Record] = field(default_factory=list)  # every hit of this scan, new or not
    sealed: list[Record] = field(default_factory=list)  # the hits sealed by this scan
    manifest: Manifest | None = None

    @property
    def scanned(self) -> int:
        return sum(c.scanned for c in self.counts.values())


def _hit(
    sealed: SealedPolicy,
    match: Match,
    row: MessageRow,
    flags: Sequence[str],
    who: str,
    now: int,
    key: DataKey | None = None,
) -> Record:
    policy = sealed.policy
    detail: dict[str, Any] = {
        "policy": policy.name,
        "version": policy.version,
        "policy_seq": sealed.seq,
        "rule": match.rule,
        "rule_type": match.rule_type,
        "chain": row.chain_id,
        "seq": row.seq,
        "record_id": row.record_id,
        "message_kind": row.kind,
        "message_time": iso_ms(row.event_time),
        "leaf_hash": row.leaf_hash.hex(),
        "customer": row.customer_id,
        "spans": [span.to_json() for span in match.spans],
        "flags": list(match.flags),
        "found_by": who,
    }
    hit = internal_record(
        REVIEWS_CHAIN,
        Kind.HIT.value,
        ("hit", policy.name, policy.version, match.rule, row.record_id),
        detail,
        now_ms=now,
        origin=Origin.SYSTEM,
        ref_record_id=row.record_id,
        status=match.rule_type,
    )
    if key is None:
        return hit
    sealed_detail = seal_hit_detail(detail, key, hit.chain_id, hit.record_id)
    return dataclasses.replace(hit, detail=detail_text(sealed_detail))


def _matches(
    matcher: Matcher, rows: Sequence[MessageRow], assessed: Mapping[str, tuple[str, ...]]
) -> Iterator[tuple[MessageRow, tuple[str, ...], Match]]:
    for row in rows:
        flags = assessed.get(row.record_id, row.flags)
        for match in matcher.match(
            record_id=row.record_id,
            chain_id=row.chain_id,
            fields=message_fields(row),
            flags=flags,
        ):
            yield row, flags, match


def rescan(
    catalog: ArchiveCatalog,
    sealer: Sealer,
    sealed: SealedPolicy,
    *,
    who: str,
    now_ms: int,
    since: int | None = None,
    until: int | None = None,
    chains: Sequence[str] | None = None,
    keys: KeyLookup | None = None,
    hit_keys: Callable[[str], DataKey | None] | None = None,
) -> ScanOutcome:
    """Scan the window with ``sealed`` and seal the hits the ``reviews`` chain lacks.

    ``hit_keys(customer)`` gives a customer's live data key (a data-key store's ``live_key``):
    a hit on a customer who has one seals its customer and matched words under it.
    """
    matcher = Matcher(sealed.policy)
    outcome = ScanOutcome(sealed)
    # A hit ingest already sealed in the message's chain is the same hit (same id): not again.
    at_ingest = {
        found.row.record_id for found in ingest_rows(catalog, chains) if found.row.kind == Kind.HIT
    }
    for chain_id in business_chains(catalog, chains):
        counts = outcome.counts.setdefault(chain_id, ChainCounts())
        rows, assessed = read_messages(catalog, chain_id, since=since, until=until, keys=keys)
        counts.scanned = len(rows)
        for row, flags, match in _matches(matcher, rows, assessed):
            counts.hits += 1
            counts.sampled += match.rule_type == "sample"
            key = hit_keys(row.customer_id) if hit_keys and row.customer_id else None
            outcome.found.append(_hit(sealed, match, row, flags, who, now_ms, key))
    summary = {
        "action": "scan",
        "policy": sealed.policy.name,
        "version": sealed.policy.version,
        "since": iso_ms(since),
        "until": iso_ms(until),
        "chains": {chain: c.to_json() for chain, c in sorted(outcome.counts.items())},
        "who": who,
    }

    def build(rows: list[ChainRow]) -> list[Record]:
        known = {row.record_id for row in rows if row.kind == Kind.HIT} | at_ingest
        outcome.sealed = [hit for hit in outcome.found if hit.record_id not in known]
        detail = {**summary, "new_hits": len(outcome.sealed)}
        scan = internal_record(
            REVIEWS_CHAIN,
            Kind.REVIEW.value,
            event_id("scan", sealed.policy.name, sealed.policy.version, now_ms, detail=detail),
            detail,
            now_ms=now_ms,
            origin=Origin.SYSTEM,
            status="scan",
        )
        return [*outcome.sealed, scan]

    _, outcome.manifest = sealer.seal(REVIEWS_CHAIN, build)
    return outcome
