"""De-duplication across deliveries, runs and Meta's 7-day retry window.

The index is the archive itself: every committed segment has a record-id index object under
``dedup/v1/chain=<id>/date=<event date>/``. An event always maps to the same record id and the same
event time, so a later copy is looked up only in the indexes of its own event date (± one day, for
copies whose clocks disagree). Index objects count only when the manifest at their ``first_seq``
names them, so a crashed run's leftovers never hide an event.

A second sighting of an event under another kind (a live message that also came in the history
import) becomes an ``observation`` record pointing at the first; an identical copy is dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import orjson

from coexarchive.errors import FormatError, ObjectMissingError
from coexarchive.records import Kind, Record, stable_id
from coexarchive.segments import Manifest, read_index
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore

WINDOW_DAYS = 1


@dataclass
class Classified:
    """A batch split into what to seal and what was already there."""

    new: list[Record] = field(default_factory=list)
    observations: list[Record] = field(default_factory=list)
    duplicates: int = 0

    @property
    def to_seal(self) -> list[Record]:
        return [*self.new, *self.observations]


class DedupIndex:
    """Record ids (with their kinds) already sealed in one chain."""

    def __init__(self, store: ObjectStore, chain_id: str, *, committed_size: int) -> None:
        self.store = store
        self.chain_id = chain_id
        self.committed_size = committed_size
        self.seen: dict[str, set[str]] = {}
        self._loaded: set[str] = set()

    def load_for(self, records: Iterable[Record]) -> None:
        dates = {layout.utc_date(r.event_time) for r in records}
        wanted: set[str] = set()
        for day in dates:
            base = date.fromisoformat(day)
            for offset in range(-WINDOW_DAYS, WINDOW_DAYS + 1):
                wanted.add((base + timedelta(days=offset)).isoformat())
        for day in sorted(wanted - self._loaded):
            self._load_date(day)
            self._loaded.add(day)

    def _load_date(self, day: str) -> None:
        prefix = f"{layout.DEDUP_PREFIX}v1/chain={self.chain_id}/date={day}/"
        for key in self.store.list(prefix):
            first_seq = int(key.rsplit("/", 1)[-1].split("-", 1)[0])
            if first_seq >= self.committed_size:
                continue
            try:
                manifest_key = layout.manifest_key(self.chain_id, first_seq)
                manifest = Manifest.from_bytes(self.store.get(manifest_key), key=manifest_key)
            except ObjectMissingError:
                continue  # a leftover of a run that crashed before its manifest
            if manifest.record_index.key != key:
                continue
            for record_id, kind in read_index(self.store.get(key), key=key):
                self.seen.setdefault(record_id, set()).add(kind)

    def classify(self, records: Sequence[Record]) -> Classified:
        """Split ``records``; deterministic whatever order they arrive in."""
        self.load_for(records)
        result = Classified()
        ordered = sorted(records, key=_priority)
        for record in ordered:
            kinds = self.seen.get(record.record_id)
            if kinds is None:
                self.seen[record.record_id] = {record.kind}
                result.new.append(record)
                continue
            if record.kind in kinds or record.kind == Kind.OBSERVATION:
                result.duplicates += 1
                continue
            observation = observation_of(record)
            kinds.add(record.kind)
            if observation.record_id in self.seen:
                result.duplicates += 1
                continue
            self.seen[observation.record_id] = {observation.kind}
            result.observations.append(observation)
        return result


def _priority(record: Record) -> tuple[int, str, int, str, str, int]:
    # Live copies win over history copies so the sealed message is the live one when both come in
    # one batch; then stable fields break ties.
    history = 1 if record.kind == Kind.HISTORY_MESSAGE else 0
    return (
        history,
        record.record_id,
        record.event_time,
        record.kind,
        record.raw_key or "",
        record.raw_line if record.raw_line is not None else -1,
    )


def observation_of(record: Record) -> Record:
    """A record saying ``record``'s event was seen again, as ``record.kind``."""
    detail = {"observed_kind": record.kind, "observed_origin": record.origin}
    try:
        detail["observed"] = orjson.loads(record.detail)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"record {record.record_id}: detail is not JSON") from exc
    return dataclasses.replace(
        record,
        record_id=stable_id(record.chain_id, "observation", record.record_id, record.kind),
        kind=Kind.OBSERVATION.value,
        ref_record_id=record.record_id,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
    )
