"""De-duplication across deliveries, runs and Meta's 7-day retry window.

The index is the archive itself: every committed segment has a record-id index object under
``dedup/v1/chain=<id>/date=<event date>/``. An event always maps to the same record id and the same
event time, so a later copy is looked up only in the indexes of its own event date (± one day, for
copies whose clocks disagree). Index objects count only when the manifest at their ``first_seq``
names them, that seq is committed, and the manifest continues from the chain hash the checkpoint
at that seq signs: a crashed run's leftovers, or a manifest put inside a committed segment by
someone with write access, never hide an event.

A second sighting of an event under another kind (a live message that also came in the history
import) becomes an ``observation`` record pointing at the first; an identical copy is dropped.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from coexarchive.errors import CoexArchiveError, ConfigError, FormatError, ObjectMissingError
from coexarchive.records import Kind, Record, stable_id
from coexarchive.seal.chain import genesis
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.segments import CHAIN_HASH_EXTENSION, Manifest, b64, read_index
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore

WINDOW_DAYS = 1


@dataclass
class Classified:
    """A batch split into what to seal and what was already there."""

    new: list[Record] = field(default_factory=list)
    observations: list[Record] = field(default_factory=list)
    duplicates: int = 0
    # The priority key of each observation's source record, to put them in priority order.
    _sources: list[_PriorityKey] = field(default_factory=list, repr=False, compare=False)

    @property
    def to_seal(self) -> list[Record]:
        return [*self.new, *self.observations]

    def in_priority_order(self) -> Classified:
        """The same split with ``new`` and ``observations`` in the order ``classify`` gives."""
        observations = [
            observation
            for _, observation in sorted(
                zip(self._sources, self.observations, strict=True), key=operator.itemgetter(0)
            )
        ]
        return Classified(
            new=sorted(self.new, key=_new_order),
            observations=observations,
            duplicates=self.duplicates,
            _sources=sorted(self._sources),
        )


_PriorityKey = tuple[int, str, int, str, str, int]
_record_id_of = operator.attrgetter("record_id")
_kind_of = operator.attrgetter("kind")
_event_time_of = operator.attrgetter("event_time")
_HISTORY = Kind.HISTORY_MESSAGE.value
_OBSERVATION = Kind.OBSERVATION.value


class DedupIndex:
    """Record ids (with their kinds) already sealed in one chain."""

    def __init__(
        self,
        store: ObjectStore,
        chain_id: str,
        *,
        committed_size: int,
        trust: TrustStore | None = None,
    ) -> None:
        """``committed_size``: the chain's size as its writer verified it. ``trust``: the keys
        whose checkpoints commit the chain, needed once anything is committed (fail closed)."""
        if committed_size > 0 and trust is None:
            raise ConfigError(
                f"chain {chain_id}: de-duplicating against {committed_size} committed records "
                "needs the trust store that verifies their checkpoints"
            )
        self.store = store
        self.chain_id = chain_id
        self.committed_size = committed_size
        self.trust = trust
        self.seen: dict[str, set[str]] = {}
        self._loaded: set[str] = set()
        # What the checkpoint at each seq where a segment starts signs (its chain-hash line).
        self._signed_heads: dict[int, tuple[str, ...]] = {}

    def load_for(self, records: Iterable[Record]) -> None:
        if self.committed_size == 0:
            return  # nothing committed: every index object would be skipped below, unread
        days = {event_time // layout.DAY_MS for event_time in map(_event_time_of, records)}
        wanted = {day + offset for day in days for offset in range(-WINDOW_DAYS, WINDOW_DAYS + 1)}
        dates = {layout.utc_date(day * layout.DAY_MS) for day in wanted}
        for day in sorted(dates - self._loaded):
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
            if manifest.record_index.key != key or not self._starts_a_segment(manifest):
                continue
            for record_id, kind in read_index(self.store.get(key), key=key):
                self.seen.setdefault(record_id, set()).add(kind)

    def _starts_a_segment(self, manifest: Manifest) -> bool:
        """Whether ``manifest`` continues from a signed checkpoint: the writer writes manifests
        only where a segment starts, but anyone with write access could put one at a seq inside
        a committed segment, naming an index of record ids to make genuine events look seen."""
        first = manifest.first_seq
        if manifest.key != layout.manifest_key(self.chain_id, first):
            return False
        if first == 0:
            return manifest.prev_chain_hash == genesis(self.chain_id)
        if first not in self._signed_heads:
            self._signed_heads[first] = self._signed_extensions(first, manifest.archive)
        # The head line a checkpoint carries, as resume and verify compare it.
        head = f"{CHAIN_HASH_EXTENSION} {b64(manifest.prev_chain_hash)}"
        return head in self._signed_heads[first]

    def _signed_extensions(self, size: int, archive: str) -> tuple[str, ...]:
        """The extensions the checkpoint of ``size`` signs; none if no trusted key signs one."""
        if self.trust is None:  # nothing committed (see __init__): no checkpoint to trust
            return ()
        try:
            note = self.store.get(layout.checkpoint_key(self.chain_id, size))
            checkpoint = open_checkpoint(
                note, self.trust, origin=checkpoint_origin(archive, self.chain_id)
            )
        except CoexArchiveError:  # missing, or not signed by a trusted key
            return ()
        return tuple(checkpoint.extensions)

    def classify(self, records: Sequence[Record], *, ordered: bool = True) -> Classified:
        """Split ``records``; deterministic whatever order they arrive in.

        Copies of one event are decided in priority order (live before history, then stable
        fields). With ``ordered=False`` the lists keep arrival order, for callers that sort them
        again (see :meth:`Classified.in_priority_order`); what they hold is the same.
        """
        self.load_for(records)
        result = Classified()
        kinds = set(map(_kind_of, records))
        if _OBSERVATION in kinds:
            # An incoming observation may carry the id of one this batch derives: decide every
            # record in one global priority order.
            self._decide(sorted(records, key=_priority), result)
            return result
        # Otherwise copies interact only through their own record id: decide each id's copies
        # in priority order and the (usual) single copies as they come.
        ids = list(map(_record_id_of, records))
        if len(set(ids)) == len(ids):
            self._decide(records, result)
        else:
            counts = Counter(ids)
            self._decide([r for r in records if counts[r.record_id] == 1], result)
            copies: dict[str, list[Record]] = {}
            for record in records:
                if counts[record.record_id] > 1:
                    copies.setdefault(record.record_id, []).append(record)
            for group in copies.values():
                self._decide(sorted(group, key=_priority), result)
        return result.in_priority_order() if ordered else result

    def _decide(self, records: Iterable[Record], result: Classified) -> None:
        seen = self.seen
        new = result.new
        for record in records:
            kinds = seen.get(record.record_id)
            if kinds is None:
                seen[record.record_id] = {record.kind}
                new.append(record)
                continue
            if record.kind in kinds or record.kind == Kind.OBSERVATION:
                result.duplicates += 1
                continue
            observation = observation_of(record)
            kinds.add(record.kind)
            if observation.record_id in seen:
                result.duplicates += 1
                continue
            seen[observation.record_id] = {observation.kind}
            result.observations.append(observation)
            result._sources.append(_priority(record))


def _priority(record: Record) -> _PriorityKey:
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


def _new_order(record: Record) -> str:
    # New records have distinct ids, so (history, record_id) orders them as _priority does.
    return ("1" if record.kind == _HISTORY else "0") + record.record_id


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
