"""The KMS signer: pure Ed25519 over the note body, and nothing KMS returns is trusted unchecked.

moto has no Ed25519 KMS keys, so KMS is stubbed (botocore Stubber) and the "KMS" signature is made
with a local key; the stub also checks that every request carries RAW / ED25519_SHA_512.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coexarchive.errors import ConfigError, SealError
from coexarchive.seal.checkpoint import open_note, sign_note
from coexarchive.seal.keys import Signer, TrustStore, Verifier
from coexarchive.seal.kms import KmsEd25519Signer

KEY = "alias/coexarchive-checkpoint-signing"
ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def der(private: Any) -> bytes:
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def public_key_answer(private: Any, **changes: Any) -> dict[str, Any]:
    answer = {
        "KeyId": ARN,
        "PublicKey": der(private),
        "KeySpec": "ECC_NIST_EDWARDS25519",
        "KeyUsage": "SIGN_VERIFY",
        "SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"],
    }
    return answer | changes


@pytest.fixture
def kms() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "kms", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def expect_sign(stub: Stubber, message: bytes, signature: bytes) -> None:
    stub.add_response(
        "sign",
        {"KeyId": ARN, "Signature": signature, "SigningAlgorithm": "ED25519_SHA_512"},
        {
            "KeyId": KEY,
            "Message": message,
            "MessageType": "RAW",
            "SigningAlgorithm": "ED25519_SHA_512",
        },
    )


def test_a_note_signed_through_kms_opens_with_the_trust_file(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    inside = Ed25519PrivateKey.generate()
    stub.add_response("get_public_key", public_key_answer(inside), {"KeyId": KEY})
    signer = KmsEd25519Signer("firm.example", KEY, client=client)
    assert isinstance(signer, Signer)
    body = b"firm/coexarchive/v1/chain/900000000000001\n3\n" + b"A" * 43 + b"=\n"
    expect_sign(stub, body, inside.sign(body))
    note = sign_note(body, [signer])
    trust = TrustStore([Verifier.parse(signer.verifier_key())])
    opened, names = open_note(note, trust)
    assert opened == body and names == ["firm.example"]


def test_a_signature_from_another_key_stops_sealing(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    stub.add_response(
        "get_public_key", public_key_answer(Ed25519PrivateKey.generate()), {"KeyId": KEY}
    )
    signer = KmsEd25519Signer("firm.example", KEY, client=client)
    expect_sign(stub, b"body\n", Ed25519PrivateKey.generate().sign(b"body\n"))
    with pytest.raises(SealError, match="does not verify under its public key"):
        signer.sign(b"body\n")


def test_a_truncated_signature_stops_sealing(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    inside = Ed25519PrivateKey.generate()
    stub.add_response("get_public_key", public_key_answer(inside), {"KeyId": KEY})
    signer = KmsEd25519Signer("firm.example", KEY, client=client)
    expect_sign(stub, b"body\n", inside.sign(b"body\n")[:63])
    with pytest.raises(SealError, match="does not verify"):
        signer.sign(b"body\n")


@pytest.mark.parametrize(
    "changes",
    [
        {"KeySpec": "ECC_NIST_P256"},
        {"KeyUsage": "ENCRYPT_DECRYPT"},
        {"SigningAlgorithms": ["ED25519_PH_SHA_512"]},
    ],
)
def test_a_key_that_is_not_a_pure_ed25519_signing_key_is_refused(
    kms: tuple[Any, Stubber], changes: dict[str, Any]
) -> None:
    client, stub = kms
    answer = public_key_answer(Ed25519PrivateKey.generate(), **changes)
    stub.add_response("get_public_key", answer, {"KeyId": KEY})
    with pytest.raises(ConfigError, match=KEY):
        KmsEd25519Signer("firm.example", KEY, client=client)


def test_a_public_key_of_another_kind_is_refused(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    answer = public_key_answer(generate_private_key(SECP256R1()))
    stub.add_response("get_public_key", answer, {"KeyId": KEY})
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        KmsEd25519Signer("firm.example", KEY, client=client)


def test_kms_refusals_are_one_line(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    stub.add_client_error("get_public_key", "AccessDeniedException", "not for you")
    with pytest.raises(ConfigError) as caught:
        KmsEd25519Signer("firm.example", KEY, client=client)
    assert "AccessDeniedException: not for you" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_refused_sign_call_stops_sealing(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    stub.add_response(
        "get_public_key", public_key_answer(Ed25519PrivateKey.generate()), {"KeyId": KEY}
    )
    signer = KmsEd25519Signer("firm.example", KEY, client=client)
    stub.add_client_error("sign", "DisabledException", "key disabled")
    with pytest.raises(SealError, match="DisabledException"):
        signer.sign(b"body\n")


def test_bodies_over_the_kms_limit_are_refused_before_any_call(kms: tuple[Any, Stubber]) -> None:
    client, stub = kms
    stub.add_response(
        "get_public_key", public_key_answer(Ed25519PrivateKey.generate()), {"KeyId": KEY}
    )
    signer = KmsEd25519Signer("firm.example", KEY, client=client)
    with pytest.raises(SealError, match="4096-byte limit"):
        signer.sign(b"x" * 4097)  # no sign response queued: a call would fail the stub
