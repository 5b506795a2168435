"""Makes the golden evidence-bundle samples of this folder with the coexarchive on the path.

    PYTHONPATH=<tree>/src .venv/bin/python schemas/samples/bundles/make_samples.py <out dir>

writes ``<format>.zip`` (Zoë's conversation: a flagged template, its re-assessment, a poll, a
profile name with non-ASCII letters), ``<format>-hostile-header.zip`` (a customer whose profile
name holds CR, LF and a right-to-left override) and ``trust.txt``. Everything is fixed: the key
comes from a fixed seed, the records from this file, the store is in memory, and a bundle is
byte-identical for the same records and checkpoints, so the same tree makes the same samples.
It uses only what every release since ``coexarchive.bundle/v1`` has (see README.md here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

import coexarchive
from coexarchive.export.bundle import (
    BUNDLE_FORMAT,
    ExportRequest,
    Selection,
    build_bundle,
    zip_bytes,
)
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record, stable_id
from coexarchive.retention import ClassRetention, RetentionPolicy
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore

ARCHIVE = "coexarchive.sample"
CHAIN = "900000000000001"
ZOE = "447700900101"
MALLORY = "447700900666"
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
MINUTE_MS = 60_000
WABA_CHAIN = "waba-102290129340398"


def record(n: int, minute: int, **fields: object) -> Record:
    kind = str(fields.pop("kind", "message"))
    wamid = fields.pop("wamid", f"wamid.{CHAIN}.{n}")
    values: dict[str, object] = {
        "chain_id": CHAIN,
        "record_id": stable_id(kind, CHAIN, None if wamid is None else str(wamid), n),
        "kind": kind,
        "origin": "customer",
        "direction": "inbound",
        "event_time": START_MS + minute * MINUTE_MS,
        "received_time": START_MS + minute * MINUTE_MS + 900,
        "business_phone": "15550783881",
        "wamid": wamid,
        "msg_type": "text",
        "detail": orjson.dumps({"n": n}).decode(),
    }
    values.update(fields)
    return Record(**values)  # type: ignore[arg-type]


def profile(name: str) -> str:
    return orjson.dumps({"contact": {"profile": {"name": name}}}).decode()


def records() -> list[Record]:
    promo = record(
        3,
        12,
        kind="outbound",
        origin="cloud_api",
        direction="outbound",
        customer_id=ZOE,
        customer_wa_id=ZOE,
        msg_type="template",
        template_name="promo_spring",
        template_language="fr_FR",
        template_category="MARKETING",
        template_status="APPROVED",
        consent_state="unknown",
        flags=("marketing_without_consent",),
        detail=orjson.dumps(
            {
                "raw": {
                    "request": {
                        "type": "template",
                        "template": {
                            "name": "promo_spring",
                            "language": {"code": "fr_FR"},
                            "components": [
                                {
                                    "type": "body",
                                    "parameters": [
                                        {"type": "text", "text": "Zoë"},
                                        {"type": "text", "text": "31 mars"},
                                    ],
                                }
                            ],
                        },
                    }
                }
            }
        ).decode(),
    )
    poll = {
        "poll": {"question": "Quel créneau ?", "options": [{"name": "Matin"}, {"name": "Soir"}]}
    }
    return [
        record(
            1,
            10,
            customer_id=ZOE,
            customer_wa_id=ZOE,
            text="Bonjour, ma commande est-elle prête ?",
            detail=profile("Zoë Ångström-Núñez"),
        ),
        record(
            2,
            11,
            kind="outbound",
            origin="cloud_api",
            direction="outbound",
            customer_id=ZOE,
            customer_wa_id=ZOE,
            text="Oui, elle vous attend.",
            window_open=True,
        ),
        promo,
        record(
            4,
            14,
            kind="unsupported",
            customer_id=ZOE,
            customer_wa_id=ZOE,
            msg_type="poll",
            detail=orjson.dumps({"raw": poll, "unsupported_type": "poll"}).decode(),
        ),
        record(  # the consent was on file after all: the flag is withdrawn
            5,
            30,
            kind="assessment",
            origin="system",
            direction="none",
            wamid=None,
            msg_type=None,
            customer_id=ZOE,
            customer_wa_id=ZOE,
            ref_record_id=promo.record_id,
            flags=(),
            detail=orjson.dumps({"previous_flags": list(promo.flags)}).decode(),
        ),
        record(
            6,
            40,
            customer_id=MALLORY,
            customer_wa_id=MALLORY,
            text="hello",
            detail=profile("Mallory\r\nBcc: victims@evil.example\r\nX-Injected: 1 \u202eexe.txt"),
        ),
    ]


def catalogue() -> list[Record]:
    """The catalogue entry of the template sent (written from coexarchive.bundle/v3 on, whose
    renderings show a template send with the registry's text as of the send)."""
    entry = {
        "name": "promo_spring",
        "language": "fr_FR",
        "status": "APPROVED",
        "category": "MARKETING",
        "id": "1700000000000077",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Printemps"},
            {"type": "BODY", "text": "Bonjour {{1}}, -20 % sur <tout> jusqu'au {{2}} !"},
            {"type": "FOOTER", "text": "Répondez STOP pour ne plus recevoir nos offres"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]},
        ],
    }
    detail = {
        "v": 1,
        "field": "template_catalogue",
        "path": "$.data[0]",
        "time_source": "as_of",
        "template_id": entry["id"],
        "source": "catalogue.json",
        "raw": entry,
    }
    return [
        Record(
            chain_id=WABA_CHAIN,
            record_id=stable_id("template_catalogue", WABA_CHAIN, "promo_spring", START_MS),
            kind="template_event",
            origin="system",
            direction="none",
            event_time=START_MS,
            received_time=START_MS + MINUTE_MS,
            waba_id=WABA_CHAIN.removeprefix("waba-"),
            msg_type="template_catalogue",
            status="APPROVED",
            template_name="promo_spring",
            template_language="fr_FR",
            template_status="APPROVED",
            template_category="MARKETING",
            detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        )
    ]


def main(out: Path) -> None:
    key = Ed25519Signer.from_seed(ARCHIVE, b"coexarchive golden bundle sample")
    trust = TrustStore([key.verifier()])
    store = MemoryStore()
    writer = ChainWriter(
        store,
        CHAIN,
        signer=key,
        archive_name=ARCHIVE,
        policy=RetentionPolicy(default=ClassRetention(mode="GOVERNANCE", years=1)),  # type: ignore[arg-type]
    )
    writer.append(records())
    version = BUNDLE_FORMAT.rsplit("/", 1)[1]
    if int(version.removeprefix("v")) >= 3:
        ChainWriter(
            store, WABA_CHAIN, signer=key, archive_name=ARCHIVE, policy=writer.policy
        ).append(catalogue())
    out.mkdir(parents=True, exist_ok=True)
    for name, who in ((f"{version}.zip", ZOE), (f"{version}-hostile-header.zip", MALLORY)):
        request = ExportRequest(
            matter="SAMPLE-1",
            selection=Selection(customer=who),
            who="dana@legal",
            as_of=START_MS + 2 * 86_400_000,
            zone="Europe/Paris",
        )
        bundle = build_bundle(ArchiveCatalog(store), trust, request)
        (out / name).write_bytes(zip_bytes(bundle.files))
    (out / "trust.txt").write_text(key.verifier().to_text() + "\n")
    print(f"{BUNDLE_FORMAT} samples by coexarchive {coexarchive.__version__} in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
