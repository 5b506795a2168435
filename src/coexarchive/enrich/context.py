"""What enrichment needs from earlier runs of a chain, read from its sealed Parquet segments.

Only what a signed checkpoint commits is read: the manifests of seqs below the chain's committed
size (given by the caller who verified it, else read from the last checkpoint that verifies
against the trust store), which must tile the chain from seq 0, and segments whose bytes match
their manifest. Anything past that (a crashed run's leftovers, or objects someone with write
access to the bucket put there) never reaches enrichment, so it can never shape what is sealed.

Manifests say which kinds a segment holds and which event times it spans, so only segments with
consent or template events (kept all-time) and segments overlapping the batch's look-back
windows (inbound messages for 24 hours, echoes and captured wamids for 30 days) are read, and
only a few columns of them. Every manifest is read, one per segment: a chain's planning cost
grows with its number of segments (``bench/history.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coexarchive._internal.fetch import fetch_in_order
from coexarchive.enrich.consent import ConsentEvent, consent_event_of
from coexarchive.enrich.flags import CAPTURED_KINDS, EnrichConfig
from coexarchive.enrich.templates import TemplateEvent, template_event_of
from coexarchive.enrich.window import InboundEvent, inbound_event_of
from coexarchive.errors import FormatError
from coexarchive.records import Direction, Kind, Origin, Record
from coexarchive.resume import committed_manifests
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.personal import KeyLookup, open_if_sealed
from coexarchive.segments import Manifest
from coexarchive.store.base import ObjectStore, sha256_hex

__all__ = ["ChainContext", "committed_manifests", "load_context", "read_records", "waba_chain"]

_CONSENT: Final = Kind.CONSENT_EVENT.value
_BUSINESS_APP: Final = Origin.BUSINESS_APP.value
_OUTBOUND: Final = Direction.OUTBOUND.value
_TEMPLATE: Final = Kind.TEMPLATE_EVENT.value
_INBOUND_KINDS: Final = frozenset({Kind.MESSAGE.value, Kind.UNSUPPORTED.value})
_ECHO_KINDS: Final = frozenset(
    {Kind.ECHO.value, Kind.MESSAGE_EDIT.value, Kind.MESSAGE_REVOKE.value}
)
# Columns enough to rebuild the records the ledger, registry and indexes read.
_COLUMNS: Final = (
    "chain_id", "record_id", "kind", "origin", "direction", "event_time", "waba_id",
    "customer_id", "customer_wa_id", "customer_user_id", "msg_type", "status",
    "template_name", "template_language", "template_category", "template_status",
    "consent_state",
)  # fmt: skip


def waba_chain(waba_id: str) -> str:
    return f"waba-{waba_id}"


@dataclass
class ChainContext:
    """Consent and template events, inbound and echo times, captured wamids: one chain's past."""

    chain_id: str
    waba_id: str | None = None
    consent_events: list[ConsentEvent] = field(default_factory=list)
    template_events: list[TemplateEvent] = field(default_factory=list)
    inbound: list[InboundEvent] = field(default_factory=list)
    echo_times: list[int] = field(default_factory=list)
    captured: set[str] = field(default_factory=set)

    def add(self, records: Iterable[Record]) -> None:
        """Take what ``records`` tell (any kind; others are ignored)."""
        # Each *_event_of reads one kind only: ask the one a record's kind can answer.
        for record in records:
            kind = record.kind
            if kind == _CONSENT:
                if (consent := consent_event_of(record)) is not None:
                    self.consent_events.append(consent)
            elif kind == _TEMPLATE:
                if (template := template_event_of(record)) is not None:
                    self.template_events.append(template)
            elif kind in _INBOUND_KINDS and (inbound := inbound_event_of(record)) is not None:
                self.inbound.append(inbound)
            if record.origin == _BUSINESS_APP and record.direction == _OUTBOUND:  # is_echo
                self.echo_times.append(record.event_time)
            if kind in CAPTURED_KINDS:
                self.captured.add(record.record_id)

    def add_side_events(self, records: Iterable[Record]) -> None:
        """Template events of the current run, from any chain: only those of this chain's WABA."""
        if self.waba_id is None:
            return
        own = waba_chain(self.waba_id)
        self.add(
            r
            for r in records
            if r.kind == _TEMPLATE and (r.chain_id == own or r.waba_id == self.waba_id)
        )


def load_context(
    store: ObjectStore,
    chain_id: str,
    *,
    since_ms: int,
    until_ms: int,
    trust: TrustStore,
    waba_id: str | None = None,
    config: EnrichConfig | None = None,
    committed_size: int | None = None,
) -> ChainContext:
    """The chain's sealed past that enriching records with event times in [since, until] needs.

    ``waba_id`` names the WABA whose chain holds the templates; when None it is looked up in the
    chain's own records (the first non-null ``waba_id`` found). ``committed_size``: the chain's
    committed size when the caller has just verified it (0: no past to list); else it is read
    from the chain's last checkpoint that verifies against ``trust``, as the WABA chain's is.
    """
    config = config or EnrichConfig()
    manifests = (
        []
        if committed_size == 0
        else committed_manifests(store, chain_id, trust=trust, committed_size=committed_size)
    )
    context = ChainContext(chain_id, waba_id)
    windows = (
        (_INBOUND_KINDS, since_ms - config.window_ms),
        (_ECHO_KINDS, since_ms - config.echo_lookback_ms),
        (CAPTURED_KINDS, since_ms - config.status_lookback_ms),
    )
    wanted_of: list[tuple[Manifest, set[str]]] = []
    for manifest in manifests:
        kinds = {_CONSENT, _TEMPLATE} & set(manifest.kinds)
        for wanted, start in windows:
            if manifest.max_event_time >= start and manifest.min_event_time <= until_ms:
                kinds |= wanted & set(manifest.kinds)
        if kinds:
            wanted_of.append((manifest, kinds))
    for records in fetch_in_order(lambda item: _read(store, *item), wanted_of):
        context.add(records)
    for manifest in manifests:
        if context.waba_id is not None:
            break
        context.waba_id = _waba_of(store, manifest)
    if context.waba_id is None:
        context.waba_id = config.waba_ids.get(chain_id)
    if context.waba_id is not None and waba_chain(context.waba_id) != chain_id:
        templates = [
            manifest
            for manifest in committed_manifests(store, waba_chain(context.waba_id), trust=trust)
            if _TEMPLATE in manifest.kinds
        ]
        for records in fetch_in_order(
            lambda manifest: _read(store, manifest, {_TEMPLATE}), templates
        ):
            context.add(records)
    return context


def _read(store: ObjectStore, manifest: Manifest, kinds: set[str]) -> list[Record]:
    """Rows of ``kinds`` from a segment, with the few columns enrichment reads."""
    key = manifest.segment.key
    table = _table(_segment_bytes(store, manifest), key, _COLUMNS)
    table = table.filter(pc.is_in(table.column("kind"), value_set=pa.array(sorted(kinds))))
    return _records(table)


def _waba_of(store: ObjectStore, manifest: Manifest) -> str | None:
    """The WABA id webhook records of a segment carry (outbound captures carry none)."""
    key = manifest.segment.key
    column = _table(_segment_bytes(store, manifest), key, ("waba_id",)).column("waba_id")
    column = column.drop_null()
    return str(column[0].as_py()) if len(column) else None


def _segment_bytes(store: ObjectStore, manifest: Manifest) -> bytes:
    """The segment a committed manifest names, refused unless its bytes are the ones named."""
    key = manifest.segment.key
    data = store.get(key)
    if sha256_hex(data) != manifest.segment.sha256:
        raise FormatError(
            f"{key}: segment of chain {manifest.chain_id} differs from its manifest: the "
            "archive may have been altered; run `coexarchive verify`"
        )
    return data


def _table(data: bytes, key: str, columns: Sequence[str] | None) -> pa.Table:
    try:
        table = pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise FormatError(f"{key}: not a readable record segment ({exc})") from exc
    return table


def _records(table: pa.Table) -> list[Record]:
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns[name] = column.to_pylist()
    rows = []
    for index in range(table.num_rows):
        values = {name: columns[name][index] for name in columns}
        if "flags" in values:
            values["flags"] = tuple(values["flags"] or ())
        values.pop("record_version", None)
        values.pop("seq", None)
        values.pop("leaf_hash", None)
        values.pop("chain_hash", None)
        rows.append(Record(**values))
    return rows


def read_records(
    store: ObjectStore,
    chain_id: str,
    *,
    kinds: set[str],
    since_ms: int,
    until_ms: int,
    trust: TrustStore,
    keys: KeyLookup | None = None,
) -> list[tuple[int, Record]]:
    """Full sealed records of ``kinds`` with event time in [since, until), with their ``seq``,
    from the chain's committed segments (:func:`committed_manifests`); personal fields sealed
    encrypted are opened with ``keys`` (refused without them)."""
    found: list[tuple[int, Record]] = []
    for manifest in committed_manifests(store, chain_id, trust=trust):
        if not kinds & set(manifest.kinds):
            continue
        if manifest.max_event_time < since_ms or manifest.min_event_time >= until_ms:
            continue
        key = manifest.segment.key
        table = _table(_segment_bytes(store, manifest), key, None)
        mask = pc.is_in(table.column("kind"), value_set=pa.array(sorted(kinds)))
        table = open_if_sealed(table.filter(mask), keys)
        seqs = table.column("seq").to_pylist()
        for seq, record in zip(seqs, _records(table), strict=True):
            if since_ms <= record.event_time < until_ms:
                found.append((int(seq), record))
    found.sort(key=lambda item: item[0])
    return found
