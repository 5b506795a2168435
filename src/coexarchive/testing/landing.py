"""From items to deliveries: batching, Meta's quirks, signing and landing in the raw format."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from coexarchive.errors import ConfigError
from coexarchive.raw import (
    Delivery,
    decode_landing,
    encode_landing,
    landing_key,
    signature_header,
)
from coexarchive.testing.model import (
    DAY,
    ExpectedEvent,
    Simulation,
    SimulationConfig,
    _Delivery,
    _envelope,
    _Item,
)
from coexarchive.testing.simulator import _Simulator


def _batches(sim: _Simulator) -> list[_Delivery]:
    """Group time-ordered items into webhook bodies the way Meta batches them."""
    config, rng = sim.config, sim.rng
    items = sorted(sim.items, key=lambda item: item.at)
    deliveries: list[_Delivery] = []
    index = 0
    while index < len(items):
        first = items[index]
        size = 1
        if first.array and rng.random() < 0.15:
            size = rng.randrange(2, max(3, min(config.batch_max, 12) + 1))
            if rng.random() < 0.1:
                size = config.batch_max
        batch = [first]
        index += 1
        while (
            len(batch) < size
            and index < len(items)
            and items[index].field == first.field
            and items[index].array
        ):
            batch.append(items[index])
            index += 1
        deliveries.append(_webhook(sim, batch))
    return deliveries


def _webhook(sim: _Simulator, batch: list[_Item]) -> _Delivery:
    rng = sim.rng
    first = batch[0]
    at = max(item.at for item in batch)
    if first.array:
        arrays: dict[str, list[dict[str, Any]]] = {}
        contacts: dict[str, dict[str, Any]] = {}
        for item in batch:
            arrays.setdefault(item.array, []).append(item.payload)
            if item.customer is not None and first.array != "state_sync":
                contacts.setdefault(item.customer.user_id, item.customer.contact())
        changes = []
        for array, elements in arrays.items():
            value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": sim._metadata()}
            if contacts:
                value["contacts"] = list(contacts.values())
            value[array] = elements
            changes.append((first.field, value))
        body = _envelope(sim.config.waba_id, changes, ensure_ascii=rng.random() < 0.9)
    else:
        body = _envelope(
            sim.config.waba_id, [(first.field, first.payload)], ensure_ascii=True, time=first.at
        )
    # A little after the event, usually; sometimes minutes late, so arrival order differs.
    delay = rng.randrange(150, 3000) if rng.random() < 0.95 else rng.randrange(30_000, 1_200_000)
    return _Delivery(at, at * 1000 + delay, "webhook", body, batch)


_ITEM_DAMAGE = ("id is a list", "timestamp is an object", "text is a string", "id is missing")


def _damage(sim: _Simulator, deliveries: list[_Delivery]) -> int:
    """Malform some webhook deliveries: whole bodies, or one item inside a valid batch."""
    rng = sim.rng
    eligible = [
        delivery
        for delivery in deliveries
        if delivery.source == "webhook"
        and delivery.items
        and all(item.corruptible for item in delivery.items)
    ]
    # An exact share rather than a coin per delivery, so small simulations still get some.
    count = _share(sim.config.malformed_rate, len(eligible))
    for delivery in rng.sample(eligible, count):
        messages = [
            item
            for item in delivery.items
            if item.array in ("messages", "message_echoes") and item.payload.get("type") == "text"
        ]
        if messages and rng.random() < 0.5:
            victim = rng.choice(messages)
            damage = rng.choice(_ITEM_DAMAGE)
            _damage_item(victim.payload, damage)
            victim.expected = None
            rebuilt = _webhook(sim, delivery.items)
            delivery.body, delivery.malformed = rebuilt.body, f"one item: {damage}"
        else:
            delivery.body, delivery.malformed = _damage_body(rng, delivery.body)
            for item in delivery.items:
                item.expected = None
    return count


def _share(rate: float, population: int) -> int:
    """``rate`` of ``population``, rounded, and at least one when the rate is not zero."""
    if rate <= 0 or population == 0:
        return 0
    return min(population, max(1, round(rate * population)))


def _damage_item(payload: dict[str, Any], damage: str) -> None:
    if damage == "id is a list":
        payload["id"] = [payload["id"]]
    elif damage == "timestamp is an object":
        payload["timestamp"] = {"seconds": payload["timestamp"]}
    elif damage == "text is a string":
        payload["text"] = payload["text"]["body"]
    else:
        del payload["id"]


def _damage_body(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(4)
    if choice == 0:
        return body[: max(1, len(body) * 2 // 3)], "truncated JSON"
    if choice == 1:
        # Latin-1 bytes where UTF-8 belongs: the body is no longer valid JSON text.
        return body.replace(b'"object"', b'"obj\xe9ct\xff"', 1), "invalid UTF-8"
    document = json.loads(body)
    if choice == 2:
        document["entry"] = document["entry"][0]
        return json.dumps(
            document, separators=(",", ":")
        ).encode(), "entry is an object, not a list"
    for entry in document["entry"]:
        for change in entry["changes"]:
            change["value"].pop("metadata", None)
    return json.dumps(document, separators=(",", ":")).encode(), "metadata missing"


def _resend(sim: _Simulator, deliveries: list[_Delivery]) -> list[_Delivery]:
    """Meta's at-least-once delivery: the same body again, sometimes within the same second."""
    rng, copies = sim.rng, []
    eligible = [d for d in deliveries if d.source == "webhook" and not d.malformed]
    for delivery in rng.sample(eligible, _share(sim.config.duplicate_rate, len(eligible))):
        later = rng.randrange(0, 900) if rng.random() < 0.5 else rng.randrange(1000, 7_200_000)
        copies.append(
            _Delivery(
                delivery.at,
                delivery.received_at + later,
                "webhook",
                delivery.body,
                delivery.items,
                resend=True,
            )
        )
    return copies


def _land(
    deliveries: Sequence[_Delivery], config: SimulationConfig, first_seq: int
) -> tuple[list[tuple[str, bytes]], list[tuple[str, int, str]]]:
    """Number, sign and pack deliveries into landing objects, in arrival order."""
    objects: list[tuple[str, bytes]] = []
    malformed_at: list[tuple[str, int, str]] = []
    per_object = config.deliveries_per_object
    for offset in range(0, len(deliveries), per_object):
        group = deliveries[offset : offset + per_object]
        landed = [
            Delivery(
                config.receiver_id,
                first_seq + offset + line,
                delivery.received_at,
                delivery.source,
                _headers(config, delivery),
                delivery.body,
            )
            for line, delivery in enumerate(group)
        ]
        key = landing_key(config.receiver_id, landed[0].seq, landed[0].received_at)
        objects.append((key, encode_landing(landed)))
        malformed_at.extend((key, line, d.malformed) for line, d in enumerate(group) if d.malformed)
    return objects, malformed_at


def _headers(config: SimulationConfig, delivery: _Delivery) -> dict[str, str]:
    agent = "facebookexternalua" if delivery.source == "webhook" else "coexarchive-capture/1"
    return {
        "content-type": "application/json",
        "user-agent": agent,
        "x-hub-signature-256": signature_header(config.app_secret, delivery.body),
    }


def simulate(config: SimulationConfig) -> Simulation:
    """Generate the raw objects of one simulated business number, deterministically."""
    sim = _Simulator(config)
    sim.run()
    deliveries = _batches(sim) + sim.outbound + sim.special
    malformed = _damage(sim, deliveries)
    copies = _resend(sim, deliveries)
    ordered = sorted(deliveries + copies, key=lambda delivery: delivery.received_at)
    objects, malformed_at = _land(ordered, config, first_seq=0)
    expected = [*sim.history_expected]
    expected.extend(
        item.expected for delivery in deliveries for item in delivery.items if item.expected
    )
    _check_unique(expected)
    return Simulation(objects, expected, malformed, len(copies), malformed_at)


def _check_unique(expected: Sequence[ExpectedEvent]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for event in expected:
        identity = (event.kind, event.chain_id, event.key)
        if identity in seen:
            raise AssertionError(f"simulation produced {identity} twice")
        seen.add(identity)


def redelivery(
    sim: Simulation,
    config: SimulationConfig,
    *,
    days_later: int,
    count: int,
    first_seq: int | None = None,
) -> list[tuple[str, bytes]]:
    """Meta-style retries: ``count`` earlier webhook deliveries landed again ``days_later`` days on.

    Bodies and headers are byte-identical to the originals; keys and seqs are new, continuing after
    the simulation's last seq unless ``first_seq`` is given.
    """
    if days_later < 0 or count < 0:
        raise ConfigError("days_later and count must not be negative")
    bad = {(key, line) for key, line, _ in sim.malformed_at}
    candidates: list[Delivery] = []
    last_seq = -1
    for key, data in sim.objects:
        for raw_line in decode_landing(data, key=key):
            delivery = raw_line.delivery
            if delivery is None:
                continue
            last_seq = max(last_seq, delivery.seq)
            if delivery.source == "webhook" and (key, raw_line.line) not in bad:
                candidates.append(delivery)
    rng = random.Random(f"{config.seed}:redelivery:{days_later}:{count}")  # noqa: S311 - test data
    chosen = rng.sample(candidates, min(count, len(candidates)))
    shift = days_later * DAY * 1000
    retried = sorted(
        ((d.received_at + shift + rng.randrange(3_600_000), d) for d in chosen),
        key=lambda pair: pair[0],
    )
    seq = last_seq + 1 if first_seq is None else first_seq
    objects: list[tuple[str, bytes]] = []
    for offset in range(0, len(retried), config.deliveries_per_object):
        group = retried[offset : offset + config.deliveries_per_object]
        landed = [
            Delivery(
                config.receiver_id, seq + offset + line, received_at, "webhook", d.headers, d.body
            )
            for line, (received_at, d) in enumerate(group)
        ]
        objects.append(
            (
                landing_key(config.receiver_id, landed[0].seq, landed[0].received_at),
                encode_landing(landed),
            )
        )
    return objects
