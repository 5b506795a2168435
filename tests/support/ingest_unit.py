"""Small signed webhook deliveries and a locked moto bucket, for ingest's unit tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from coexarchive.raw import Delivery, DeliveryAuth, encode_landing, landing_key, signature_header
from coexarchive.store.s3 import S3Store, create_locked_bucket
from support.archive import signer

T0 = 1_767_607_200  # 2026-01-05T10:00:00Z
SECRET = b"unit-secret"
AUTH = DeliveryAuth((SECRET,))


def webhook_body(
    messages: Sequence[tuple[str, str]], *, phone_number_id: str = "900000000000001"
) -> bytes:
    """A messages webhook from one customer, one text message per (wamid, text), a second apart."""
    items = ",".join(
        f'{{"from":"447700900123","id":"{wamid}","timestamp":"{T0 + i}","type":"text",'
        f'"text":{{"body":"{text}"}}}}'
        for i, (wamid, text) in enumerate(messages)
    )
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"800000000000001","changes":[{'
        '"field":"messages","value":{"messaging_product":"whatsapp","metadata":{'
        f'"display_phone_number":"15550001111","phone_number_id":"{phone_number_id}"}},'
        f'"contacts":[{{"profile":{{"name":"A"}},"wa_id":"447700900123"}}],"messages":[{items}]}}'
        "}]}]}"
    ).encode()


def landing(seq: int, *bodies: bytes) -> tuple[str, bytes]:
    """A raw landing object holding ``bodies`` as deliveries signed with :data:`SECRET`."""
    deliveries = [
        Delivery(
            receiver_id="unit",
            seq=seq + i,
            received_at=(T0 + 5) * 1000,
            source="webhook",
            headers={"x-hub-signature-256": signature_header(SECRET, b)},
            body=b,
        )
        for i, b in enumerate(bodies)
    ]
    return landing_key("unit", seq, (T0 + 5) * 1000), encode_landing(deliveries)


@contextmanager
def moto_locked_store(monkeypatch: pytest.MonkeyPatch, bucket: str) -> Iterator[S3Store]:
    """An Object Lock bucket on moto's in-process S3."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        create_locked_bucket(client, bucket)
        yield S3Store(bucket, client=client)


def signing_key_file(directory: Path) -> str:
    path = directory / "signing.key"
    signer().to_file(path)
    return str(path)
