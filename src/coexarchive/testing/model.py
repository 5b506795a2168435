"""What a simulation is: its configuration, its output, and the state it builds traffic from.

Same config, same bytes: all randomness comes from ``random.Random(config.seed)`` and the clock is
``config.start``.

Keys of :class:`ExpectedEvent` for events without a wamid (stable descriptions):

- contact change: ``<phone_number or user_id>:<action>:<metadata.timestamp>``
- consent event: ``<wa_id or user_id>:<value>:<timestamp>``
- template event: ``<field>:<message_template_id>:<event or new category>:<entry.time>``
- account event: ``<field>:<event>:<entry.time>``; history declined: ``history_declined:2593109``
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coexarchive.errors import ConfigError
from coexarchive.testing.content import _INBOUND_TYPES, _PEOPLE
from coexarchive.testing.graph import media_content

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
DEMO_APP_SECRET = b"coexarchive-demo-app-secret"
DAY = 86_400


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``start`` is the onboarding moment (UTC); history lies before it."""

    seed: int = 7
    customers: int = 20
    days: int = 7
    start: datetime = DEFAULT_START
    phone_number_id: str = "900000000000001"
    display_phone_number: str = "15550001111"
    waba_id: str = "800000000000001"
    app_secret: bytes = DEMO_APP_SECRET
    receiver_id: str = "sim"
    messages_per_customer_per_day: float = 3.0
    duplicate_rate: float = 0.02
    malformed_rate: float = 0.01
    batch_max: int = 50
    deliveries_per_object: int = 500
    bsuid_only_rate: float = 0.1
    include_history: bool = True


# The key of a history media follow-up's expected event: its wamid is its placeholder's.
FOLLOW_UP_SUFFIX = ":media_followup"


@dataclass(frozen=True)
class ExpectedEvent:
    """One distinct event the archive must hold exactly once."""

    kind: str  # a coexarchive.records.Kind value
    chain_id: str  # phone_number_id, or "waba-<waba_id>" for management events
    key: str  # wamid, "<wamid>:<status>", or a stable description (module docstring)


@dataclass
class Simulation:
    """The raw objects of a simulation and what the archive must make of them."""

    objects: list[tuple[str, bytes]]  # (raw landing key, object bytes) in write order
    expected: list[ExpectedEvent]  # every distinct event, once (duplicates not repeated)
    malformed: int  # deliveries or items deliberately malformed (must end in quarantine)
    duplicates: int  # re-sent deliveries
    # (raw key, line, what is wrong) for each malformed delivery or item, in landing order.
    malformed_at: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class _Customer:
    name: str
    wa_id: str | None  # None for BSUID-only users: Meta does not share their phone number
    user_id: str
    username: str | None
    language: str
    own_wamids: list[str] = field(default_factory=list)  # their messages, for edits and revokes
    business_wamids: list[str] = field(default_factory=list)  # business messages to them
    last_inbound: int = -(10**12)  # opens the 24-hour window
    opted_out: bool = False

    @property
    def customer_id(self) -> str:
        return self.wa_id or self.user_id

    def contact(self) -> dict[str, Any]:
        profile: dict[str, Any] = {"name": self.name}
        if self.username:
            profile["username"] = self.username
        contact: dict[str, Any] = {"profile": profile}
        if self.wa_id:
            contact["wa_id"] = self.wa_id
        contact["user_id"] = self.user_id
        return contact


@dataclass
class _Item:
    """One element of a webhook array (a message, a status, ...) or a whole management change."""

    at: int  # event time, unix seconds
    field: str  # webhook field
    array: str  # value array it lives in; "" for a management change carried whole
    chain_id: str
    payload: dict[str, Any]
    expected: ExpectedEvent | None
    customer: _Customer | None = None
    corruptible: bool = True


@dataclass
class _Delivery:
    at: int  # latest event time it carries
    received_at: int  # ms
    source: str
    body: bytes
    items: list[_Item]
    malformed: str | None = None  # what is wrong, if deliberately malformed
    resend: bool = False


class _SimulatorBase:
    """State and identities of a simulation; the traffic comes from the subclasses."""

    def __init__(self, config: SimulationConfig) -> None:
        _check_config(config)
        self.config = config
        # Reproducible test data, not secrets: a seeded PRNG is what is wanted here.
        self.rng = random.Random(config.seed)  # noqa: S311
        self.start = int(config.start.timestamp())
        self.end = self.start + config.days * DAY
        self.chain = config.phone_number_id
        self.waba_chain = f"waba-{config.waba_id}"
        self.items: list[_Item] = []
        self.outbound: list[_Delivery] = []
        self.special: list[_Delivery] = []  # deliveries shaped by hand (history, declined)
        self.history_expected: list[ExpectedEvent] = []
        self.wamid_counter = 0
        self.media_counter = 0
        self.type_queue = list(_INBOUND_TYPES)
        # A disconnection in the middle of the run: no live traffic while it lasts.
        middle = self.start + config.days * DAY // 2 + 11 * 3600
        self.gap = (middle, middle + 3 * 3600) if config.days >= 2 else (0, 0)
        self.customers = self._make_customers()

    # -- identities ----------------------------------------------------------------------------

    def _make_customers(self) -> list[_Customer]:
        customers: list[_Customer] = []
        seen: set[str] = set()
        for index in range(self.config.customers):
            name, calling, iso, language = _PEOPLE[index % len(_PEOPLE)]
            while True:
                wa_id = calling + "".join(
                    str(self.rng.randrange(10)) for _ in range(12 - len(calling))
                )
                if wa_id not in seen:
                    seen.add(wa_id)
                    break
            user_id = f"{iso}.{self.rng.randrange(10**18, 10**19)}"
            bsuid_only = self.rng.random() < self.config.bsuid_only_rate
            username = f"{name.split()[0].lower()}{index}" if bsuid_only else None
            customers.append(
                _Customer(
                    name=name,
                    wa_id=None if bsuid_only else wa_id,
                    user_id=user_id,
                    username=username,
                    language=language,
                )
            )
        return customers

    def wamid(self, customer: _Customer | None) -> str:
        self.wamid_counter += 1
        who = customer.wa_id or customer.user_id if customer else self.config.display_phone_number
        tail = f"{self.wamid_counter:08X}{self.rng.getrandbits(48):012X}"
        raw = who.encode() + b"\x15\x02\x00\x12\x18\x14" + tail.encode()
        return "wamid.HBgM" + base64.b64encode(raw).decode()

    def media(self, mime_type: str, **extra: Any) -> dict[str, Any]:
        self.media_counter += 1
        media_id = str(1900000000000000 + self.media_counter)
        # The draw is kept so that the rest of the simulation stays as it was; the hash is the
        # real one of the bytes the local Graph server serves for this id.
        self.rng.randbytes(32)
        content = media_content(media_id, mime_type)
        media: dict[str, Any] = {
            "id": media_id,
            "mime_type": mime_type,
            "sha256": base64.b64encode(hashlib.sha256(content).digest()).decode(),
        }
        media.update(extra)
        return media

    def in_gap(self, at: int) -> bool:
        return self.gap[0] <= at < self.gap[1]

    def add(self, item: _Item) -> None:
        self.items.append(item)

    def _metadata(self) -> dict[str, str]:
        return {
            "display_phone_number": self.config.display_phone_number,
            "phone_number_id": self.config.phone_number_id,
        }


def _envelope(
    waba_id: str,
    changes: Sequence[tuple[str, dict[str, Any]]],
    *,
    ensure_ascii: bool,
    time: int | None = None,
) -> bytes:
    entry: dict[str, Any] = {"id": waba_id}
    if time is not None:
        entry["time"] = time
    entry["changes"] = [{"field": name, "value": value} for name, value in changes]
    body = {"object": "whatsapp_business_account", "entry": [entry]}
    # Meta signs an escaped-unicode body; relays sometimes forward raw UTF-8. Both must verify.
    return json.dumps(body, ensure_ascii=ensure_ascii, separators=(",", ":")).encode("utf-8")


def _check_config(config: SimulationConfig) -> None:
    if config.start.tzinfo is None:
        raise ConfigError("simulation start must be timezone-aware (UTC)")
    if config.customers < 1 or config.days < 1:
        raise ConfigError("a simulation needs at least one customer and one day")
    if config.batch_max < 1 or config.deliveries_per_object < 1:
        raise ConfigError("batch_max and deliveries_per_object must be at least 1")
    for name in ("duplicate_rate", "malformed_rate", "bsuid_only_rate"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1")
    if config.messages_per_customer_per_day < 0:
        raise ConfigError("messages_per_customer_per_day must not be negative")
