"""Bulk mode: many small, valid events fast, for benchmarks."""

from __future__ import annotations

import json
import random

from coexarchive.errors import ConfigError
from coexarchive.raw import (
    Delivery,
    encode_landing,
    landing_key,
)
from coexarchive.testing.content import (
    _INBOUND,
)
from coexarchive.testing.landing import _headers
from coexarchive.testing.model import (
    SimulationConfig,
    _Delivery,
)

# JSON string contents, escaped as Meta escapes them.
_BULK_TEXTS = tuple(json.dumps(text)[1:-1] for texts in _INBOUND.values() for text in texts)
_BULK_MESSAGE = (
    '{"from":"%s","id":"wamid.HBgMBULK%012X","timestamp":"%d","type":"text","text":{"body":"%s"}}'
)
_BULK_STATUS = '{"id":"wamid.HBgMBIZ%012X","status":"%s","timestamp":"%d","recipient_id":"%s"}'
_BULK_HEAD = (
    '{"object":"whatsapp_business_account","entry":[{"id":"%s","changes":[{"field":"messages",'
    '"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"%s",'
    '"phone_number_id":"%s"},"%s":['
)
_BULK_TAIL = "]}}]}]}"


def bulk_objects(
    n_events: int,
    seed: int,
    events_per_object: int,
    *,
    events_per_delivery: int = 10,
    config: SimulationConfig | None = None,
) -> list[tuple[str, bytes]]:
    """Landing objects holding ``n_events`` valid text messages (70%) and statuses (30%).

    Bodies are filled from pre-rendered templates, so generation is fast; there are no quirks
    and no expected list. Each delivery carries ``events_per_delivery`` events of one kind.
    """
    if n_events < 0 or events_per_object < 1 or events_per_delivery < 1:
        raise ConfigError("n_events must not be negative; per-object and per-delivery counts >= 1")
    config = config or SimulationConfig(seed=seed, receiver_id="bulk")
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    start = int(config.start.timestamp())
    customers = [f"44770{rng.randrange(10**7):07d}" for _ in range(997)]
    heads = {
        array: (
            _BULK_HEAD
            % (config.waba_id, config.display_phone_number, config.phone_number_id, array)
        )
        for array in ("messages", "statuses")
    }
    statuses = ("sent", "delivered", "read")
    per_delivery = min(events_per_delivery, events_per_object)
    objects: list[tuple[str, bytes]] = []
    lines: list[Delivery] = []
    events_in_object = 0
    for seq, first in enumerate(range(0, n_events, per_delivery)):
        size = min(per_delivery, n_events - first)
        at = start + first // 20  # about 20 events a second
        if rng.random() < 0.7:
            parts = [
                _BULK_MESSAGE
                % (
                    customers[(first + i) % 997],
                    first + i,
                    at,
                    _BULK_TEXTS[(first + i) % len(_BULK_TEXTS)],
                )
                for i in range(size)
            ]
            head = heads["messages"]
        else:
            parts = [
                _BULK_STATUS
                % ((first + i) // 3, statuses[(first + i) % 3], at, customers[(first + i) % 997])
                for i in range(size)
            ]
            head = heads["statuses"]
        body = (head + ",".join(parts) + _BULK_TAIL).encode()
        received_at = at * 1000 + 250
        headers = _headers(config, _Delivery(at, received_at, "webhook", body, []))
        lines.append(Delivery(config.receiver_id, seq, received_at, "webhook", headers, body))
        events_in_object += size
        if events_in_object >= events_per_object:
            objects.append(_bulk_object(config.receiver_id, lines))
            lines, events_in_object = [], 0
    if lines:
        objects.append(_bulk_object(config.receiver_id, lines))
    return objects


def _bulk_object(receiver_id: str, lines: list[Delivery]) -> tuple[str, bytes]:
    return landing_key(receiver_id, lines[0].seq, lines[0].received_at), encode_landing(lines)
