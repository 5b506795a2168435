"""A :class:`~coexarchive.seal.keys.Signer` whose Ed25519 key lives in AWS KMS and never leaves it.

The key must be ``KeySpec=ECC_NIST_EDWARDS25519``, ``KeyUsage=SIGN_VERIFY``. Notes are signed with
``SigningAlgorithm=ED25519_SHA_512`` and ``MessageType=RAW``: pure Ed25519 (RFC 8032) over the note
body, the signature C2SP signed notes carry (``ED25519_PH_SHA_512`` is the pre-hashed variant, which
ordinary Ed25519 verifiers reject). KMS signs RAW messages of at most 4096 bytes.

Every signature KMS returns is verified against the key's public key before it is used: a KMS key
that is not what its metadata says, or an answer from elsewhere, stops sealing instead of writing a
checkpoint no reader could verify (fail closed).
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coexarchive.errors import ConfigError, SealError, SignatureError
from coexarchive.seal.keys import Verifier, check_key_name

KEY_SPEC = "ECC_NIST_EDWARDS25519"
SIGNING_ALGORITHM = "ED25519_SHA_512"
MAX_MESSAGE = 4096  # KMS's limit for MessageType=RAW


def _describe(error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return f"{type(error).__name__}: {error}"


class KmsEd25519Signer:
    """Signs C2SP notes with a KMS Ed25519 key, as the note key ``name``.

    ``kms_key`` is a key id, key ARN, alias name or alias ARN. The public key is read once, here;
    its verifier line (:meth:`verifier_key`) goes in the trust file like a file key's.
    """

    def __init__(
        self,
        name: str,
        kms_key: str,
        *,
        client: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self._name = check_key_name(name)
        self.kms_key = kms_key
        if client is None:
            import boto3

            client = boto3.client(
                "kms",
                region_name=region_name,
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=5,
                    read_timeout=10,
                    retries={"mode": "standard", "total_max_attempts": 3},
                ),
            )
        self._client = client
        try:
            described = client.get_public_key(KeyId=kms_key)
        except (ClientError, BotoCoreError) as error:
            raise ConfigError(
                f"cannot read the public key of KMS key {kms_key!r}: {_describe(error)}"
            ) from None
        spec = described.get("KeySpec")
        usage = described.get("KeyUsage")
        if spec != KEY_SPEC or usage != "SIGN_VERIFY":
            raise ConfigError(
                f"KMS key {kms_key!r} is {spec}/{usage}; checkpoints need an Ed25519 signing key "
                f"({KEY_SPEC}, SIGN_VERIFY)"
            )
        if SIGNING_ALGORITHM not in described.get("SigningAlgorithms", []):
            raise ConfigError(f"KMS key {kms_key!r} does not offer {SIGNING_ALGORITHM}")
        try:
            public = serialization.load_der_public_key(bytes(described["PublicKey"]))
        except (KeyError, ValueError) as error:
            raise ConfigError(f"KMS key {kms_key!r}: unreadable public key ({error})") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"KMS key {kms_key!r}: its public key is not an Ed25519 key")
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._verifier = Verifier(self._name, raw)

    def __repr__(self) -> str:
        return f"KmsEd25519Signer({self._name!r}, {self.kms_key!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    @property
    def public_key(self) -> bytes:
        return self._verifier.public_key

    def verifier_key(self) -> str:
        """The public verifier key line for trust files."""
        return self._verifier.to_text()

    def verifier(self) -> Verifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``, made by KMS and checked here."""
        message = bytes(message)
        if len(message) > MAX_MESSAGE:
            raise SealError(
                f"a {len(message)}-byte note body is over KMS's {MAX_MESSAGE}-byte limit for raw "
                "Ed25519 signing; sign it with a key file instead"
            )
        try:
            answer = self._client.sign(
                KeyId=self.kms_key,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except (ClientError, BotoCoreError) as error:
            raise SealError(f"KMS key {self.kms_key!r} did not sign: {_describe(error)}") from None
        signature = bytes(answer.get("Signature", b""))
        if answer.get("SigningAlgorithm", SIGNING_ALGORITHM) != SIGNING_ALGORITHM:
            raise SealError(
                f"KMS key {self.kms_key!r} signed with {answer.get('SigningAlgorithm')}, "
                f"not {SIGNING_ALGORITHM}"
            )
        try:
            self._verifier.verify(message, signature)
        except (SignatureError, ValueError):
            raise SealError(
                f"KMS key {self.kms_key!r} returned a signature that does not verify under its "
                "public key; nothing was sealed with it"
            ) from None
        return signature
