"""A small archive with known answers for the auditor reports.

Two business chains over three days; every flag of DESIGN §5 is set on known records; consent
events, template events, a failed status, an account disconnect and quarantined input.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from coexarchive import quarantine
from coexarchive.normalize import Quarantined
from coexarchive.query.access_log import AccessLog
from coexarchive.query.session import AuditSession
from coexarchive.records import Record
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store.base import ObjectStore
from support.archive import (
    ARCHIVE,
    DAY_MS,
    START_MS,
    scenario_record,
    short_policy,
    signer,
    trust_for,
)

CHAIN_A = "900000000000001"
CHAIN_B = "900000000000002"
ALICE = "447700900001"
BOB = "447700900002"
CAROL = "447700900003"
MIN = 60_000


_rec = scenario_record


def out(chain: str, n: int, day: int, minute: int, customer: str, **fields: object) -> Record:
    values: dict[str, object] = {
        "kind": "outbound",
        "origin": "cloud_api",
        "direction": "outbound",
        "customer_id": customer,
        "customer_wa_id": customer,
        "text": f"outbound {n}",
    }
    values.update(fields)
    return _rec(chain, n, day, minute, **values)


def inbound(chain: str, n: int, day: int, minute: int, customer: str, text: str) -> Record:
    return _rec(chain, n, day, minute, customer_id=customer, customer_wa_id=customer, text=text)


def chain_a() -> list[Record]:
    return [
        inbound(CHAIN_A, 1, 0, 10, ALICE, "Hi, is my order ready?"),
        out(CHAIN_A, 2, 0, 12, ALICE, text="Yes, ready for pickup", window_open=True),
        _rec(
            CHAIN_A,
            3,
            0,
            13,
            kind="status",
            origin="cloud_api",
            direction="outbound",
            wamid=f"wamid.{CHAIN_A}.2",
            status="delivered",
            customer_id=ALICE,
            msg_type=None,
        ),
        _rec(
            CHAIN_A,
            4,
            0,
            30,
            kind="consent_event",
            wamid=None,
            customer_id=BOB,
            customer_wa_id=BOB,
            msg_type="marketing_messages",
            status="stop",
        ),
        out(
            CHAIN_A,
            5,
            1,
            5,
            BOB,
            msg_type="template",
            text=None,
            template_name="promo_spring",
            template_language="en_US",
            template_category="MARKETING",
            template_status="APPROVED",
            consent_state="opted_out",
            flags=("marketing_without_consent", "sent_after_opt_out"),
        ),
        out(
            CHAIN_A,
            6,
            1,
            6,
            ALICE,
            msg_type="template",
            text=None,
            template_name="order_update",
            template_language="en_US",
            template_category="UTILITY",
            template_status="APPROVED",
            consent_state="opted_in",
        ),
        out(
            CHAIN_A,
            7,
            1,
            7,
            CAROL,
            msg_type="template",
            text=None,
            template_name="promo_spring",
            template_language="en_US",
            template_category="MARKETING",
            template_status="PAUSED",
            flags=("template_not_approved",),
        ),
        out(
            CHAIN_A,
            8,
            1,
            50,
            CAROL,
            text="Are you there?",
            window_open=False,
            flags=("freeform_outside_window",),
        ),
        _rec(
            CHAIN_A,
            9,
            1,
            51,
            kind="status",
            origin="cloud_api",
            direction="outbound",
            wamid=f"wamid.{CHAIN_A}.8",
            status="failed",
            error_code=131047,
            msg_type=None,
            customer_id=CAROL,
        ),
        _rec(
            CHAIN_A,
            10,
            2,
            1,
            kind="status",
            origin="cloud_api",
            direction="outbound",
            wamid="wamid.never.captured",
            status="read",
            msg_type=None,
            flags=("status_without_message",),
        ),
        _rec(
            CHAIN_A,
            11,
            2,
            2,
            kind="account_event",
            origin="system",
            direction="none",
            wamid=None,
            msg_type="account_update",
            status="PARTNER_REMOVED",
            flags=("capture_gap",),
        ),
        inbound(CHAIN_A, 12, 2, 3, ALICE, "Thanks!! 👍"),
        _rec(
            CHAIN_A,
            13,
            2,
            4,
            kind="template_event",
            origin="system",
            direction="none",
            wamid=None,
            msg_type="template_status",
            status="PAUSED",
            template_name="promo_spring",
            template_status="PAUSED",
        ),
    ]


def chain_b() -> list[Record]:
    return [
        inbound(CHAIN_B, 1, 0, 20, ALICE, "Olá! Preço?"),
        out(
            CHAIN_B,
            2,
            0,
            21,
            ALICE,
            text="R$ 10",
            window_open=True,
            origin="business_app",
            kind="echo",
        ),
        out(
            CHAIN_B,
            3,
            2,
            0,
            BOB,
            msg_type="template",
            text=None,
            template_name="promo_spring",
            template_language="pt_BR",
            template_category="MARKETING",
            template_status="APPROVED",
            flags=("marketing_without_consent",),
        ),
        _rec(
            CHAIN_B,
            4,
            2,
            9,
            kind="account_event",
            origin="system",
            direction="none",
            wamid=None,
            msg_type="history_declined",
            status="declined",
            flags=("history_declined",),
        ),
    ]


@dataclass
class Fixture:
    store: ObjectStore
    key: Ed25519Signer
    trust: TrustStore
    writers: dict[str, ChainWriter]

    def session(
        self, who: str = "auditor@example.com", clock_ms: int = START_MS + 9 * DAY_MS
    ) -> AuditSession:
        ticks = iter(range(clock_ms, clock_ms + 10**9, 1_000))
        log = AccessLog(self.store, signer=self.key, archive_name=ARCHIVE, policy=short_policy())
        return AuditSession(
            self.store, access_log=log, who=who, trust=self.trust, clock=lambda: next(ticks)
        )


def build_archive(store: ObjectStore, *, extra: dict[str, list[Record]] | None = None) -> Fixture:
    key = signer()
    writers = {}
    for chain, records in ((CHAIN_A, chain_a()), (CHAIN_B, chain_b()), *(extra or {}).items()):
        writer = ChainWriter(store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
        by_day: dict[int, list[Record]] = {}
        for record in records:
            by_day.setdefault((record.event_time - START_MS) // DAY_MS, []).append(record)
        for _day, group in sorted(by_day.items()):
            writer.append(group)
        writers[chain] = writer
    quarantine.write(
        store,
        "raw/date=2026-01-06/sim-00000000000000000003.jsonl.zst",
        [
            Quarantined(
                "raw/date=2026-01-06/sim-00000000000000000003.jsonl.zst",
                4,
                "invalid JSON",
                "$",
                b"{not json",
            )
        ],
        policy=short_policy(),
    )
    return Fixture(store, key, trust_for(key), writers)


def with_text(record: Record, text: str) -> Record:
    return replace(record, text=text)
