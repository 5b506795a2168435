"""The 24-hour customer-service window and the business app's echo activity, per chain.

A window is opened, or refreshed, by every live inbound message from the customer: ``message`` (or
an ``unsupported`` message type) with origin ``customer``. App echoes, history imports, system
messages, edits and statuses neither open nor extend it.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from coexarchive.enrich.consent import customer_keys
from coexarchive.records import Direction, Kind, Origin, Record

__all__ = ["DAY_MS", "EchoIndex", "InboundEvent", "InboundIndex", "inbound_event_of", "is_echo"]

DAY_MS: Final = 86_400_000
_OPENING_KINDS: Final = frozenset({Kind.MESSAGE.value, Kind.UNSUPPORTED.value})
_CUSTOMER: Final = Origin.CUSTOMER.value
_BUSINESS_APP: Final = Origin.BUSINESS_APP.value
_INBOUND: Final = Direction.INBOUND.value
_OUTBOUND: Final = Direction.OUTBOUND.value


@dataclass(frozen=True, slots=True)
class InboundEvent:
    record_id: str
    keys: tuple[str, ...]
    event_time: int


class _UnfrozenInbound:
    """``InboundEvent``'s slots without its frozen ``__setattr__`` (as ``records.Record``)."""

    __slots__ = InboundEvent.__slots__


_generated_inbound_init = InboundEvent.__init__
_set_class = object.__setattr__


def _init_inbound(
    self: InboundEvent, record_id: str, keys: tuple[str, ...], event_time: int
) -> None:
    """``InboundEvent``'s dataclass ``__init__`` at a third of the cost: one per inbound text."""
    if type(self) is not InboundEvent:
        _generated_inbound_init(self, record_id, keys, event_time)
        return
    event: Any = self
    _set_class(event, "__class__", _UnfrozenInbound)
    event.record_id = record_id
    event.keys = keys
    event.event_time = event_time
    event.__class__ = InboundEvent


setattr(InboundEvent, "__init__", _init_inbound)  # noqa: B010 - mypy refuses assigning a method


def inbound_event_of(record: Record) -> InboundEvent | None:
    """The window-opening event of a record, if it is a live customer message."""
    if (
        record.kind in _OPENING_KINDS
        and record.origin == _CUSTOMER
        and record.direction == _INBOUND
    ):
        keys = customer_keys(record)
        if keys:
            return InboundEvent(record.record_id, keys, record.event_time)
    return None


def is_echo(record: Record) -> bool:
    """An app-sent message seen live (``echo``, or an app edit/revoke)."""
    return record.origin == _BUSINESS_APP and record.direction == _OUTBOUND


_event_order = operator.attrgetter("event_time", "record_id")


class InboundIndex:
    """Inbound message times per customer identifier."""

    def __init__(self, events: Iterable[InboundEvent] = ()) -> None:
        # Indexed on first use: a batch without Cloud API sends never asks.
        self._pending: list[InboundEvent] | None = list(events)
        self._events: dict[str, list[InboundEvent]] = {}
        self._times: dict[str, list[int]] = {}

    def _index(self) -> None:
        by_key: dict[str, dict[str, InboundEvent]] = {}
        for event in self._pending or ():
            for key in event.keys:
                by_key.setdefault(key, {})[event.record_id] = event
        self._events = {
            key: sorted(found.values(), key=_event_order) for key, found in by_key.items()
        }
        self._times = {key: [e.event_time for e in found] for key, found in self._events.items()}
        self._pending = None

    def last_at_or_before(self, keys: Sequence[str], at: int) -> InboundEvent | None:
        if self._pending is not None:
            self._index()
        best: InboundEvent | None = None
        for key in keys:
            times = self._times.get(key)
            if not times:
                continue
            end = bisect.bisect_right(times, at)
            if end and (best is None or times[end - 1] > best.event_time):
                best = self._events[key][end - 1]
        return best


class EchoIndex:
    """When the business app was last seen sending on the chain."""

    def __init__(self, times: Iterable[int] = ()) -> None:
        self._times = sorted(set(times))

    def last_at_or_before(self, at: int) -> int | None:
        end = bisect.bisect_right(self._times, at)
        return self._times[end - 1] if end else None
