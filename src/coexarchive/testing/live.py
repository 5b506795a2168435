"""Live traffic: each customer's story of inbound messages, replies, sends, statuses, consent."""

from __future__ import annotations

import json
from typing import Any

from coexarchive.records import Kind
from coexarchive.testing.content import (
    _EMOJI,
    _INBOUND,
    _MEDIA_CAPTIONS,
    _REPLIES,
    _TEMPLATES,
    _TYPE_WEIGHTS,
    _interactive,
    _referral,
    _shared_contact,
)
from coexarchive.testing.model import (
    DAY,
    ExpectedEvent,
    _Customer,
    _Delivery,
    _Item,
    _SimulatorBase,
)


class _LiveTraffic(_SimulatorBase):
    """The business number's day-to-day traffic with its customers."""

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
        self._add_echo(customer, at, echo, Kind.ECHO, wamid)
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
            self._add_echo(customer, edit_at, edit, Kind.MESSAGE_EDIT, edit_id)
        elif roll < 0.12:
            revoke_at = at + self.rng.randrange(60, 2 * DAY)
            revoke_id = self.wamid(None)
            revoke = self._echo_head(customer, revoke_id, revoke_at)
            revoke.update({"type": "revoke", "revoke": {"original_message_id": wamid}})
            if revoke_at < self.end and not self.in_gap(revoke_at):
                self._add_echo(customer, revoke_at, revoke, Kind.MESSAGE_REVOKE, revoke_id)

    def _add_echo(
        self, customer: _Customer, at: int, echo: dict[str, Any], kind: Kind, wamid: str
    ) -> None:
        """One ``smb_message_echoes`` delivery on the business's chain, expected as ``kind``."""
        self.add(
            _Item(
                at,
                "smb_message_echoes",
                "message_echoes",
                self.chain,
                echo,
                ExpectedEvent(kind, self.chain, wamid),
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
