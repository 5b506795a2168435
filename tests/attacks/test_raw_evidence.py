"""Raw evidence at ingest: only deliveries proven to come from Meta (or a capturing sender) are
sealed; forged, re-signed, altered and ambiguous ones are quarantined and kept.

The attacker holds the receiver's or ingest role's S3 rights: create-only puts under Object Lock
(``upload_raw``, exactly what the shipper does), no app secret and no signing key. Each raw object
lands on the real SeaweedFS server and goes through the real Beam ingest (``run_pipeline``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive import quarantine
from coexarchive.commands import upload_raw
from coexarchive.raw import (
    Delivery,
    DeliveryAuth,
    encode_landing,
    landing_key,
    secret_id,
    signature_header,
)
from coexarchive.retention import RetentionPolicy
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store.s3 import S3Store
from coexarchive.verify import chains_in
from pipelines.ingest import IngestSummary, SealSpec, StoreSpec, run_pipeline
from support.archive import signer

pytestmark = [pytest.mark.integration]

POLICY = RetentionPolicy.parse("GOVERNANCE:1")
CURRENT = b"current-app-secret-4f1c"
ROTATED_OUT = b"rotated-out-app-secret-77aa"
CAPTURE = b"capture-secret-19be"
T0 = 1_767_607_200  # 2026-01-05T10:00:00Z
CHAIN = "900000000000001"
AMBIGUOUS = "JSON parsers disagree on which value counts, so the body is ambiguous"


def message(wamid: str, text: str = "hello") -> dict[str, Any]:
    return {
        "from": "447700900123",
        "id": wamid,
        "timestamp": str(T0),
        "type": "text",
        "text": {"body": text},
    }


def webhook(*messages: dict[str, Any]) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": CHAIN},
        "messages": list(messages),
    }
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "800000000000001", "changes": [{"field": "messages", "value": value}]}
            ],
        }
    )


def capture(wamid: str) -> bytes:
    return orjson.dumps(
        {
            "phone_number_id": CHAIN,
            "request": {"messaging_product": "whatsapp", "to": "447700900123", "type": "text",
                        "text": {"body": "we shipped it"}},
            "response": {"messaging_product": "whatsapp", "messages": [{"id": wamid}]},
        }
    )  # fmt: skip


def signed(secret: bytes | None, body: bytes) -> dict[str, str]:
    return {} if secret is None else {"x-hub-signature-256": signature_header(secret, body)}


@dataclass(frozen=True)
class Attack:
    """One delivery as it lands, and what ingest must make of it."""

    name: str
    body: bytes
    headers: dict[str, str]
    reason: str | None  # the quarantine reason's start, or None when it must be sealed
    source: str = "webhook"
    wamid: str | None = None  # a wamid only this delivery carries


def attacks() -> list[Attack]:
    genuine = webhook(message("wamid.GENUINE"))
    altered_after_signing = webhook(message("wamid.ALTERED", "pay 10"))
    tampered = altered_after_signing.replace(b"pay 10", b"pay 99")
    # The same message twice under one key: orjson and Python keep the last, others the first.
    dup_body = webhook(message("wamid.DUPTEXT")).replace(
        b'"body":"hello"', b'"body":"hello","body":"goodbye"'
    )
    dup_message_id = webhook(message("wamid.DUPID")).replace(
        b'"id":"wamid.DUPID"', b'"id":"wamid.DUPID","id":"wamid.OTHER"'
    )
    dup_entry = webhook(message("wamid.DUPENTRY")).replace(b'"entry":[', b'"entry":[],"entry":[', 1)
    dup_metadata = webhook(message("wamid.DUPMETA")).replace(
        b'"phone_number_id":"900000000000001"',
        b'"phone_number_id":"900000000000001","phone_number_id":"900000000000666"',
    )
    invalid = "signature_invalid: "
    return [
        Attack("genuine", genuine, signed(CURRENT, genuine), None, wamid="wamid.GENUINE"),
        Attack(
            "forged_without_signature",
            webhook(message("wamid.NOSIG")),
            {},
            invalid + "the x-hub-signature-256 header is missing",
            wamid="wamid.NOSIG",
        ),
        Attack(
            "forged_with_own_secret",
            webhook(message("wamid.OWNSECRET")),
            signed(b"attacker-guess", webhook(message("wamid.OWNSECRET"))),
            invalid + "x-hub-signature-256 does not sign the body",
            wamid="wamid.OWNSECRET",
        ),
        Attack(
            "garbage_signature",
            webhook(message("wamid.GARBAGE")),
            {"x-hub-signature-256": "sha256=not-hex"},
            invalid + "x-hub-signature-256 does not sign the body",
            wamid="wamid.GARBAGE",
        ),
        Attack(
            "signed_with_rotated_out_secret",
            webhook(message("wamid.ROTATED")),
            signed(ROTATED_OUT, webhook(message("wamid.ROTATED"))),
            invalid + "x-hub-signature-256 does not sign the body",
            wamid="wamid.ROTATED",
        ),
        Attack(
            "body_altered_after_signing",
            tampered,
            signed(CURRENT, altered_after_signing),
            invalid + "x-hub-signature-256 does not sign the body",
            wamid="wamid.ALTERED",
        ),
        Attack(
            "capture_signed_with_app_secret",
            capture("wamid.CAPFORGED"),
            signed(CURRENT, capture("wamid.CAPFORGED")),
            invalid + "x-hub-signature-256 does not sign the body under any of the 1 configured "
            "capture secret(s)",
            source="outbound",
            wamid="wamid.CAPFORGED",
        ),
        Attack(
            "genuine_capture",
            capture("wamid.CAPTURED"),
            signed(CAPTURE, capture("wamid.CAPTURED")),
            None,
            source="outbound",
            wamid="wamid.CAPTURED",
        ),
        Attack(
            "duplicate_text_body",
            dup_body,
            signed(CURRENT, dup_body),
            f'duplicate key "entry[0].changes[0].value.messages[0].text.body": {AMBIGUOUS}',
            wamid="wamid.DUPTEXT",
        ),
        Attack(
            "duplicate_message_id",
            dup_message_id,
            signed(CURRENT, dup_message_id),
            f'duplicate key "entry[0].changes[0].value.messages[0].id": {AMBIGUOUS}',
            wamid="wamid.DUPID",
        ),
        Attack(
            "duplicate_routing_metadata",
            dup_metadata,
            signed(CURRENT, dup_metadata),
            f'duplicate key "entry[0].changes[0].value.metadata.phone_number_id": {AMBIGUOUS}',
            wamid="wamid.DUPMETA",
        ),
        Attack(
            "duplicate_top_level_entry",
            dup_entry,
            signed(CURRENT, dup_entry),
            f'duplicate key "entry": {AMBIGUOUS}',
            wamid="wamid.DUPENTRY",
        ),
    ]


ATTACKS = attacks()


@dataclass
class Outcome:
    key: str
    summary: IngestSummary
    quarantined: dict[int, Any]  # raw line → quarantined item
    rows: list[dict[str, Any]]


def land(store: S3Store, first_seq: int, deliveries: list[Attack]) -> str:
    """Write one raw object with the receiver role's create-only put, as the shipper would."""
    received = (T0 + 5) * 1000
    lines = [
        Delivery("rcv-attack", first_seq + n, received, a.source, a.headers, a.body)
        for n, a in enumerate(deliveries)
    ]
    key = landing_key("rcv-attack", first_seq, received)
    upload_raw(store, [(key, encode_landing(lines))], policy=POLICY)
    return key


def kept_body(payload: bytes, attack: Attack) -> bytes:
    if attack.reason is not None and attack.reason.startswith("signature_"):
        line = orjson.loads(payload)
        assert line["headers"] == attack.headers
        return str(line["body"]).encode()
    return payload


def sealed_rows(store: S3Store) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chain in chains_in(store):
        for manifest_key in list_manifests(store, chain):
            manifest = Manifest.from_bytes(store.get(manifest_key))
            table = read_segment(store.get(manifest.segment.key))
            rows += table.select(["wamid", "kind", "detail", "raw_line"]).to_pylist()
    return rows


def ingest(world: dict[str, Any], keys: list[str], auth: DeliveryAuth) -> IngestSummary:
    return run_pipeline(
        keys, world["spec"], world["seal"], PipelineOptions(["--runner=FnApiRunner"]), auth=auth
    )


@pytest.fixture(scope="module")
def world(seaweed: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
        patch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        store = seaweed.store(f"raw-attack-{uuid.uuid4().hex[:12]}")
        key_file: Path = tmp_path_factory.mktemp("keys") / "signing.key"
        signer().to_file(key_file)
        yield {
            "store": store,
            "spec": StoreSpec(
                store.bucket, endpoint_url=seaweed.endpoint_url, region_name="us-east-1"
            ),
            "seal": SealSpec(str(key_file), "coexarchive.test", "GOVERNANCE:1"),
        }
        store.client.close()


@pytest.fixture(scope="module")
def outcome(world: dict[str, Any]) -> Outcome:
    store = world["store"]
    key = land(store, 0, ATTACKS)
    # The current secret only: the rotated-out one is no longer configured.
    summary = ingest(world, [key], DeliveryAuth((CURRENT,), (CAPTURE,)))
    items = {entry.item.raw_line: entry.item for entry in quarantine.entries(store)}
    return Outcome(key, summary, items, sealed_rows(store))


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a.reason], ids=lambda a: a.name)
def test_unproven_or_ambiguous_delivery_is_quarantined_not_sealed(
    outcome: Outcome, attack: Attack
) -> None:
    line = ATTACKS.index(attack)
    item = outcome.quarantined[line]
    assert attack.reason is not None and item.reason.startswith(attack.reason), item.reason
    assert (item.raw_key, item.location) == (outcome.key, "$")
    # Kept as evidence: the exact bytes travel with the reason (a signature failure keeps the
    # whole landing line, with the signature header it came with).
    assert kept_body(item.payload, attack) == attack.body
    sealed = {row["wamid"] for row in outcome.rows}
    assert attack.wamid not in sealed
    assert not any(row["raw_line"] == line for row in outcome.rows)


def test_only_the_genuine_deliveries_are_sealed(outcome: Outcome) -> None:
    assert sorted(row["wamid"] for row in outcome.rows) == ["wamid.CAPTURED", "wamid.GENUINE"]
    assert outcome.summary.quarantined == len([a for a in ATTACKS if a.reason])
    assert outcome.summary.extra.get("signature_invalid") == len(
        [a for a in ATTACKS if a.reason and a.reason.startswith("signature_invalid")]
    )


def test_sealed_records_name_the_secret_that_verified_them(outcome: Outcome) -> None:
    details = {row["wamid"]: orjson.loads(row["detail"]) for row in outcome.rows}
    assert details["wamid.GENUINE"]["delivery_auth"] == "signature_verified"
    assert details["wamid.GENUINE"]["delivery_key_id"] == secret_id(CURRENT)
    assert details["wamid.CAPTURED"]["delivery_key_id"] == secret_id(CAPTURE)
    assert secret_id(CURRENT) == hashlib.sha256(CURRENT).hexdigest()[:8]
    # The id names the secret; the secret itself is nowhere in what was sealed.
    for row in outcome.rows:
        assert CURRENT.decode() not in row["detail"] and CAPTURE.decode() not in row["detail"]


def test_during_rotation_the_old_secret_still_verifies_and_is_named(
    world: dict[str, Any],
) -> None:
    store = world["store"]
    body = webhook(message("wamid.DURINGROTATION"))
    key = land(store, 100, [Attack("old", body, signed(ROTATED_OUT, body), None)])
    summary = ingest(world, [key], DeliveryAuth((CURRENT, ROTATED_OUT), (CAPTURE,)))
    assert summary.quarantined == 0
    [row] = [r for r in sealed_rows(store) if r["wamid"] == "wamid.DURINGROTATION"]
    assert orjson.loads(row["detail"])["delivery_key_id"] == secret_id(ROTATED_OUT)


def test_capture_without_a_capture_secret_is_not_sealed(world: dict[str, Any]) -> None:
    store = world["store"]
    body = capture("wamid.NOCAPSECRET")
    key = land(store, 200, [Attack("cap", body, signed(CAPTURE, body), None, source="outbound")])
    summary = ingest(world, [key], DeliveryAuth((CURRENT,)))
    assert summary.quarantined == 1 and summary.sealed == 0
    [item] = [e.item for e in quarantine.entries(store) if e.item.raw_key == key]
    assert item.reason.startswith("signature_unverifiable: no capture secret configured")
    assert "COEXARCHIVE_OUTBOUND_TOKEN" in item.reason
