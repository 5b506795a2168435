"""The whole storyline: management events, the onboarding history import, then live traffic."""

from __future__ import annotations

from typing import Any

from coexarchive.records import Kind
from coexarchive.testing.content import (
    _INBOUND,
    _REPLIES,
    _TEMPLATES,
    _next_id,
)
from coexarchive.testing.live import _LiveTraffic
from coexarchive.testing.model import (
    DAY,
    FOLLOW_UP_SUFFIX,
    ExpectedEvent,
    _Customer,
    _Delivery,
    _envelope,
    _Item,
)


class _Simulator(_LiveTraffic):
    """One business number over the configured days, from onboarding on."""

    # -- the storyline --------------------------------------------------------------------------

    def run(self) -> None:
        self._management()
        if self.config.include_history:
            self._history()
        self._contact_sync()
        for customer in self.customers:
            self._customer_story(customer)
        self._orphan_statuses()

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
        self._add_echo(customer, at, echo, Kind.ECHO, wamid)

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
        # Sealed beside its placeholder (same wamid, an identity of its own).
        self.add_expected(
            ExpectedEvent(Kind.HISTORY_MESSAGE, self.chain, f"{wamid}{FOLLOW_UP_SUFFIX}")
        )

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
