"""Deterministic WhatsApp Coexistence traffic, landed in the raw format.

``simulate(config)`` plays one business number with its customers over a few days: inbound messages
of every catalogued type, Cloud API sends (outbound capture) and their statuses, app echoes with
edits and revokes, the onboarding history import, contact sync, template lifecycle, opt-outs,
account events; with Meta's quirks (duplicates, reordering, batching, BSUID-only users, string vs
int timestamps, malformed bodies). It returns the raw objects and the list of distinct events the
archive must end up holding, so an ingest test can check completeness exactly.

Same config, same bytes: all randomness comes from ``random.Random(config.seed)`` and the clock is
``config.start``.

Keys of :class:`ExpectedEvent` for events without a wamid (stable descriptions):

- contact change: ``<phone_number or user_id>:<action>:<metadata.timestamp>``
- consent event: ``<wa_id or user_id>:<value>:<timestamp>``
- template event: ``<field>:<message_template_id>:<event or new category>:<entry.time>``
- account event: ``<field>:<event>:<entry.time>``; history declined: ``history_declined:2593109``
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.raw import (
    Delivery,
    decode_landing,
    encode_landing,
    landing_key,
    signature_header,
)
from coexarchive.records import Kind

__all__ = [
    "ExpectedEvent",
    "Simulation",
    "SimulationConfig",
    "bulk_objects",
    "main",
    "redelivery",
    "simulate",
]

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


# ---------------------------------------------------------------------------------------------
# Content: people and words. Real-looking, multilingual, all invented.

_PEOPLE: tuple[tuple[str, str, str, str], ...] = (
    # (profile name, country calling code, ISO country, language)
    ("Amelia Hart", "44", "GB", "en"),
    ("João Pereira", "55", "BR", "pt"),
    ("فاطمة الزهراء", "971", "AE", "ar"),
    ("प्रिया शर्मा", "91", "IN", "hi"),
    ("Lucía Fernández", "34", "ES", "es"),
    ("Ana Beatriz Costa", "55", "BR", "pt"),
    ("محمد العتيبي", "966", "SA", "ar"),
    ("राहुल वर्मा", "91", "IN", "hi"),
    ("Olumide Adebayo", "44", "GB", "en"),
    ("Wei Chen 陈伟", "65", "SG", "en"),
    ("Zoë O'Connor", "353", "IE", "en"),
    ("Mateus Conceição", "351", "PT", "pt"),
)

_INBOUND: dict[str, tuple[str, ...]] = {
    "en": (
        "Hi, is my order ready?",
        "Can I change the delivery address? 🏠",
        "Thanks so much! 🙏",
        "What time do you close today?",
        "The parcel arrived damaged 😞 can you help?",
        "Do you deliver on Saturdays?",
        "STOP",
        "Great, see you Tuesday 👍",
    ),
    "pt": (
        "Olá! Meu pedido já foi enviado?",
        "Vocês abrem no domingo?",
        "Obrigado pela atenção 😊",
        "Quero trocar o tamanho da camisa, é possível?",
        "PARAR",
        "Qual é o prazo de entrega para São Paulo?",
    ),
    "ar": (
        "مرحبا، هل طلبي جاهز؟",
        "متى تفتحون غدا؟",
        "شكرا جزيلا 🌙",
        "أريد إلغاء الطلب من فضلك",
        "توقف",
    ),
    "hi": (
        "नमस्ते, मेरा ऑर्डर कब आएगा?",
        "क्या आप रविवार को खुले हैं?",
        "धन्यवाद! 🙏",
        "मुझे रिफंड चाहिए",
        "रोकें",
    ),
    "es": (
        "Hola, ¿mi pedido ya salió?",
        "¿Tienen esta talla en azul? 💙",
        "¡Gracias! Todo perfecto.",
        "BAJA",
    ),
}

_REPLIES: dict[str, tuple[str, ...]] = {
    "en": (
        "Yes, it's ready - pick up any time after 2pm.",
        "Sorry about that! We'll send a replacement today 📦",
        "We're open until 6pm.",
        "Done ✅ your address is updated.",
    ),
    "pt": (
        "Sim! Seu pedido saiu para entrega hoje 🚚",
        "Abrimos domingo das 10h às 16h.",
        "Claro, pode trazer a peça na loja.",
    ),
    "ar": ("نعم، طلبك جاهز للاستلام ✅", "نفتح الساعة التاسعة صباحا.", "تم إلغاء طلبك."),
    "hi": ("जी हाँ, आपका ऑर्डर कल पहुँचेगा 🚚", "हम रविवार को बंद रहते हैं।", "रिफंड शुरू कर दिया गया है।"),
    "es": ("¡Sí! Sale hoy por la tarde 🚚", "Sí, la tenemos en azul.", "¡Gracias a ti!"),
}

_MEDIA_CAPTIONS = ("Is this the one?", "Foto do produto", "الفاتورة", "रसीद", "", "📸")
_EMOJI = ("👍", "❤️", "😂", "🙏", "😮", "🎉", "")

# (name, language, category, id)
_TEMPLATES: tuple[tuple[str, str, str, int], ...] = (
    ("spring_sale_reminder", "en_GB", "MARKETING", 1700000000000042),
    ("order_update", "pt_BR", "UTILITY", 1700000000000043),
    ("login_code", "en_US", "AUTHENTICATION", 1700000000000044),
    ("ramadan_offer", "ar", "MARKETING", 1700000000000045),
    ("appointment_reminder", "hi", "UTILITY", 1700000000000046),
)

# Every inbound type of the catalogue (reference §2.2); the first messages of a simulation take
# them in this order so that a small simulation still has each one.
_INBOUND_TYPES: tuple[str, ...] = (
    "unsupported",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "edit",
    "revoke",
)
_TYPE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("text", 62),
    ("image", 8),
    ("audio", 5),
    ("reaction", 5),
    ("document", 3),
    ("video", 2),
    ("sticker", 2),
    ("interactive", 3),
    ("button", 2),
    ("location", 1),
    ("contacts", 1),
    ("order", 1),
    ("edit", 2),
    ("revoke", 1),
    ("unsupported", 1),
    ("system", 1),
)


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


# ---------------------------------------------------------------------------------------------
# The simulation proper.


class _Simulator:
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
        media: dict[str, Any] = {
            "id": str(1900000000000000 + self.media_counter),
            "mime_type": mime_type,
            "sha256": base64.b64encode(self.rng.randbytes(32)).decode(),
        }
        media.update(extra)
        return media

    def in_gap(self, at: int) -> bool:
        return self.gap[0] <= at < self.gap[1]

    def add(self, item: _Item) -> None:
        self.items.append(item)

    # -- the storyline --------------------------------------------------------------------------

    def run(self) -> None:
        self._management()
        if self.config.include_history:
            self._history()
        self._contact_sync()
        for customer in self.customers:
            self._customer_story(customer)
        self._orphan_statuses()

    def _metadata(self) -> dict[str, str]:
        return {
            "display_phone_number": self.config.display_phone_number,
            "phone_number_id": self.config.phone_number_id,
        }

    def _customer_story(self, customer: _Customer) -> None:
        rate = self.config.messages_per_customer_per_day
        events: list[tuple[int, str]] = []
        for day in range(self.config.days):
            count = int(self.rng.expovariate(1 / rate) + 0.5) if rate > 0 else 0
            at = self.start + day * DAY + self.rng.randrange(7 * 3600, 21 * 3600)
            for _ in range(count):
                events.append((at, "inbound"))
                at += self.rng.randrange(15, 600)
            if self.rng.random() < 0.12:
                events.append(
                    (self.start + day * DAY + self.rng.randrange(9 * 3600, 18 * 3600), "template")
                )
            if self.rng.random() < 0.02:
                events.append((self.start + day * DAY + self.rng.randrange(DAY), "preference"))
        events.sort()
        pending_reply = False
        for at, what in events:
            if self.in_gap(at) or at >= self.end:
                continue
            if what == "inbound":
                self._inbound(customer, at)
                pending_reply = True
                if self.rng.random() < 0.5:
                    at += self.rng.randrange(30, 1800)
                    self._reply(customer, at)
                    pending_reply = False
            elif what == "template" and customer.wa_id:
                self._send_template(customer, at)
            elif what == "preference":
                self._preference(customer, at)
        if pending_reply and customer.wa_id and self.rng.random() < 0.3:
            # A free-form send after the 24-hour window closed: the archive must flag it.
            last = customer.last_inbound + DAY + self.rng.randrange(600, 7200)
            if last < self.end and not self.in_gap(last):
                self._send_text(customer, last)

    # -- inbound messages -----------------------------------------------------------------------

    def _next_type(self, customer: _Customer) -> str:
        if self.type_queue:
            kind = self.type_queue[0]
            if self._can_send(customer, kind):
                self.type_queue.pop(0)
                return kind
            return "text"
        names = [name for name, _ in _TYPE_WEIGHTS]
        weights = [weight for _, weight in _TYPE_WEIGHTS]
        kind = self.rng.choices(names, weights)[0]
        return kind if self._can_send(customer, kind) else "text"

    @staticmethod
    def _can_send(customer: _Customer, kind: str) -> bool:
        # Edits and revokes need an earlier message of theirs; buttons and reactions one of ours.
        if kind in ("edit", "revoke"):
            return bool(customer.own_wamids)
        if kind in ("button", "reaction"):
            return bool(customer.business_wamids)
        return True

    def _inbound(self, customer: _Customer, at: int, kind: str = "") -> None:
        kind = kind or self._next_type(customer)
        wamid = self.wamid(customer)
        message: dict[str, Any] = {}
        if customer.wa_id:
            message["from"] = customer.wa_id
        message["from_user_id"] = customer.user_id
        message.update({"id": wamid, "timestamp": str(at), "type": kind})
        message.update(self._inbound_content(customer, kind))
        record_kind = {"edit": Kind.MESSAGE_EDIT, "revoke": Kind.MESSAGE_REVOKE}.get(
            kind, Kind.MESSAGE
        )
        if kind not in ("edit", "revoke", "reaction", "system"):
            customer.own_wamids.append(wamid)
        customer.last_inbound = at
        self.add(
            _Item(
                at,
                "messages",
                "messages",
                self.chain,
                message,
                ExpectedEvent(record_kind, self.chain, wamid),
                customer,
            )
        )

    def _inbound_content(self, customer: _Customer, kind: str) -> dict[str, Any]:
        rng = self.rng
        business = self.config.display_phone_number
        if kind == "text":
            content: dict[str, Any] = {"text": {"body": rng.choice(_INBOUND[customer.language])}}
            if customer.business_wamids and rng.random() < 0.2:
                content["context"] = {"from": business, "id": rng.choice(customer.business_wamids)}
            elif rng.random() < 0.05:
                content["referral"] = _referral(rng)
            elif rng.random() < 0.03:
                content["context"] = {"forwarded": True}
            return content
        if kind in ("image", "video"):
            mime = "image/jpeg" if kind == "image" else "video/mp4"
            return {kind: self.media(mime, caption=rng.choice(_MEDIA_CAPTIONS))}
        if kind == "audio":
            return {"audio": self.media("audio/ogg; codecs=opus", voice=rng.random() < 0.8)}
        if kind == "document":
            return {
                "document": self.media(
                    "application/pdf", filename="fatura-março.pdf", caption="Segue"
                )
            }
        if kind == "sticker":
            return {"sticker": self.media("image/webp", animated=rng.random() < 0.3)}
        if kind == "location":
            location: dict[str, Any] = {
                "latitude": round(rng.uniform(-33, 51), 6),
                "longitude": round(rng.uniform(-46, 77), 6),
            }
            if rng.random() < 0.5:
                location.update({"name": "Loja Centro", "address": "Rua Augusta 1500, São Paulo"})
            return {"location": location}
        if kind == "contacts":
            return {"contacts": [_shared_contact(rng)]}
        if kind == "interactive":
            return {"interactive": _interactive(rng)}
        if kind == "button":
            context = {"from": business, "id": customer.business_wamids[-1]}
            return {
                "context": context,
                "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"},
            }
        if kind == "reaction":
            emoji = rng.choice(_EMOJI)
            reaction: dict[str, Any] = {"message_id": rng.choice(customer.business_wamids)}
            if emoji or rng.random() < 0.5:
                reaction["emoji"] = emoji
            return {"reaction": reaction}
        if kind == "order":
            items = [
                {
                    "product_retailer_id": f"SKU-{rng.randrange(1000, 9999)}",
                    "quantity": rng.randrange(1, 4),
                    "item_price": rng.choice((9.9, 24.5, 120)),
                    "currency": "BRL",
                }
                for _ in range(rng.randrange(1, 4))
            ]
            return {
                "order": {
                    "catalog_id": "1600000000000007",
                    "text": "Pedido pelo catálogo",
                    "product_items": items,
                }
            }
        if kind == "system":
            identity = {
                "acknowledged": False,
                "created_timestamp": self.start,
                "hash": "Sjvjlx8G6Z0=",
            }
            system = {
                "body": f"{customer.name}'s security code changed.",
                "type": "customer_identity_changed",
            }
            return {"system": system, "identity": identity}
        if kind == "edit":
            new_text = rng.choice(_INBOUND[customer.language]) + " ✏️"
            edit = {
                "original_message_id": customer.own_wamids[-1],
                "message": {"type": "text", "text": {"body": new_text}},
            }
            return {"edit": edit}
        if kind == "revoke":
            return {"revoke": {"original_message_id": customer.own_wamids[-1]}}
        # unsupported: what Coexistence shows just after onboarding (code 131060)
        return {
            "unsupported": {"type": "unknown"},
            "errors": [
                {
                    "code": 131060,
                    "title": "Message not available",
                    "message": "Message not available",
                    "error_data": {"details": "Check the WhatsApp Business app for this message."},
                }
            ],
        }

    # -- business replies: app echoes and Cloud API sends ------------------------------------

    def _reply(self, customer: _Customer, at: int) -> None:
        if customer.wa_id and self.rng.random() < 0.4:
            self._send_text(customer, at)
        else:
            self._echo(customer, at)

    def _echo(self, customer: _Customer, at: int) -> None:
        wamid = self.wamid(None)
        echo = self._echo_head(customer, wamid, at)
        if self.rng.random() < 0.1:
            echo.update({"type": "image", "image": self.media("image/jpeg", caption="Catálogo 📖")})
        else:
            echo.update(
                {"type": "text", "text": {"body": self.rng.choice(_REPLIES[customer.language])}}
            )
        customer.business_wamids.append(wamid)
        self.add(
            _Item(
                at,
                "smb_message_echoes",
                "message_echoes",
                self.chain,
                echo,
                ExpectedEvent(Kind.ECHO, self.chain, wamid),
                customer,
            )
        )
        roll = self.rng.random()
        if roll < 0.08:
            edit_at = at + self.rng.randrange(20, 900)
            edit_id = self.wamid(None)
            edit = self._echo_head(customer, edit_id, edit_at)
            new_body = self.rng.choice(_REPLIES[customer.language]) + " (corrigido)"
            edit.update(
                {
                    "type": "edit",
                    "edit": {
                        "original_message_id": wamid,
                        "message": {"type": "text", "text": {"body": new_body}},
                    },
                }
            )
            self.add(
                _Item(
                    edit_at,
                    "smb_message_echoes",
                    "message_echoes",
                    self.chain,
                    edit,
                    ExpectedEvent(Kind.MESSAGE_EDIT, self.chain, edit_id),
                    customer,
                )
            )
        elif roll < 0.12:
            revoke_at = at + self.rng.randrange(60, 2 * DAY)
            revoke_id = self.wamid(None)
            revoke = self._echo_head(customer, revoke_id, revoke_at)
            revoke.update({"type": "revoke", "revoke": {"original_message_id": wamid}})
            if revoke_at < self.end and not self.in_gap(revoke_at):
                self.add(
                    _Item(
                        revoke_at,
                        "smb_message_echoes",
                        "message_echoes",
                        self.chain,
                        revoke,
                        ExpectedEvent(Kind.MESSAGE_REVOKE, self.chain, revoke_id),
                        customer,
                    )
                )

    def _echo_head(self, customer: _Customer, wamid: str, at: int) -> dict[str, Any]:
        echo: dict[str, Any] = {"from": self.config.display_phone_number}
        if customer.wa_id:
            # The reference shows "+<number>" as well as bare digits.
            echo["to"] = ("+" if self.rng.random() < 0.3 else "") + customer.wa_id
        echo["to_user_id"] = customer.user_id
        echo.update({"id": wamid, "timestamp": str(at)})
        return echo

    def _send_text(self, customer: _Customer, at: int) -> None:
        assert customer.wa_id is not None
        request: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": customer.wa_id,
        }
        if customer.own_wamids and self.rng.random() < 0.3:
            request["context"] = {"message_id": customer.own_wamids[-1]}
        if self.rng.random() < 0.1:
            request.update(
                {
                    "type": "image",
                    "image": {
                        "link": "https://cdn.example.invalid/menu.jpg",
                        "caption": "Cardápio 🍽️",
                    },
                }
            )
        else:
            request.update(
                {
                    "type": "text",
                    "text": {
                        "preview_url": False,
                        "body": self.rng.choice(_REPLIES[customer.language]),
                    },
                }
            )
        self._capture(customer, at, request, category="service")

    def _send_template(self, customer: _Customer, at: int) -> None:
        assert customer.wa_id is not None
        name, language, category, _ = self.rng.choice(_TEMPLATES)
        template = {
            "name": name,
            "language": {"code": language},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": customer.name}]}
            ],
        }
        request = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": customer.wa_id,
            "type": "template",
            "template": template,
        }
        self._capture(customer, at, request, category=category.lower())

    def _capture(
        self, customer: _Customer, at: int, request: dict[str, Any], *, category: str
    ) -> None:
        """A Cloud API send: the outbound capture delivery and the statuses Meta reports."""
        assert customer.wa_id is not None
        wamid = self.wamid(None)
        customer.business_wamids.append(wamid)
        response = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": request["to"], "wa_id": customer.wa_id}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
        capture = {
            "phone_number_id": self.config.phone_number_id,
            "sent_at": at * 1000 + self.rng.randrange(1000),
            "request": request,
            "response": response,
        }
        body = json.dumps(capture, ensure_ascii=False, separators=(",", ":")).encode()
        # Usually shipped at once; sometimes late, so its statuses land before it.
        delay = (
            self.rng.randrange(50, 800)
            if self.rng.random() < 0.9
            else self.rng.randrange(60_000, 900_000)
        )
        item = _Item(
            at,
            "",
            "",
            self.chain,
            capture,
            ExpectedEvent(Kind.OUTBOUND, self.chain, wamid),
            customer,
            corruptible=False,
        )
        self.outbound.append(_Delivery(at, at * 1000 + delay, "outbound", body, [item]))
        self._statuses(customer, wamid, at, category)

    def _statuses(self, customer: _Customer, wamid: str, at: int, category: str) -> None:
        rng = self.rng
        pricing = {
            "billable": category != "service",
            "pricing_model": "PMP",
            "type": "regular" if category != "service" else "free_customer_service",
            "category": category,
        }
        marketing_refused = category == "marketing" and customer.opted_out
        if marketing_refused or rng.random() < 0.04:
            code, title = (
                (131050, "Recipient has stopped marketing messages")
                if marketing_refused
                else (131026, "Message undeliverable")
            )
            error = {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": title + "."},
            }
            self._status(customer, wamid, "failed", at + rng.randrange(1, 30), errors=[error])
            return
        sent: dict[str, Any] = {"pricing": pricing}
        if rng.random() < 0.3:
            # The pre-v24 shape that still carries a conversation object.
            sent["conversation"] = {
                "id": f"{rng.getrandbits(128):032x}",
                "expiration_timestamp": str(at + DAY),
                "origin": {"type": category},
            }
        self._status(customer, wamid, "sent", at + rng.randrange(1, 4), **sent)
        when = at + rng.randrange(3, 120)
        if rng.random() < 0.85:
            self._status(customer, wamid, "delivered", when, pricing=pricing)
            if rng.random() < 0.7:
                self._status(customer, wamid, "read", when + rng.randrange(5, 5 * 3600))
        else:
            # Delivered and read at once: Meta sends no "delivered" at all.
            self._status(customer, wamid, "read", when, pricing=pricing)

    def _status(
        self, customer: _Customer | None, wamid: str, status: str, at: int, **extra: Any
    ) -> None:
        if at >= self.end or self.in_gap(at):
            return
        item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(at)}
        if customer is not None and customer.wa_id:
            item["recipient_id"] = customer.wa_id
        if customer is not None:
            item["recipient_user_id"] = customer.user_id
        item.update(extra)
        key = f"{wamid}:{status}"
        contact = customer if status != "failed" else None
        self.add(
            _Item(
                at,
                "messages",
                "statuses",
                self.chain,
                item,
                ExpectedEvent(Kind.STATUS, self.chain, key),
                contact,
            )
        )

    def _orphan_statuses(self) -> None:
        # Sent by a system whose sends were never captured: statuses for wamids we never saw.
        phone_customers = [c for c in self.customers if c.wa_id]
        for _ in range(min(2, len(phone_customers))):
            customer = self.rng.choice(phone_customers)
            at = self.start + self.rng.randrange(self.config.days * DAY)
            if not self.in_gap(at):
                self._status(customer, self.wamid(None), "delivered", at)

    # -- consent, contacts, management ---------------------------------------------------------

    def _preference(self, customer: _Customer, at: int) -> None:
        value = "resume" if customer.opted_out else "stop"
        customer.opted_out = value == "stop"
        pref: dict[str, Any] = {}
        if customer.wa_id:
            pref["wa_id"] = customer.wa_id
        pref["user_id"] = customer.user_id
        pref.update(
            {
                "detail": f"User requested to {value} marketing messages",
                "category": "marketing_messages",
                "value": value,
                "timestamp": at,
            }
        )
        key = f"{customer.customer_id}:{value}:{at}"
        self.add(
            _Item(
                at,
                "user_preferences",
                "user_preferences",
                self.chain,
                pref,
                ExpectedEvent(Kind.CONSENT_EVENT, self.chain, key),
                customer,
            )
        )

    def _contact_sync(self) -> None:
        at = self.start + 1800
        for customer in self.customers:
            if customer.wa_id:
                self._state_sync(customer, at, "add")
        phone_customers = [c for c in self.customers if c.wa_id]
        for customer in self.rng.sample(phone_customers, min(3, len(phone_customers))):
            later = self.start + self.rng.randrange(DAY, max(DAY + 1, self.config.days * DAY))
            if not self.in_gap(later) and later < self.end:
                self._state_sync(customer, later, self.rng.choice(("add", "remove")))

    def _state_sync(self, customer: _Customer, at: int, action: str) -> None:
        assert customer.wa_id is not None
        contact: dict[str, Any] = {}
        if action == "add":
            first = customer.name.split()[0]
            contact.update(
                {
                    "full_name": f"{customer.name} ({self.rng.choice(('Loja', 'VIP', 'Oak St'))})",
                    "first_name": first,
                }
            )
        contact.update({"phone_number": customer.wa_id, "user_id": customer.user_id})
        # Meta's reference types metadata.timestamp as a string; older text as an integer.
        stamp: str | int = str(at) if self.rng.random() < 0.8 else at
        item = {
            "type": "contact",
            "contact": contact,
            "action": action,
            "metadata": {"timestamp": stamp},
        }
        key = f"{customer.wa_id}:{action}:{at}"
        self.add(
            _Item(
                at,
                "smb_app_state_sync",
                "state_sync",
                self.chain,
                item,
                ExpectedEvent(Kind.CONTACT_CHANGE, self.chain, key),
            )
        )

    def _management(self) -> None:
        start, days = self.start, self.config.days
        waba = self.config.waba_id
        self._manage(
            start - 600,
            "account_update",
            {
                "event": "PARTNER_ADDED",
                "waba_info": {"waba_id": waba, "owner_business_id": "700000000000009"},
            },
        )
        self._manage(
            start + 300,
            "phone_number_quality_update",
            {
                "display_phone_number": self.config.display_phone_number,
                "event": "ONBOARDING",
                "max_daily_conversations_per_business": "TIER_250",
            },
        )
        for index, (name, language, category, template_id) in enumerate(_TEMPLATES):
            value = {
                "event": "APPROVED",
                "message_template_id": template_id,
                "message_template_name": name,
                "message_template_language": language,
                "reason": "NONE",
                "message_template_category": category,
            }
            self._manage(
                start + 900 + index * 60,
                "message_template_status_update",
                value,
                template=f"{template_id}:APPROVED",
            )
        rejected = {
            "event": "REJECTED",
            "message_template_id": 1700000000000047,
            "message_template_name": "win_back_offer",
            "message_template_language": "pt_BR",
            "reason": "INCORRECT_CATEGORY",
            "message_template_category": "UTILITY",
        }
        self._manage(
            start + 3 * 3600,
            "message_template_status_update",
            rejected,
            template="1700000000000047:REJECTED",
        )
        if self.gap[1]:
            self._manage(
                self.gap[0],
                "account_update",
                {
                    "phone_number": self.config.display_phone_number,
                    "event": "PARTNER_REMOVED",
                    "waba_info": {"waba_id": waba, "owner_business_id": "700000000000009"},
                    "disconnection_info": {
                        "reason": "PRIMARY_INACTIVITY",
                        "initiated_by": "SYSTEM",
                    },
                },
            )
            self._manage(
                self.gap[1],
                "account_update",
                {"phone_number": self.config.display_phone_number, "event": "ACCOUNT_RECONNECTED"},
            )
        late = start + max(1, days - 1) * DAY
        name, language, _, template_id = _TEMPLATES[0]
        base = {
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
        }
        self._manage(
            late - 7200,
            "message_template_quality_update",
            {"previous_quality_score": "GREEN", "new_quality_score": "YELLOW", **base},
            template=f"{template_id}:YELLOW",
        )
        paused = {
            "event": "PAUSED",
            **base,
            "reason": "NONE",
            "message_template_category": "MARKETING",
            "other_info": {
                "title": "FIRST_PAUSE",
                "description": "Your template has been paused due to low quality.",
            },
        }
        self._manage(
            late, "message_template_status_update", paused, template=f"{template_id}:PAUSED"
        )
        name, language, _, template_id = _TEMPLATES[1]
        base = {
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
        }
        upcoming = {
            **base,
            "new_category": "UTILITY",
            "correct_category": "MARKETING",
            "category_update_timestamp": start + DAY + 3600 + DAY,
        }
        self._manage(
            start + DAY + 3600,
            "template_category_update",
            upcoming,
            template=f"{template_id}:UTILITY",
        )
        done = {**base, "previous_category": "UTILITY", "new_category": "MARKETING"}
        self._manage(
            start + 2 * DAY + 3600,
            "template_category_update",
            done,
            template=f"{template_id}:MARKETING",
        )
        self._manage(
            start + days * DAY - 4 * 3600,
            "phone_number_quality_update",
            {
                "display_phone_number": self.config.display_phone_number,
                "event": "THROUGHPUT_UPGRADE",
                "max_daily_conversations_per_business": "TIER_2K",
            },
        )

    def _manage(
        self, at: int, field_name: str, value: dict[str, Any], *, template: str = ""
    ) -> None:
        if template:
            template_id, what = template.split(":")
            expected = ExpectedEvent(
                Kind.TEMPLATE_EVENT, self.waba_chain, f"{field_name}:{template_id}:{what}:{at}"
            )
        else:
            expected = ExpectedEvent(
                Kind.ACCOUNT_EVENT, self.waba_chain, f"{field_name}:{value['event']}:{at}"
            )
        self.add(_Item(at, field_name, "", self.waba_chain, value, expected, corruptible=False))

    # -- onboarding history ---------------------------------------------------------------------

    def _history(self) -> None:
        """Phases 0-2 in chunks out of order; live overlap, a media placeholder, its follow-up."""
        rng = self.rng
        threads: dict[int, list[dict[str, Any]]] = {0: [], 1: [], 2: []}
        placeholder: tuple[_Customer, str, int] | None = None
        for index, customer in enumerate(self.customers):
            per_phase: dict[int, list[dict[str, Any]]] = {0: [], 1: [], 2: []}
            for _ in range(rng.randrange(1, 6)):
                age = rng.randrange(60, 180 * DAY)
                at = self.start - age
                phase = 0 if age < DAY else (1 if age < 90 * DAY else 2)
                from_business = rng.random() < 0.45
                message, wamid = self._history_message(customer, at, from_business)
                if placeholder is None and from_business is False and age < 14 * DAY:
                    message.pop("text")
                    message["type"] = "media_placeholder"
                    placeholder = (customer, wamid, at)
                per_phase[phase].append(message)
                self.add_expected(ExpectedEvent(Kind.HISTORY_MESSAGE, self.chain, wamid))
            if index < 2:
                # Messages sent just after onboarding reach us live and again in phase 0.
                per_phase[0].extend(self._overlap(customer))
            for phase, messages in per_phase.items():
                if messages:
                    messages.sort(key=lambda message: int(message["timestamp"]))
                    threads[phase].append(self._thread(customer, messages))
        self._history_chunks(threads)
        if placeholder is not None:
            self._media_follow_up(*placeholder)
        self._declined()

    def add_expected(self, expected: ExpectedEvent) -> None:
        # History messages sit inside chunk deliveries built by hand, not in self.items.
        self.history_expected.append(expected)

    def _history_message(
        self, customer: _Customer, at: int, from_business: bool
    ) -> tuple[dict[str, Any], str]:
        wamid = self.wamid(None if from_business else customer)
        message: dict[str, Any] = {}
        if from_business:
            message["from"] = self.config.display_phone_number
            if customer.wa_id:
                message["to"] = customer.wa_id
            body = self.rng.choice(_REPLIES[customer.language])
        else:
            if customer.wa_id:
                message["from"] = customer.wa_id
            message["from_user_id"] = customer.user_id
            body = self.rng.choice(_INBOUND[customer.language])
        status = self.rng.choice(("READ", "READ", "DELIVERED", "SENT", "PLAYED"))
        message.update(
            {
                "id": wamid,
                "timestamp": str(at),
                "type": "text",
                "text": {"body": body},
                "history_context": {"status": status},
            }
        )
        return message, wamid

    def _overlap(self, customer: _Customer) -> list[dict[str, Any]]:
        at = self.start + self.rng.randrange(300, 1200)
        saved = self.items[:]
        self._inbound(customer, at, "text")
        self._echo_plain(customer, at + self.rng.randrange(30, 300))
        copies: list[dict[str, Any]] = []
        for item in self.items[len(saved) :]:
            item.corruptible = False
            copy = dict(item.payload)
            copy.pop("to_user_id", None)
            copy["history_context"] = {"status": "READ"}
            copies.append(copy)
        return copies

    def _echo_plain(self, customer: _Customer, at: int) -> None:
        wamid = self.wamid(None)
        echo = self._echo_head(customer, wamid, at)
        echo.update(
            {"type": "text", "text": {"body": self.rng.choice(_REPLIES[customer.language])}}
        )
        customer.business_wamids.append(wamid)
        self.add(
            _Item(
                at,
                "smb_message_echoes",
                "message_echoes",
                self.chain,
                echo,
                ExpectedEvent(Kind.ECHO, self.chain, wamid),
                customer,
            )
        )

    def _thread(self, customer: _Customer, messages: list[dict[str, Any]]) -> dict[str, Any]:
        thread: dict[str, Any] = {}
        if customer.wa_id:
            thread["id"] = customer.wa_id
        context: dict[str, Any] = {"user_id": customer.user_id}
        if customer.wa_id:
            context["wa_id"] = customer.wa_id
        if customer.username:
            context["username"] = customer.username
        thread["context"] = context
        thread["messages"] = messages
        return thread

    def _history_chunks(self, threads: dict[int, list[dict[str, Any]]]) -> None:
        chunks: list[tuple[int, list[dict[str, Any]]]] = []
        for phase in (0, 1, 2):
            for offset in range(0, len(threads[phase]), 25):
                chunks.append((phase, threads[phase][offset : offset + 25]))
        total = len(chunks)
        order = list(range(total))
        self.rng.shuffle(order)  # "chunks may not be delivered sequentially"
        for number, (phase, chunk_threads) in enumerate(chunks):
            progress = (number + 1) * 100 // total
            lower = number % 3 == 1
            if lower:
                # The Gupshup sample: lower-case status, and from_me instead of "to".
                for thread in chunk_threads:
                    for message in thread["messages"]:
                        context = message["history_context"]
                        context["status"] = context["status"].lower()
                        if message.get("from") == self.config.display_phone_number:
                            message.pop("to", None)
                            context["from_me"] = True
            metadata: dict[str, Any] = {
                "phase": phase,
                "chunk_order": number + 1,
                "progress": progress,
            }
            if number % 4 == 2:
                metadata = {name: str(value) for name, value in metadata.items()}  # a BSP's copy
            value = {
                "messaging_product": "whatsapp",
                "metadata": self._metadata(),
                "history": [{"metadata": metadata, "threads": chunk_threads}],
            }
            at = self.start + 3600 + order[number] * 240
            body = _envelope(self.config.waba_id, [("history", value)], ensure_ascii=True)
            self.special.append(
                _Delivery(at, at * 1000 + self.rng.randrange(100, 900), "webhook", body, [])
            )

    def _media_follow_up(self, customer: _Customer, wamid: str, at: int) -> None:
        message: dict[str, Any] = {}
        if customer.wa_id:
            message["from"] = customer.wa_id
        message["from_user_id"] = customer.user_id
        message.update(
            {
                "id": wamid,
                "timestamp": str(at),
                "type": "image",
                "image": self.media("image/jpeg", caption="Comprovante"),
            }
        )
        value = {
            "messaging_product": "whatsapp",
            "metadata": self._metadata(),
            "messages": [message],
        }
        sent = self.start + 3 * 3600
        body = _envelope(self.config.waba_id, [("history", value)], ensure_ascii=True)
        self.special.append(_Delivery(sent, sent * 1000 + 450, "webhook", body, []))

    def _declined(self) -> None:
        """A second onboarded number whose business turned history sharing off (2593109)."""
        second_phone = _next_id(self.config.phone_number_id)
        title = "History sync is turned off by the business from the WhatsApp Business App"
        metadata = {
            "display_phone_number": _next_id(self.config.display_phone_number),
            "phone_number_id": second_phone,
        }
        error = {
            "code": 2593109,
            "title": title,
            "message": title,
            "error_data": {"details": "History sharing is turned off by the business"},
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": metadata,
            "history": [{"errors": [error]}],
        }
        at = self.start + 5400
        body = _envelope(_next_id(self.config.waba_id), [("history", value)], ensure_ascii=True)
        self.special.append(_Delivery(at, at * 1000 + 300, "webhook", body, []))
        self.history_expected.append(
            ExpectedEvent(Kind.ACCOUNT_EVENT, second_phone, "history_declined:2593109")
        )


def _next_id(number: str) -> str:
    return str(int(number) + 1) if number.isdigit() else number + "-2"


def _referral(rng: random.Random) -> dict[str, Any]:
    return {
        "source_url": "https://fb.me/9xQwErTy1",
        "source_id": str(120000000000000000 + rng.randrange(1000)),
        "source_type": "ad",
        "headline": "Promoção de verão ☀️",
        "body": "20% off garden tools",
        "media_type": "image",
        "image_url": "https://scontent.example.invalid/ad.jpg",
        "ctwa_clid": f"ARA{rng.getrandbits(120):030x}",
        "welcome_message": {"text": "Hi! How can we help?"},
    }


def _shared_contact(rng: random.Random) -> dict[str, Any]:
    digits = "".join(str(rng.randrange(10)) for _ in range(8))
    return {
        "name": {"formatted_name": "Ravi Kumar", "first_name": "Ravi", "last_name": "Kumar"},
        "phones": [{"phone": f"+91 98{digits}", "wa_id": f"9198{digits}", "type": "CELL"}],
        "emails": [{"email": "ravi@example.invalid", "type": "WORK"}],
    }


def _interactive(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(3)
    if choice == 0:
        return {
            "type": "button_reply",
            "button_reply": {"id": "confirm_slot_2", "title": "Terça 10:00"},
        }
    if choice == 1:
        reply = {"id": "size_m", "title": "Tamanho M", "description": "Camisa azul"}
        return {"type": "list_reply", "list_reply": reply}
    flow = {"name": "flow", "body": "Sent", "response_json": '{"rating":"5","comment":"ótimo 👌"}'}
    return {"type": "nfm_reply", "nfm_reply": flow}


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


# ---------------------------------------------------------------------------------------------
# From items to deliveries: batching, quirks, landing.


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


# ---------------------------------------------------------------------------------------------
# Bulk mode: many small, valid events fast, for benchmarks.

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


# ---------------------------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coexarchive simulate",
        description=(
            "Generate realistic, deterministic WhatsApp Coexistence webhook traffic in the raw "
            "landing format (schemas/RAW_LANDING.md): one business number, its customers, the "
            "onboarding history import, template and account events, with Meta's duplicates, "
            "reordering, batching and malformed bodies. The same seed always gives the same bytes."
        ),
        epilog=(
            "examples:\n"
            "  coexarchive simulate                  summary of the default week\n"
            "  coexarchive simulate --out var/raw     objects under var/raw/raw/date=...\n"
            "  coexarchive simulate --customers 1000 --seed 42 --out var/raw\n"
            "  coexarchive simulate --bulk 1000000 --out var/bench   benchmark input\n"
            "\nSignatures use a demo app secret unless --app-secret-file is given;\n"
            "the secret is never printed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SimulationConfig()
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)"
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=defaults.customers,
        help="customers talking to the number (default %(default)s)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=defaults.days,
        help="days of live traffic after onboarding (default %(default)s)",
    )
    parser.add_argument(
        "--start",
        default=defaults.start.isoformat(),
        help="onboarding moment, ISO 8601 with offset (default %(default)s)",
    )
    parser.add_argument(
        "--receiver-id",
        default=defaults.receiver_id,
        help="receiver id in keys and lines (default %(default)s)",
    )
    parser.add_argument(
        "--messages-per-day",
        type=float,
        default=defaults.messages_per_customer_per_day,
        help="mean inbound messages per customer per day (default %(default)s)",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=float,
        default=defaults.duplicate_rate,
        help="share of deliveries Meta sends twice (default %(default)s)",
    )
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=defaults.malformed_rate,
        help="share of deliveries made malformed (default %(default)s)",
    )
    parser.add_argument(
        "--deliveries-per-object",
        type=int,
        default=defaults.deliveries_per_object,
        help="deliveries per raw object (default %(default)s)",
    )
    parser.add_argument(
        "--no-history", action="store_true", help="skip the onboarding history import"
    )
    parser.add_argument(
        "--app-secret-file", type=Path, help="file holding the app secret to sign with"
    )
    parser.add_argument(
        "--bulk",
        type=int,
        metavar="EVENTS",
        help="fast bulk mode: this many text messages and statuses, no quirks",
    )
    parser.add_argument(
        "--events-per-object",
        type=int,
        default=20_000,
        help="bulk mode: events per raw object (default %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, help="directory to write objects to, at their raw key paths"
    )
    return parser


def _config_from(args: argparse.Namespace) -> SimulationConfig:
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError as error:
        raise ConfigError(f"--start {args.start!r} is not an ISO 8601 time: {error}") from None
    secret = DEMO_APP_SECRET
    if args.app_secret_file is not None:
        try:
            secret = args.app_secret_file.read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"cannot read the app secret file: {error.strerror}") from None
    return SimulationConfig(
        seed=args.seed,
        customers=args.customers,
        days=args.days,
        start=start,
        app_secret=secret,
        receiver_id=args.receiver_id,
        messages_per_customer_per_day=args.messages_per_day,
        duplicate_rate=args.duplicate_rate,
        malformed_rate=args.malformed_rate,
        deliveries_per_object=args.deliveries_per_object,
        include_history=not args.no_history,
    )


def _write(out: Path, objects: Sequence[tuple[str, bytes]]) -> None:
    """Write create-only: an existing file with other bytes is an error, never overwritten."""
    for key, data in objects:
        path = out / key
        if path.exists():
            if path.read_bytes() != data:
                raise ConfigError(
                    f"{path} exists with different content; use an empty --out directory"
                )
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _summary(sim: Simulation) -> Iterator[str]:
    deliveries = sum(len(decode_landing(data, key=key)) for key, data in sim.objects)
    size = sum(len(data) for _, data in sim.objects)
    yield f"objects      {len(sim.objects)} ({size:,} bytes compressed)"
    yield f"deliveries   {deliveries}"
    yield f"duplicates   {sim.duplicates}"
    yield f"malformed    {sim.malformed}"
    yield f"expected     {len(sim.expected)} events"
    counts: dict[str, int] = {}
    for event in sim.expected:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    for kind in sorted(counts):
        yield f"  {kind:<16} {counts[kind]}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``coexarchive simulate``."""
    args = _parser().parse_args(argv)
    try:
        config = _config_from(args)
        if args.bulk is not None:
            objects = bulk_objects(args.bulk, args.seed, args.events_per_object, config=config)
            lines = [f"objects      {len(objects)}", f"events       {args.bulk}"]
        else:
            sim = simulate(config)
            objects = sim.objects
            lines = list(_summary(sim))
        if args.out is not None:
            _write(args.out, objects)
            lines.append(f"written to   {args.out}")
    except CoexArchiveError as error:
        print(f"coexarchive simulate: {error.diagnostics()}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
