"""A golden month of Coexistence traffic with a known set of injected compliance violations.

Built as raw landing objects (signed webhook bodies and outbound captures), a CRM consent export
and a Graph API template catalogue, so the whole path — normalise, de-duplicate, enrich, seal,
reassess — runs exactly as in production. Every API send and status, and every account event, is
listed in ``expected`` with the flags it must end up with; all other records must carry none.

Events marked ``late`` are held back from the first ingest run (``objects(run=1)``) and delivered
in the second (``objects(run=2)``), out of order and after what they govern.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from coexarchive.raw import Delivery, encode_landing, landing_key, signature_header

PHONE = "900000000000001"
DISPLAY = "15550001111"
WABA = "800000000000001"
SECRET = b"golden-secret"
START = 1_772_409_600  # 2026-03-02T00:00:00Z
DAY = 86_400

A, B, C, D, E, F = (
    "447700900001",
    "5511900000002",
    "34600000003",
    "919800000004",
    "628110000005",
    "447700900006",
)
NAMES = {A: "Amelia", B: "João", C: "Lucía", D: "प्रिया", E: "Putri", F: "Finn"}

MWC = "marketing_without_consent"
SAO = "sent_after_opt_out"
FOW = "freeform_outside_window"
TNA = "template_not_approved"
SWM = "status_without_message"
HD = "history_declined"
GAP = "capture_gap"

Key = tuple[Any, ...]


def at(day: int, hour: int = 0, minute: int = 0) -> int:
    """Unix seconds, ``day`` days after the start."""
    return START + day * DAY + hour * 3600 + minute * 60


@dataclass
class _Pending:
    at: int  # event time, seconds
    received_ms: int
    source: str
    body: bytes
    late: bool


@dataclass
class Scenario:
    pending: list[_Pending] = field(default_factory=list)
    expected: dict[Key, frozenset[str]] = field(default_factory=dict)
    counter: int = 0
    crm_csv: bytes = b""
    crm_bad_lines: list[int] = field(default_factory=list)
    catalogue: bytes = b""
    catalogue_as_of_ms: int = 0

    # -- plumbing ------------------------------------------------------------------------------

    def wamid(self) -> str:
        self.counter += 1
        return f"wamid.golden.{self.counter:05d}"

    def _deliver(
        self,
        when: int,
        body: dict[str, Any],
        *,
        late: bool,
        source: str = "webhook",
        delay_ms: int = 2_000,
    ) -> None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        received = (at(31, 6) * 1000) if late else when * 1000 + delay_ms
        self.pending.append(_Pending(when, received, source, data, late))

    def _field(
        self,
        when: int,
        name: str,
        array: str,
        items: list[dict[str, Any]],
        contact: str | None,
        *,
        late: bool = False,
    ) -> None:
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE},
        }
        if contact is not None:
            value["contacts"] = [{"profile": {"name": NAMES[contact]}, "wa_id": contact}]
        value[array] = items
        entry = {"id": WABA, "changes": [{"field": name, "value": value}]}
        self._deliver(when, {"object": "whatsapp_business_account", "entry": [entry]}, late=late)

    def _manage(self, when: int, name: str, value: dict[str, Any], *, late: bool = False) -> None:
        entry = {"id": WABA, "time": when, "changes": [{"field": name, "value": value}]}
        self._deliver(when, {"object": "whatsapp_business_account", "entry": [entry]}, late=late)

    # -- traffic -------------------------------------------------------------------------------

    def inbound(self, who: str, when: int, text: str, *, late: bool = False) -> None:
        message = {
            "from": who,
            "id": self.wamid(),
            "timestamp": str(when),
            "type": "text",
            "text": {"body": text},
        }
        self._field(when, "messages", "messages", [message], who, late=late)

    def echo(self, who: str, when: int) -> None:
        echo = {
            "from": DISPLAY,
            "to": who,
            "id": self.wamid(),
            "timestamp": str(when),
            "type": "text",
            "text": {"body": "On it 👍"},
        }
        self._field(when, "smb_message_echoes", "message_echoes", [echo], who)

    def send_text(self, who: str, when: int, *flags: str, late_capture: bool = False) -> str:
        request = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": who,
            "type": "text",
            "text": {"body": "Thanks, checking now."},
        }
        return self._send(who, when, request, flags, late_capture=late_capture)

    def send_template(self, who: str, when: int, name: str, language: str, *flags: str) -> str:
        request = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": who,
            "type": "template",
            "template": {"name": name, "language": {"code": language}},
        }
        return self._send(who, when, request, flags, late_capture=False)

    def _send(
        self,
        who: str,
        when: int,
        request: dict[str, Any],
        flags: Iterable[str],
        *,
        late_capture: bool,
    ) -> str:
        wamid = self.wamid()
        capture = {
            "phone_number_id": PHONE,
            "sent_at": when * 1000 + 250,
            "request": request,
            "response": {
                "messaging_product": "whatsapp",
                "contacts": [{"input": who, "wa_id": who}],
                "messages": [{"id": wamid}],
            },
        }
        # Captures are shipped after their statuses sometimes: 90 s late here.
        self._deliver(when, capture, late=late_capture, source="outbound", delay_ms=90_000)
        self.expected[("outbound", wamid)] = frozenset(flags)
        for status, offset in (("sent", 2), ("delivered", 40)):
            self.status(who, wamid, status, when + offset)
        return wamid

    def status(self, who: str, wamid: str, status: str, when: int, *flags: str) -> None:
        item = {"id": wamid, "status": status, "timestamp": str(when), "recipient_id": who}
        self._field(when, "messages", "statuses", [item], who)
        self.expected[("status", wamid, status)] = frozenset(flags)

    def orphan_status(self, who: str, when: int) -> None:
        self.status(who, self.wamid(), "delivered", when, SWM)

    def preference(self, who: str, when: int, value: str, *, late: bool = False) -> None:
        pref = {
            "wa_id": who,
            "detail": f"User requested to {value} marketing messages",
            "category": "marketing_messages",
            "value": value,
            "timestamp": when,
        }
        self._field(when, "user_preferences", "user_preferences", [pref], who, late=late)

    def template_status(
        self,
        when: int,
        name: str,
        language: str,
        event: str,
        category: str,
        template_id: int,
        *,
        late: bool = False,
    ) -> None:
        value = {
            "event": event,
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "reason": "NONE",
            "message_template_category": category,
        }
        self._manage(when, "message_template_status_update", value, late=late)

    def category_changed(
        self,
        when: int,
        name: str,
        language: str,
        previous: str,
        new: str,
        template_id: int,
        *,
        late: bool = False,
    ) -> None:
        value = {
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "previous_category": previous,
            "new_category": new,
        }
        self._manage(when, "template_category_update", value, late=late)

    def account(self, when: int, event: str, *flags: str, reason: str | None = None) -> None:
        value: dict[str, Any] = {"phone_number": DISPLAY, "event": event}
        if reason is not None:
            value["disconnection_info"] = {"reason": reason, "initiated_by": "SYSTEM"}
        self._manage(when, "account_update", value)
        self.expected[("account", "account_update", event, when * 1000)] = frozenset(flags)

    def history_declined(self, when: int) -> None:
        title = "History sync is turned off by the business from the WhatsApp Business App"
        error = {"code": 2593109, "title": title, "message": title}
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE},
            "history": [{"errors": [error]}],
        }
        entry = {"id": WABA, "time": when, "changes": [{"field": "history", "value": value}]}
        self._deliver(when, {"object": "whatsapp_business_account", "entry": [entry]}, late=False)
        self.expected[("account", "history_declined", "declined", when * 1000)] = frozenset({HD})

    # -- landing -------------------------------------------------------------------------------

    def objects(self, run: int | None = None, *, seed: int = 5) -> list[tuple[str, bytes]]:
        """Landing objects: all deliveries (``run=None``), or those of run 1 or 2, in a shuffled
        arrival order (webhooks arrive out of order)."""
        chosen = [p for p in self.pending if run is None or p.late == (run == 2)]
        rng = random.Random(seed)
        rng.shuffle(chosen)
        base = 0 if run in (None, 1) else 100_000
        deliveries = [
            Delivery(
                "golden",
                base + i,
                p.received_ms,
                p.source,
                {"x-hub-signature-256": signature_header(SECRET, p.body)},
                p.body,
            )
            for i, p in enumerate(chosen)
        ]
        objects = []
        for offset in range(0, len(deliveries), 40):
            group = deliveries[offset : offset + 40]
            key = landing_key("golden", group[0].seq, group[0].received_at)
            objects.append((key, encode_landing(group)))
        return objects

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for flags in self.expected.values():
            for flag in flags:
                counts[flag] = counts.get(flag, 0) + 1
        return dict(sorted(counts.items()))


def _crm(scenario: Scenario) -> None:
    lines = [
        "customer,purpose,state,timestamp,source,evidence",
        f"+{A},marketing,opted_in,2026-01-31T09:00:00Z,web-form,crm://consent/1001",
        f"{B},marketing,opted_in,{at(-30)},store-signup,crm://consent/1002",
        f"{C},all,opt_in,2026-01-31T09:00:00+01:00,paper-form,scan://2026/01/c-0003.pdf",
        f"{D},marketing,opted_in,31/01/2026,web-form,crm://consent/1004",  # bad date
        f"{E},promotions,opted_in,2026-01-31T09:00:00Z,web-form,crm://consent/1005",  # purpose
        f"{F},marketing,opted_in,2026-01-31T09:00:00Z,web-form,",  # no evidence
        "not-a-number,marketing,opted_in,2026-01-31T09:00:00Z,web-form,crm://consent/1007",
        f"{F},marketing,opted_in,2099-01-01T00:00:00Z,web-form,crm://consent/1008",  # future
        f"{F},marketing,opted_in,2026-01-31T09:00:00Z",  # short row
        f"{D},marketing,maybe,2026-01-31T09:00:00Z,web-form,crm://consent/1010",  # state
    ]
    scenario.crm_csv = ("\n".join(lines) + "\n").encode()
    scenario.crm_bad_lines = [5, 6, 7, 8, 9, 10, 11]


def _catalogue(scenario: Scenario) -> None:
    data = {
        "data": [
            {
                "name": "appointment_reminder",
                "language": "hi",
                "status": "APPROVED",
                "category": "UTILITY",
                "id": "1700000000000046",
                "components": [{"type": "BODY", "text": "नमस्ते {{1}}"}],
            },
            {
                "name": "promo_spring",
                "language": "en_US",
                "status": "APPROVED",
                "category": "MARKETING",
                "id": "1700000000000042",
            },
            {"name": "broken_entry", "language": "en_US", "status": "APPROVED"},
        ],
        "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}},
    }
    scenario.catalogue = json.dumps(data, ensure_ascii=False).encode()
    scenario.catalogue_as_of_ms = at(0) * 1000 - 3_600_000


def build() -> Scenario:
    """The golden month; numbered comments match the storyline in ``test_golden.py``."""
    s = Scenario()
    _crm(s)
    _catalogue(s)
    s.account(at(0, 0, 10), "PARTNER_ADDED")
    s.template_status(at(0, 0, 15), "promo_spring", "en_US", "APPROVED", "MARKETING", 42)
    s.template_status(at(0, 0, 16), "flash_sale", "en_US", "APPROVED", "MARKETING", 43)
    s.template_status(at(0, 0, 17), "order_update", "pt_BR", "APPROVED", "UTILITY", 44)
    s.template_status(at(0, 0, 18), "win_back", "es", "REJECTED", "MARKETING", 45)
    s.history_declined(at(0, 1))
    for day, who, hour in (
        (0, A, 8),
        (2, B, 12),
        (4, B, 9),
        (6, A, 12),
        (8, B, 12),
        (10, A, 12),
        (12, B, 12),
        (14, A, 12),
        (16, B, 12),
        (18, A, 16),
        (20, B, 12),
    ):
        s.echo(who, at(day, hour))
    # 1-3: the 24-hour window, to the minute.
    s.inbound(A, at(1, 10), "Hi, is my order ready?")
    s.send_text(A, at(1, 10, 5))
    s.send_text(A, at(2, 9, 59))
    s.send_text(A, at(2, 10, 6), FOW)
    s.send_template(A, at(3, 11), "promo_spring", "en_US")
    # 5: a rejected template.
    s.send_template(C, at(2, 12), "win_back", "es", TNA)
    # 6: an app echo neither opens nor extends the window.
    s.inbound(B, at(3, 10), "Olá! Meu pedido já foi enviado?")
    s.send_text(B, at(4, 11), FOW)
    # 7-8: marketing without any opt-in; a catalogue-only utility template.
    s.send_template(D, at(3, 15), "promo_spring", "en_US", MWC)
    s.send_template(D, at(4, 10), "appointment_reminder", "hi")
    # 9-10: Indonesian keyword opt-out, then a utility template.
    s.send_template(E, at(2, 14), "order_update", "pt_BR")
    s.inbound(E, at(4, 8), "BERHENTI")
    s.send_template(E, at(5, 9), "order_update", "pt_BR", SAO)
    # 11-12: a template the registry never heard of; a consented marketing send.
    s.send_template(F, at(5, 10), "mystery_tpl", "en_US")
    s.send_template(B, at(5, 12), "promo_spring", "en_US")
    # 13-14: Hindi opt-out, Indonesian opt-in.
    s.inbound(D, at(6, 9), "रोकें।")
    s.send_template(D, at(7, 10), "promo_spring", "en_US", SAO)
    s.inbound(E, at(6, 10), "Mulai")
    # 15: a status for a wamid whose send was never captured.
    s.orphan_status(A, at(7, 13))
    # 16-22: a webhook opt-out and a re-categorisation, both delivered late in the split run.
    s.preference(B, at(8, 9), "stop", late=True)
    s.send_template(F, at(8, 10), "order_update", "pt_BR")
    s.inbound(D, at(9, 9), "shuru karo")
    s.send_template(D, at(10, 10), "promo_spring", "en_US")
    s.send_template(B, at(9, 15), "order_update", "pt_BR")
    s.category_changed(at(10, 8), "order_update", "pt_BR", "UTILITY", "MARKETING", 44, late=True)
    s.send_template(B, at(10, 12), "promo_spring", "en_US", SAO)
    s.send_template(F, at(11, 10), "order_update", "pt_BR", MWC)
    # 23: Spanish opt-out covers the now-marketing template.
    s.inbound(C, at(12, 9), "BAJA")
    s.send_template(C, at(13, 10), "order_update", "pt_BR", SAO)
    # 24: the window-opening message arrives late in the split run.
    s.inbound(E, at(14, 10), "Halo, pesanan saya sudah dikirim?", late=True)
    s.send_text(E, at(14, 10, 10))
    # 25-26: webhook resume; a second uncaptured status.
    s.preference(B, at(15, 9), "resume")
    s.send_template(B, at(16, 10), "promo_spring", "en_US")
    s.orphan_status(B, at(17, 13))
    # 27: disconnected for primary inactivity, then reconnected.
    s.account(at(18, 12), "PARTNER_REMOVED", GAP, reason="PRIMARY_INACTIVITY")
    s.account(at(18, 15), "ACCOUNT_RECONNECTED")
    # 28-33: a template paused (late in the split run); Spanish opt-in; window closed.
    s.send_template(A, at(19, 10), "flash_sale", "en_US")
    s.template_status(at(20, 6), "flash_sale", "en_US", "PAUSED", "MARKETING", 43, late=True)
    s.inbound(C, at(20, 9), "ALTA")
    s.send_template(A, at(21, 10), "flash_sale", "en_US", TNA)
    s.send_template(C, at(21, 11), "order_update", "pt_BR")
    s.send_text(C, at(22, 10), FOW)
    # 34: a capture shipped after its statuses, in the next run.
    s.inbound(A, at(23, 9), "Please stop by tomorrow, I'll be home")
    s.send_text(A, at(23, 9, 5), late_capture=True)
    # 35: offboarded (device change), then reconnected.
    s.account(at(25, 8), "ACCOUNT_OFFBOARDED", GAP)
    s.account(at(25, 10), "ACCOUNT_RECONNECTED")
    # 36-38: app echoes silent since day 20 while Cloud API traffic continues.
    s.inbound(A, at(28, 9), "Any news?")
    s.send_text(A, at(28, 9, 5), GAP)
    s.inbound(B, at(28, 11), "Oi?")
    s.send_text(B, at(28, 11, 3), GAP)
    s.send_template(A, at(29, 10), "promo_spring", "en_US", GAP)
    return s
