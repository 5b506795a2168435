"""A small archive for evidence export: two chains, two customers, every record shape a transcript
and an RSMF file must show (echo, API send, statuses, media, edit, revoke, template with flags,
hostile text, right-to-left text, control characters, an account event with no customer)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from coexarchive.export.bundle import (
    Bundle,
    ExportRequest,
    Selection,
    build_bundle,
    manifest_text,
)
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.seal.personal import PersonalSealer
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
MIN = 60_000
HOSTILE = '<script>alert("x")</script><img src=https://evil.example/p.png>'
MALLORY = "447700900666"
# A WhatsApp profile name is whatever the customer typed: here one that tries to end the RSMF
# header it lands in and add its own (Bcc:, a second Subject:), with a NUL, a right-to-left
# override that would show "txt.exe" reversed, a C1 control, and far more than a header line holds.
HOSTILE_PROFILE = (
    "Mallory\r\nBcc: victims@evil.example\r\nSubject: pwned\nX-Injected: 1\x00"
    " \u202eexe.txt\x85 Zoë " + "long" * 300
)
AS_OF = START_MS + 10 * DAY_MS


def _detail(**values: object) -> str:
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()


def rec(chain: str, n: int, day: int, minute: int, **fields: object) -> Record:
    fields.setdefault("received_time", START_MS + day * DAY_MS + minute * MIN + 900)
    fields.setdefault("business_phone", "15550783881")
    return scenario_record(chain, n, day, minute, **fields)


def customer(
    chain: str, n: int, day: int, minute: int, who: str, text: str, **more: object
) -> Record:
    fields: dict[str, object] = {"customer_id": who, "customer_wa_id": who, "text": text}
    fields.update(more)
    return rec(chain, n, day, minute, **fields)


def business(chain: str, n: int, day: int, minute: int, who: str, **more: object) -> Record:
    fields: dict[str, object] = {
        "kind": "outbound",
        "origin": "cloud_api",
        "direction": "outbound",
        "customer_id": who,
        "customer_wa_id": who,
    }
    fields.update(more)
    return rec(chain, n, day, minute, **fields)


def chain_a() -> list[Record]:
    return [
        customer(
            CHAIN_A,
            1,
            0,
            10,
            ALICE,
            "Hi, is my order ready?",
            detail=_detail(contact={"profile": {"name": "Alice Example"}}),
        ),
        business(CHAIN_A, 2, 0, 12, ALICE, text="Yes, ready for pickup", window_open=True),
        rec(
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
        rec(
            CHAIN_A,
            4,
            0,
            14,
            kind="status",
            origin="cloud_api",
            direction="outbound",
            wamid=f"wamid.{CHAIN_A}.2",
            status="read",
            customer_id=ALICE,
            msg_type=None,
        ),
        business(
            CHAIN_A,
            5,
            0,
            20,
            ALICE,
            kind="echo",
            origin="business_app",
            text="Sent from the shop phone 📱",
        ),
        customer(
            CHAIN_A,
            6,
            0,
            21,
            ALICE,
            "",
            msg_type="image",
            media_id="media-777",
            detail=_detail(
                media={"mime_type": "image/jpeg", "sha256": "abc=", "filename": "receipt.jpg"}
            ),
        ),
        customer(CHAIN_A, 7, 0, 22, ALICE, "Sorry, wrong photo"),
        customer(
            CHAIN_A,
            8,
            0,
            23,
            ALICE,
            "Sorry, right photo",
            kind="message_edit",
            msg_type="edit",
            wamid=None,
            context_wamid=f"wamid.{CHAIN_A}.7",
        ),
        customer(
            CHAIN_A,
            9,
            0,
            24,
            ALICE,
            None,
            kind="message_revoke",
            msg_type="revoke",
            wamid=None,
            context_wamid=f"wamid.{CHAIN_A}.6",
        ),
        business(
            CHAIN_A,
            10,
            1,
            5,
            ALICE,
            msg_type="template",
            template_name="promo_spring",
            template_language="en_US",
            template_category="MARKETING",
            template_status="APPROVED",
            consent_state="unknown",
            flags=("marketing_without_consent",),
        ),
        customer(CHAIN_A, 11, 1, 6, ALICE, HOSTILE),
        customer(CHAIN_A, 12, 1, 7, ALICE, "مرحبا \u202eevil\u202c bell\x07 line\nbreak"),
        customer(CHAIN_A, 13, 1, 8, BOB, "Bob here, any news?"),
        business(CHAIN_A, 14, 2, 9, BOB, text="Not yet, Bob", window_open=True),
        rec(
            CHAIN_A,
            15,
            2,
            30,
            kind="account_event",
            origin="system",
            direction="none",
            wamid=None,
            msg_type="account_update",
            status="PARTNER_REMOVED",
            flags=("capture_gap",),
        ),
    ]


def chain_b() -> list[Record]:
    return [
        customer(CHAIN_B, 1, 0, 40, ALICE, "Second number, same customer"),
        business(CHAIN_B, 2, 0, 41, ALICE, text="Hello from the other branch"),
    ]


@dataclass
class Evidence:
    store: ObjectStore
    key: Ed25519Signer
    trust: TrustStore


def hostile_profile_records() -> list[Record]:
    """Messages from a customer whose profile name attacks the headers it is written into."""
    return [
        customer(
            CHAIN_B,
            3,
            0,
            50,
            MALLORY,
            "hello",
            detail=_detail(contact={"profile": {"name": HOSTILE_PROFILE}}),
        ),
        business(CHAIN_B, 4, 0, 51, MALLORY, text="Hello, how can we help?"),
    ]


def build_evidence(
    store: ObjectStore,
    *,
    policy: RetentionPolicy | None = None,
    extra: Sequence[Record] = (),
    key: Ed25519Signer | None = None,
    personal: PersonalSealer | None = None,
) -> Evidence:
    key = key or signer()
    for chain, records in ((CHAIN_A, chain_a()), (CHAIN_B, chain_b())):
        writer = ChainWriter(
            store,
            chain,
            signer=key,
            archive_name=ARCHIVE,
            policy=policy or short_policy(),
            personal=personal,
        )
        by_day: dict[int, list[Record]] = {}
        for record in [*records, *(r for r in extra if r.chain_id == chain)]:
            by_day.setdefault((record.event_time - START_MS) // DAY_MS, []).append(record)
        for _day, group in sorted(by_day.items()):
            writer.append(group)
    return Evidence(store, key, trust_for(key))


def request(
    *,
    who: str = "dana@legal",
    as_of: int = AS_OF,
    selection: Selection | None = None,
    zone: str = "Europe/London",
    **more: object,
) -> ExportRequest:
    return ExportRequest(
        matter="SEC-2026-001",
        selection=selection or Selection(customer=ALICE),
        who=who,
        as_of=as_of,
        zone=zone,
        **more,  # type: ignore[arg-type]
    )


def alice_bundle(evidence: Evidence, **more: object) -> Bundle:
    return build_bundle(ArchiveCatalog(evidence.store), evidence.trust, request(**more))


def reseal(files: dict[str, bytes]) -> dict[str, bytes]:
    """What an attacker does next: recompute MANIFEST and the custody entry's hash of it."""
    files["MANIFEST"] = manifest_text(files)
    custody = orjson.loads(files["CUSTODY.json"])
    custody["manifest_sha256"] = hashlib.sha256(files["MANIFEST"]).hexdigest()
    files["CUSTODY.json"] = orjson.dumps(custody)
    return files
