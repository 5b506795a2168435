"""Deterministic generator of realistic archive records for the benchmarks.

``generate(n, seed=...)`` returns ``n`` :class:`coexarchive.records.Record` values of one chain in
``event_time`` order, shaped like what ``coexarchive.normalize`` produces for a Coexistence number:
inbound customer messages, echoes from the Business App, Cloud API sends and template sends,
delivery statuses (some failed, with an error code), history imports, edits, reactions, consent
and contact events. Text is drawn from several scripts (Latin with diacritics, Cyrillic, Arabic,
Devanagari, CJK, emoji outside the BMP) and now and then holds quotes, backslashes and control
characters, so every JSON-escaping path of the canonical form is exercised.

``detail`` is the normalised event as sorted-key JSON. By default it is the compact form (what
the normaliser adds around the typed columns); ``raw_detail=True`` also embeds a webhook-sized
``raw`` object, as the normaliser does for real events (about 2x the canonical size).

The same seed always gives the same records, on every machine and Python version.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson

from coexarchive.records import Record, stable_id

__all__ = ["CHAIN_ID", "generate", "iter_records"]

CHAIN_ID = "106540352242922"  # a Cloud API phone_number_id
BUSINESS_PHONE = "15550783881"
WABA_ID = "102290129340398"
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z

_TEXTS = (
    "Hi, is my order #{n} on its way?",
    "Olá! Gostaria de saber o preço do pacote família, por favor.",
    "¿Pueden enviarme la factura de diciembre? Gracias 🙏",
    "Bonjour, je n'ai pas reçu la confirmation de ma réservation.",
    "Здравствуйте! Когда будет доставка заказа {n}?",
    "مرحبا، أريد تغيير عنوان التوصيل من فضلك",
    "नमस्ते, मेरा रिफंड कब तक आएगा?",
    "你好，我想预约明天下午三点的服务。",
    "こんにちは、注文番号{n}の状況を教えてください。",
    "안녕하세요, 영업시간이 어떻게 되나요?",
    "Merhaba, kargom hâlâ gelmedi 😕",
    "Thanks!! 👍👍",
    "STOP",
    "Can you call me back at 3pm? My number is +44 20 7946 0{n3}",
    'He said "tomorrow" but nothing arrived\\n still waiting',
    "line one\nline two\ttabbed\r\nend",
    "ok",
    "Guten Tag, ich möchte meinen Termin verschieben. Geht Donnerstag?",
    "Xin chào, tôi muốn hủy đơn hàng.",
    "שלום, האם אפשר לשנות את ההזמנה?",
    "🎉🎂 Happy birthday offer received, thank you! 🥳",
    "bell\x07 and null-ish \x01 control",
)
_TEMPLATES = (
    ("order_update", "en_US", "UTILITY"),
    ("promo_spring", "pt_BR", "MARKETING"),
    ("otp_login", "es", "AUTHENTICATION"),
    ("appointment_reminder", "ar", "UTILITY"),
    ("feedback_request", "hi", "MARKETING"),
)
_STATUSES = ("sent", "delivered", "read", "failed")
_FLAGS = (
    "freeform_outside_window",
    "marketing_without_consent",
    "sent_after_opt_out",
    "status_without_message",
    "template_not_approved",
)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class _Gen:
    def __init__(self, seed: int, raw_detail: bool) -> None:
        self.rng = random.Random(seed)
        self.raw_detail = raw_detail
        self.customers = [
            (f"{self.rng.randrange(10**10, 10**12)}", f"US.{self.rng.randrange(10**15, 10**16)}")
            for _ in range(5_000)
        ]
        self.now = START_MS
        self.recent: list[str] = []
        self.line = 0

    def wamid(self) -> str:
        return "wamid.HBgL" + "".join(self.rng.choices(_B64, k=44)) + "=="

    def text(self, n: int) -> str:
        template = self.rng.choice(_TEXTS)
        return template.replace("{n}", str(n)).replace("{n3}", f"{n % 1000:03d}")

    def detail(self, field: str, path: str, extra: dict[str, object]) -> str:
        extra = {"v": 1, "field": field, "path": path, "time_source": "item", **extra}
        if self.raw_detail:
            extra["raw"] = {
                "from": extra.get("contact", {}).get("wa_id", BUSINESS_PHONE),  # type: ignore[union-attr]
                "id": self.wamid(),
                "timestamp": str(self.now // 1000),
                "type": "text",
                "text": {"body": self.text(self.line)},
                "metadata": {"display_phone_number": BUSINESS_PHONE, "phone_number_id": CHAIN_ID},
            }
        return _dumps(extra)

    def record(self, i: int) -> Record:
        rng = self.rng
        self.now += rng.randrange(1, 400)
        self.line += 1
        wa_id, user_id = rng.choice(self.customers)
        raw_key = (
            f"raw/v1/date=2025-01-{1 + (self.now - START_MS) // 86_400_000:02d}/"
            f"part-{i // 50_000:05d}.jsonl.zst"
        )
        common: dict[str, object] = {
            "chain_id": CHAIN_ID,
            "event_time": self.now,
            "received_time": self.now + rng.randrange(50, 2_000),
            "waba_id": WABA_ID,
            "business_phone": BUSINESS_PHONE,
            "customer_id": wa_id,
            "customer_wa_id": wa_id,
            "customer_user_id": user_id if rng.random() < 0.3 else None,
            "raw_key": raw_key,
            "raw_line": self.line % 50_000,
        }
        contact = {"profile": {"name": rng.choice(("Ana", "Олег", "李雷", "Fatima", "Raj"))}}
        roll = rng.random()
        if roll < 0.33:  # inbound customer message
            wamid = self.wamid()
            self.recent.append(wamid)
            text = self.text(i)
            context = rng.choice(self.recent[-50:]) if rng.random() < 0.1 else None
            detail = {"contact": {**contact, "wa_id": wa_id}}
            if context:
                detail["context"] = {"from": BUSINESS_PHONE, "id": context}
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("message", CHAIN_ID, wamid),
                kind="message",
                origin="customer",
                direction="inbound",
                wamid=wamid,
                msg_type="text",
                text=text,
                context_wamid=context,
                consent_state=rng.choice(("opted_in", "unknown", None)),
                window_open=True,
                detail=self.detail("messages", "entry[0].changes[0].value.messages[0]", detail),
            )
        if roll < 0.43:  # echo from the Business App
            wamid = self.wamid()
            self.recent.append(wamid)
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("message", CHAIN_ID, wamid),
                kind="echo",
                origin="business_app",
                direction="outbound",
                wamid=wamid,
                msg_type=rng.choice(("text", "text", "image")),
                text=self.text(i),
                media_id=str(rng.randrange(10**15, 10**16)) if rng.random() < 0.2 else None,
                window_open=rng.random() < 0.9,
                flags=("freeform_outside_window",) if rng.random() < 0.05 else (),
                detail=self.detail(
                    "smb_message_echoes", "entry[0].changes[0].value.message_echoes[0]", {}
                ),
            )
        if roll < 0.55:  # Cloud API send, free-form or template
            wamid = self.wamid()
            self.recent.append(wamid)
            template = rng.choice(_TEMPLATES) if rng.random() < 0.5 else None
            flags: tuple[str, ...] = ()
            if rng.random() < 0.04:
                flags = tuple(sorted(rng.sample(_FLAGS, rng.randrange(1, 3))))
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("outbound", CHAIN_ID, wamid),
                kind="outbound",
                origin="cloud_api",
                direction="outbound",
                wamid=wamid,
                msg_type="template" if template else "text",
                text=None if template else self.text(i),
                template_name=template[0] if template else None,
                template_language=template[1] if template else None,
                template_category=template[2] if template else None,
                template_status="APPROVED" if template else None,
                consent_state="opted_in" if template else None,
                window_open=rng.random() < 0.8,
                flags=flags,
                detail=self.detail("capture", f"sends[{i}]", {"sender": "crm-bridge"}),
            )
        if roll < 0.88:  # delivery status
            status = rng.choice(_STATUSES)
            wamid = rng.choice(self.recent[-200:]) if self.recent else self.wamid()
            failed = status == "failed"
            extra: dict[str, object] = {
                "conversation": {"id": f"{rng.getrandbits(64):016x}", "type": "service"},
                "pricing": {"billable": True, "category": "service", "pricing_model": "PMP"},
            }
            if failed:
                extra["errors"] = [{"code": 131047, "title": "Re-engagement message"}]
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("status", CHAIN_ID, wamid, status, self.now // 1000),
                kind="status",
                origin="cloud_api",
                direction="outbound",
                wamid=wamid,
                status=status,
                error_code=131047 if failed else None,
                detail=self.detail("messages", "entry[0].changes[0].value.statuses[0]", extra),
            )
        if roll < 0.95:  # history import
            wamid = self.wamid()
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("message", CHAIN_ID, wamid),
                kind="history_message",
                origin="history_import",
                direction=rng.choice(("inbound", "outbound")),
                wamid=wamid,
                msg_type="text",
                text=self.text(i),
                detail=self.detail(
                    "history", "entry[0].changes[0].value.history[0].threads[0].messages[0]", {}
                ),
            )
        if roll < 0.97:  # reaction or edit referring to an earlier message
            target = rng.choice(self.recent[-100:]) if self.recent else self.wamid()
            wamid = self.wamid()
            edit = rng.random() < 0.5
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("message", CHAIN_ID, wamid),
                kind="message_edit" if edit else "message",
                origin="customer",
                direction="inbound",
                wamid=wamid,
                msg_type="edit" if edit else "reaction",
                text=self.text(i) if edit else rng.choice(("👍", "❤️", "😂", "🙏")),
                context_wamid=target,
                ref_record_id=stable_id("message", CHAIN_ID, target),
                detail=self.detail("messages", "entry[0].changes[0].value.messages[0]", {}),
            )
        if roll < 0.985:  # consent event
            opted_out = rng.random() < 0.5
            return Record(
                **common,  # type: ignore[arg-type]
                record_id=stable_id("consent", CHAIN_ID, wa_id, self.now),
                kind="consent_event",
                origin="customer",
                direction="inbound",
                consent_state="opted_out" if opted_out else "opted_in",
                detail=self.detail(
                    "user_preferences",
                    "entry[0].changes[0].value.user_preferences[0]",
                    {"category": "marketing_messages", "value": "stop" if opted_out else "resume"},
                ),
            )
        return Record(  # contact change from the Business App's state sync
            **common,  # type: ignore[arg-type]
            record_id=stable_id("contact", CHAIN_ID, wa_id, self.now),
            kind="contact_change",
            origin="business_app",
            direction="none",
            detail=self.detail(
                "smb_app_state_sync",
                "entry[0].changes[0].value.state_sync[0]",
                {"action": rng.choice(("add", "edit", "remove")), "contact": contact},
            ),
        )


def iter_records(n: int, *, seed: int = 20250101, raw_detail: bool = False) -> Iterator[Record]:
    """The first ``n`` records of the stream for ``seed``."""
    gen = _Gen(seed, raw_detail)
    for i in range(n):
        yield gen.record(i)


def generate(n: int, *, seed: int = 20250101, raw_detail: bool = False) -> list[Record]:
    """``n`` records of chain :data:`CHAIN_ID`, in event-time order; deterministic per seed."""
    return list(iter_records(n, seed=seed, raw_detail=raw_detail))
