"""RFC 3161 timestamp authorities: which ones to ask, asking them, and checking their tokens.

A *TSA file* names the authorities, one per line (blank lines and ``#`` comments ignored)::

    <name> <url> <roots PEM file>

``name`` is how heads and object keys refer to the authority; ``url`` takes RFC 3161 requests
over HTTP(S) (``application/timestamp-query``); the PEM file holds the root certificate(s) its
tokens must chain to, relative to the TSA file's directory. ``verify`` reads the same file and
ignores the URLs: it only needs each name's roots.

A token is the whole DER ``TimeStampResp`` the authority returned, stored as is. It is checked
(``check_token``) by: status granted; the CMS signature and the signer's certificate chain to one
of the configured roots, valid at the token's own time (``genTime``); the signer's certificate
carries the critical ``timeStamping`` extended key usage; the message imprint is the SHA-256 of
exactly the note text that was to be timestamped.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import rfc3161_client
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerifierBuilder,
    decode_timestamp_response,
)

from coexarchive.errors import AnchorError, ConfigError, FormatError, SignatureError
from coexarchive.seal.head import check_anchor_name

__all__ = [
    "TOKEN_CONTENT_TYPE",
    "CheckedToken",
    "Tsa",
    "check_token",
    "load_tsa_file",
    "request_timestamp",
]

QUERY_CONTENT_TYPE = "application/timestamp-query"
TOKEN_CONTENT_TYPE = "application/timestamp-reply"  # noqa: S105 - a media type
# A response larger than this is not a timestamp token.
_MAX_RESPONSE = 64 * 1024
_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


@dataclass(frozen=True)
class Tsa:
    """One configured timestamp authority."""

    name: str
    url: str
    roots: tuple[x509.Certificate, ...]
    roots_pem: bytes

    def __post_init__(self) -> None:
        check_anchor_name(self.name)
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"TSA {self.name}: URL {self.url!r} is not http(s)")
        if not self.roots:
            raise ConfigError(f"TSA {self.name}: no root certificate configured")


def load_roots(pem: bytes, what: str) -> tuple[x509.Certificate, ...]:
    try:
        roots = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise ConfigError(f"{what}: not PEM certificates ({exc})") from None
    if not roots:
        raise ConfigError(f"{what}: holds no certificate")
    return roots


def load_tsa_file(path: Path) -> list[Tsa]:
    """Parse a TSA file; :class:`ConfigError` naming the line on any mistake."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"TSA file {path}: {exc.strerror or exc}") from None
    found: dict[str, Tsa] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"TSA file {path} line {number}"
        if len(parts) != 3:
            raise ConfigError(f"{where}: expected '<name> <url> <roots PEM file>'")
        name, url, roots_file = parts
        try:
            check_anchor_name(name)
        except FormatError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if name in found:
            raise ConfigError(f"{where}: TSA {name} is named twice")
        roots_path = (path.parent / roots_file).expanduser()
        try:
            pem = roots_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: roots file {roots_path}: {exc.strerror or exc}") from None
        found[name] = Tsa(name, url, load_roots(pem, f"{where}: {roots_path}"), pem)
    return list(found.values())


def request_timestamp(tsa: Tsa, message: bytes, *, timeout: float = 10.0) -> bytes:
    """Ask ``tsa`` for a token over SHA-256(``message``); the DER response, checked.

    :class:`AnchorError` if the authority is unreachable, answers out of protocol, or returns a
    token that does not check against its configured roots (a token is never stored unchecked).
    """
    request = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .cert_request(cert_request=True)
        .nonce(nonce=True)
        .build()
    )
    http = urllib.request.Request(  # noqa: S310 - the scheme is checked in Tsa
        tsa.url,
        data=request.as_bytes(),
        headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": TOKEN_CONTENT_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http, timeout=timeout) as answer:  # noqa: S310
            content_type = answer.headers.get("Content-Type", "")
            body: bytes = answer.read(_MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        raise AnchorError(f"TSA {tsa.name} answered HTTP {exc.code}", status=exc.code) from None
    except (OSError, ValueError) as exc:
        raise AnchorError(f"TSA {tsa.name} unreachable: {exc}") from None
    if content_type.split(";")[0].strip() != TOKEN_CONTENT_TYPE:
        raise AnchorError(f"TSA {tsa.name} answered Content-Type {content_type[:60]!r}")
    if len(body) > _MAX_RESPONSE:
        raise AnchorError(f"TSA {tsa.name} answered more than {_MAX_RESPONSE} bytes")
    try:
        checked = check_token(body, message, tsa.roots, name=tsa.name)
        if checked.nonce != request.nonce:
            raise SignatureError(f"TSA {tsa.name}: the token answers another request (nonce)")
    except (SignatureError, FormatError) as exc:
        raise AnchorError(f"TSA {tsa.name} returned a token that does not check: {exc}") from None
    return body


@dataclass(frozen=True)
class CheckedToken:
    """A token that passed :func:`check_token`."""

    name: str
    gen_time: datetime
    serial: int
    nonce: int | None
    signer: str  # the TSA certificate's subject, for reports


def check_token(
    token: bytes, message: bytes, roots: Sequence[x509.Certificate], *, name: str
) -> CheckedToken:
    """Check a stored response over ``message``; :class:`SignatureError` or :class:`FormatError`.

    Steps: (1) it parses as a ``TimeStampResp``; (2) its imprint is SHA-256 and equals
    SHA-256(``message``); (3) status granted, CMS signature valid, signer chain to ``roots`` at
    ``genTime``, critical ``timeStamping`` key usage.
    """
    # 1. parse
    try:
        response = decode_timestamp_response(token)
        info = response.tst_info
        imprint = info.message_imprint
    except ValueError as exc:
        raise FormatError(f"timestamp from {name} is not an RFC 3161 response: {exc}") from None
    # 2. message imprint: the token must be over exactly this note text.
    if imprint.hash_algorithm != _SHA256_OID:
        raise SignatureError(f"timestamp from {name} uses a hash other than SHA-256")
    digest = hashlib.sha256(message).digest()
    if imprint.message != digest:
        raise SignatureError(
            f"timestamp from {name} is over another note (imprint "
            f"{imprint.message.hex()[:16]}…, expected {digest.hex()[:16]}…)"
        )
    # 3. signature and chain to the configured roots
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify(response, digest)
    except (rfc3161_client.VerificationError, ValueError) as exc:
        raise SignatureError(
            f"timestamp from {name} does not verify against its configured roots: {exc}"
        ) from None
    signer = "?"
    for der in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if certificate.extensions and _is_timestamping(certificate):
            signer = certificate.subject.rfc4514_string()
    return CheckedToken(name, info.gen_time, info.serial_number, info.nonce, signer)


def _is_timestamping(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in usage.value


def token_certificates(token: bytes) -> list[bytes]:
    """DER certificates the response carries (the TSA chain a bundle ships)."""
    try:
        return sorted(decode_timestamp_response(token).signed_data.certificates)
    except ValueError as exc:
        raise FormatError(f"not an RFC 3161 response: {exc}") from None
