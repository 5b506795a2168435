"""Receipts become ``media`` records; only receipts signed with the media secret are sealed."""

from __future__ import annotations

import orjson
import pytest

from coexarchive.media.receipt import Cause, MediaRef, Outcome, Receipt, sha256_as_hex
from coexarchive.normalize import normalize_delivery
from coexarchive.raw import Delivery, DeliveryAuth, signature_header
from coexarchive.records import stable_id

REF = MediaRef(
    chain_id="900000000000001",
    media_id="1900000000000001",
    record_id="a" * 32,
    wamid="wamid.X",
    kind="message",
    msg_type="image",
    mime_type="image/jpeg",
    advertised_sha256=None,
    captured_time=1_767_607_200_000,
    customer_id="447700900123",
)
SHA = "ab" * 32
STORED = Receipt(
    REF,
    Outcome.STORED,
    1_767_607_260_000,
    1,
    sha256=SHA,
    size=10,
    mime_type="image/jpeg",
    object_key=f"media/v1/sha256={SHA}",
    stored="created",
)
FAILED = Receipt(REF, Outcome.FAILED, 1_767_607_260_000, 5, cause=Cause.EXPIRED)
SECRET = b"media-secret"


def normalize(body: bytes) -> object:
    return normalize_delivery(body, raw_key="raw/k", raw_line=0, received_time=1, source="media")


def test_stored_receipt_is_a_media_record_bound_to_its_message() -> None:
    result = normalize(STORED.body())
    (record,) = result.records  # type: ignore[attr-defined]
    assert (record.kind, record.status, record.flags) == ("media", "stored", ())
    assert record.ref_record_id == REF.record_id and record.wamid == "wamid.X"
    assert record.record_id == stable_id("media", REF.chain_id, REF.media_id)
    assert orjson.loads(record.detail)["raw"]["sha256"] == SHA


def test_document_file_name_goes_to_text_not_to_the_plaintext_detail() -> None:
    import dataclasses

    document = dataclasses.replace(
        STORED, ref=dataclasses.replace(REF, msg_type="document", filename="Jane Roe payslip.pdf")
    )
    (record,) = normalize(document.body()).records  # type: ignore[attr-defined]
    assert record.text == "Jane Roe payslip.pdf"
    assert "Jane Roe" not in record.detail
    assert orjson.loads(record.detail)["raw"]["sha256"] == SHA
    (image,) = normalize(STORED.body()).records  # type: ignore[attr-defined]
    assert image.text is None


def test_failed_receipt_carries_the_gap_flag_and_the_same_identity() -> None:
    (record,) = normalize(FAILED.body()).records  # type: ignore[attr-defined]
    assert (record.status, record.flags) == ("failed", ("media_gap",))
    assert orjson.loads(record.detail)["raw"]["cause"] == "expired"
    # One record per media id whatever the outcome: a second receipt is a duplicate.
    assert record.record_id == stable_id("media", REF.chain_id, REF.media_id)


@pytest.mark.parametrize(
    "change",
    [
        {"object_key": "media/v1/sha256=" + "cd" * 32},  # key of other bytes
        {"object_key": "archive/v1/x"},
        {"outcome": "maybe"},
        {"cause": "expired"},  # a stored outcome with a cause
        {"format": "something-else"},
        {"phone_number_id": "../etc"},
        {"fetched_at": "soon"},
        {"size": -1},
    ],
)
def test_malformed_receipts_are_quarantined(change: dict[str, object]) -> None:
    tree = orjson.loads(STORED.body()) | change
    result = normalize(orjson.dumps(tree))
    assert result.records == [] and len(result.quarantined) == 1  # type: ignore[attr-defined]


def _delivery(body: bytes, secret: bytes, source: str = "media") -> Delivery:
    return Delivery(
        "media-1", 0, 1, source, {"x-hub-signature-256": signature_header(secret, body)}, body
    )


def test_only_the_media_secret_authenticates_a_receipt() -> None:
    auth = DeliveryAuth((b"app",), (b"capture",), media_secrets=(SECRET,))
    body = STORED.body()
    assert not isinstance(auth.check(_delivery(body, SECRET)), str)
    for forged_with in (b"app", b"capture", b"guess"):
        verdict = auth.check(_delivery(body, forged_with))
        assert isinstance(verdict, str) and verdict.startswith("signature_invalid")
    # A receipt relabelled as a webhook or capture does not verify under their secrets either.
    assert isinstance(auth.check(_delivery(body, SECRET, source="webhook")), str)
    assert isinstance(auth.check(_delivery(body, SECRET, source="outbound")), str)


def test_without_a_media_secret_receipts_are_unverifiable() -> None:
    verdict = DeliveryAuth((b"app",)).check(_delivery(STORED.body(), SECRET))
    assert isinstance(verdict, str) and "COEXARCHIVE_MEDIA_SECRETS" in verdict


@pytest.mark.parametrize(
    ("text", "hex_digest"),
    [
        ("q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=", "abcdef" * 10 + "abcd"),
        ("ABCDEF" * 10 + "ABCD", "abcdef" * 10 + "abcd"),
        ("not a hash", None),
        ("", None),
        ("q83v", None),
    ],
)
def test_meta_sha256_is_read_as_hex_or_base64(text: str, hex_digest: str | None) -> None:
    assert sha256_as_hex(text) == hex_digest
