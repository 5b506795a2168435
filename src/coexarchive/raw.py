"""The raw landing format: deliveries exactly as received (normative: ``schemas/RAW_LANDING.md``).

A landing object is a spool segment: JSON Lines, one delivery per line, zstd-compressed, stored
under ``raw/date=YYYY-MM-DD/<receiver-id>-<first-seq>.jsonl.zst``. The body bytes are kept
untouched, with the signature header, so the archive can later prove what Meta sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson
import zstandard

from coexarchive.errors import ConfigError, FormatError, InvalidArgumentError
from coexarchive.jsonstrict import duplicate_key
from coexarchive.store.layout import RAW_PREFIX, pad, utc_date

__all__ = [
    "APP_SECRETS_ENV",
    "AUTH_MEMBER",
    "CAPTURE_SECRETS_ENV",
    "KEPT_HEADERS",
    "KEY_ID_MEMBER",
    "RAW_FORMAT_VERSION",
    "SIGNATURE_HEADER",
    "SIGNATURE_INVALID",
    "SIGNATURE_UNVERIFIABLE",
    "SOURCES",
    "UNVERIFIED_NO_SECRET",
    "VERIFIED",
    "Delivery",
    "DeliveryAuth",
    "RawLine",
    "decode_landing",
    "encode_landing",
    "kept_headers",
    "landing_key",
    "matching_secret",
    "parse_landing_key",
    "receiver_id_problem",
    "secret_id",
    "secrets_from",
    "signature_header",
    "verify_signature",
]

RAW_FORMAT_VERSION = 1
_T = TypeVar("_T")
SIGNATURE_HEADER = "x-hub-signature-256"
SOURCES = frozenset({"webhook", "outbound", "media"})
# An allowlist, not a denylist: a header nobody thought about (a proxy's auth token, a cookie) must
# never reach a retained, undeletable object.
KEPT_HEADERS = frozenset({SIGNATURE_HEADER, "x-hub-signature", "content-type", "user-agent"})

# A decompressed landing object larger than this is refused rather than exhausting memory; Meta's
# bodies are at most 3 MB and a segment holds a bounded number of them.
MAX_OBJECT_BYTES = 2 << 30
ZSTD_LEVEL = 3

_RECEIVER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_LANDING_KEY = re.compile(
    r"raw/date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<receiver>[a-z0-9][a-z0-9-]{0,62})-(?P<seq>\d{20})"
    r"\.jsonl(?:\.zst)?"
)
_SIG_PREFIX = "sha256="

# Where the receiver and ingest read their secrets (comma- or newline-separated, several for
# rotation): Meta's app secret(s) for webhooks, the capture secret(s) for /outbound sends.
APP_SECRETS_ENV = "COEXARCHIVE_APP_SECRETS"
CAPTURE_SECRETS_ENV = "COEXARCHIVE_OUTBOUND_TOKEN"
# The media fetcher signs its fetch receipts (``source: "media"``) with these; the first signs.
MEDIA_SECRETS_ENV = "COEXARCHIVE_MEDIA_SECRETS"
# The quarantine reason of a delivery whose signature does not verify (RAW_LANDING.md §3).
SIGNATURE_INVALID = "signature_invalid"
SIGNATURE_UNVERIFIABLE = "signature_unverifiable"
# ``detail`` members a sealed record carries about the delivery it came from (RECORD_KINDS.md).
AUTH_MEMBER = "delivery_auth"
KEY_ID_MEMBER = "delivery_key_id"
VERIFIED = "signature_verified"
UNVERIFIED_NO_SECRET = "unverified_no_secret"  # noqa: S105 (a marker, not a secret)


@dataclass(frozen=True)
class Delivery:
    """One HTTP delivery as the receiver got it: exact body bytes plus what surrounded them."""

    receiver_id: str
    seq: int
    received_at: int  # ms since epoch, UTC, receiver clock
    source: str  # "webhook" (from Meta), "outbound" (captured Cloud API send), "media" (receipt)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        problem = _delivery_problem(
            self.receiver_id, self.seq, self.received_at, self.source, self.headers, self.body
        )
        if problem:
            raise InvalidArgumentError(problem)


@dataclass(frozen=True)
class RawLine:
    """One line of a landing object: a delivery, or the reason the line cannot be read."""

    line: int  # 0-based line number within the object
    delivery: Delivery | None
    error: str | None
    raw: bytes  # the line's exact bytes, without its newline


def kept_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """The headers a landing line keeps: allowlisted names, lower-cased; first value wins."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    kept: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in KEPT_HEADERS and lowered not in kept:
            kept[lowered] = value
    return dict(sorted(kept.items()))


def encode_landing(deliveries: Iterable[Delivery]) -> bytes:
    """A landing object: one JSON line per delivery, in the given order, zstd-compressed.

    ``deliveries`` may be a generator: each is encoded and dropped before the next is read.
    """
    lines = b"".join(_encode_line(delivery) for delivery in deliveries)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(lines)


def decode_landing(data: bytes, *, key: str) -> list[RawLine]:
    """Every line of a landing object; a bad line is returned with its error, never raised.

    Raises :class:`FormatError` only when the object as a whole is unreadable (corrupt or
    truncated zstd frame, unknown suffix).
    """
    if key.endswith(".jsonl.zst"):
        text = _decompress(data, key)
    elif key.endswith(".jsonl"):
        text = data
    else:
        raise FormatError(f"raw object {key!r}: expected a .jsonl.zst or .jsonl key")
    raw_lines = text.split(b"\n")
    if raw_lines[-1] == b"":
        # The terminating newline of the last line does not start another line.
        raw_lines.pop()
    return [_decode_line(number, raw) for number, raw in enumerate(raw_lines)]


def landing_key(receiver_id: str, first_seq: int, received_at: int) -> str:
    """The object key of a segment whose first delivery has ``first_seq`` and ``received_at``."""
    if not _RECEIVER_ID.fullmatch(receiver_id):
        raise InvalidArgumentError(
            f"invalid receiver id {receiver_id!r}: use [a-z0-9-], at most 63"
        )
    if first_seq < 0 or received_at < 0:
        raise InvalidArgumentError("first_seq and received_at must not be negative")
    return f"{RAW_PREFIX}date={utc_date(received_at)}/{receiver_id}-{pad(first_seq)}.jsonl.zst"


def receiver_id_problem(receiver_id: object) -> str | None:
    """Why ``receiver_id`` cannot name a spool and its raw objects, or None if it can."""
    if isinstance(receiver_id, str) and _RECEIVER_ID.fullmatch(receiver_id):
        return None
    return (
        f"receiver id {receiver_id!r} is not usable: it names raw/ objects, so use 1 to 63 "
        "characters of a-z, 0-9 and '-', starting with a letter or a digit"
    )


def parse_landing_key(key: str) -> tuple[str, str, int] | None:
    """``(date, receiver_id, first_seq)`` of a landing key, or None if the key is not one."""
    match = _LANDING_KEY.fullmatch(key)
    if match is None:
        return None
    return match["date"], match["receiver"], int(match["seq"])


def signature_header(app_secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``: ``sha256=<lowercase hex>``."""
    return _SIG_PREFIX + hmac.new(app_secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, app_secrets: Sequence[bytes]) -> bool:
    """Whether ``header`` is a valid HMAC-SHA256 of the exact ``body`` under any of the secrets.

    Several secrets allow rotation. Garbage headers give False, never an exception.
    """
    return matching_secret(body, header, app_secrets) is not None


def matching_secret(body: bytes, header: str | None, secrets: Sequence[bytes]) -> int | None:
    """The index of the first secret under which ``header`` signs ``body``, or None."""
    if not isinstance(header, str) or not header.startswith(_SIG_PREFIX):
        return None
    try:
        claimed = bytes.fromhex(header[len(_SIG_PREFIX) :])
    except ValueError:
        return None
    if len(claimed) != hashlib.sha256().digest_size:
        return None
    found: int | None = None
    # Every secret is tried, so the time taken does not reveal which one matched.
    for index, secret in enumerate(secrets):
        # Not the one-shot ``hmac.digest``: it releases the GIL for every call, however short
        # the body, and the receiver's event loop then waits for its spool and shipper threads
        # to hand it back (a switch interval, 2 ms, against 3 µs of hashing). ``hmac.new``
        # releases it only for bodies of 2 KiB and more, where the hashing is worth it.
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, claimed) and found is None:
            found = index
    return found


def secret_id(secret: bytes) -> str:
    """A short name for a secret that reveals nothing usable: 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret).hexdigest()[:8]


def secrets_from(text: str) -> tuple[bytes, ...]:
    """Comma- or newline-separated secrets; surrounding blanks and empty entries are dropped."""
    return tuple(part.strip().encode() for part in re.split(r"[,\n]", text) if part.strip())


@dataclass(frozen=True)
class DeliveryAuth:
    """The secrets ingest authenticates landed deliveries with (``RAW_LANDING.md`` §3).

    ``app_secrets`` check webhooks (Meta's ``X-Hub-Signature-256``), ``capture_secrets`` check
    outbound captures, ``media_secrets`` the media fetcher's receipts. Without app secrets, ingest
    refuses to run unless ``allow_unauthenticated`` says explicitly that deliveries are to be
    sealed unchecked; each record made from such a delivery then says
    ``"delivery_auth": "unverified_no_secret"``.
    """

    app_secrets: tuple[bytes, ...] = ()
    capture_secrets: tuple[bytes, ...] = ()
    allow_unauthenticated: bool = False
    media_secrets: tuple[bytes, ...] = ()
    _verified: dict[str, tuple[Mapping[str, str], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for name, secrets in (
            ("app", self.app_secrets),
            ("capture", self.capture_secrets),
            ("media", self.media_secrets),
        ):
            if not all(isinstance(secret, bytes) and secret for secret in secrets):
                raise ConfigError(f"every {name} secret must be non-empty bytes")
        if not self.app_secrets and not self.allow_unauthenticated:
            raise ConfigError(
                f"no app secret to authenticate raw deliveries with: set {APP_SECRETS_ENV} "
                "(comma-separated, as for the receiver), or pass --allow-unauthenticated to seal "
                "them marked unverified"
            )
        # One shared detail addition per secret, built once (callers only read it).
        for source, secrets in (
            ("webhook", self.app_secrets),
            ("outbound", self.capture_secrets),
            ("media", self.media_secrets),
        ):
            self._verified[source] = tuple(
                {AUTH_MEMBER: VERIFIED, KEY_ID_MEMBER: secret_id(secret)} for secret in secrets
            )

    def __repr__(self) -> str:
        # A config printed in a traceback or a log must not leak secrets.
        return (
            f"DeliveryAuth(app_secrets=<{len(self.app_secrets)} hidden>, "
            f"capture_secrets=<{len(self.capture_secrets)} hidden>, "
            f"media_secrets=<{len(self.media_secrets)} hidden>, "
            f"allow_unauthenticated={self.allow_unauthenticated})"
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, allow_unauthenticated: bool = False
    ) -> DeliveryAuth:
        """The secrets from the receiver's variables; refuses without one unless allowed."""
        return cls(
            app_secrets=secrets_from(env.get(APP_SECRETS_ENV, "")),
            capture_secrets=secrets_from(env.get(CAPTURE_SECRETS_ENV, "")),
            allow_unauthenticated=allow_unauthenticated,
            media_secrets=secrets_from(env.get(MEDIA_SECRETS_ENV, "")),
        )

    def check(self, delivery: Delivery) -> Mapping[str, str] | str:
        """The ``detail`` members that say how ``delivery`` was authenticated, or why it fails.

        A failure is a quarantine reason starting with ``signature_invalid`` (the signature is
        missing or does not verify) or ``signature_unverifiable`` (no secret for its source).
        """
        if delivery.source == "webhook":
            secrets, header, variable = self.app_secrets, "app", APP_SECRETS_ENV
        elif delivery.source == "media":
            secrets, header, variable = self.media_secrets, "media", MEDIA_SECRETS_ENV
        else:
            secrets, header, variable = self.capture_secrets, "capture", CAPTURE_SECRETS_ENV
        if not secrets:
            if self.allow_unauthenticated:
                return _UNVERIFIED
            return (
                f"{SIGNATURE_UNVERIFIABLE}: no {header} secret configured for {delivery.source} "
                f"deliveries; set {variable} and re-drive"
            )
        signature = delivery.headers.get(SIGNATURE_HEADER)
        if signature is None:
            return f"{SIGNATURE_INVALID}: the {SIGNATURE_HEADER} header is missing"
        index = matching_secret(delivery.body, signature, secrets)
        if index is None:
            return (
                f"{SIGNATURE_INVALID}: {SIGNATURE_HEADER} does not sign the body under any of "
                f"the {len(secrets)} configured {header} secret(s)"
            )
        return self._verified[delivery.source][index]


_UNVERIFIED: Final[Mapping[str, str]] = {AUTH_MEMBER: UNVERIFIED_NO_SECRET}


def _encode_line(delivery: Delivery) -> bytes:
    line: dict[str, Any] = {
        "v": RAW_FORMAT_VERSION,
        "receiver_id": delivery.receiver_id,
        "seq": delivery.seq,
        "received_at": delivery.received_at,
        "source": delivery.source,
        "headers": kept_headers(delivery.headers),
    }
    try:
        # Valid UTF-8 travels as a JSON string: byte-exact on the way back, readable with jq, and
        # zstd finds its repetitions (base64 hides them behind a 3-byte alignment).
        line["body"] = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        line["body_b64"] = base64.b64encode(delivery.body).decode("ascii")
    line["body_sha256"] = hashlib.sha256(delivery.body).hexdigest()
    return orjson.dumps(line) + b"\n"


def _decompress(data: bytes, key: str) -> bytes:
    decompressor = zstandard.ZstdDecompressor()
    chunks: list[bytes] = []
    size = 0
    rest = data
    if not rest:
        raise FormatError(f"raw object {key!r} is empty: expected a zstd frame")
    # Frames are read one at a time so that a truncated last frame is detected: zstandard's
    # stream reader returns the bytes it could decode without saying the frame was cut short.
    while rest:
        frame = decompressor.decompressobj()
        try:
            chunk = frame.decompress(rest)
        except zstandard.ZstdError as error:
            raise FormatError(f"raw object {key!r}: corrupt zstd data ({error})") from error
        if not frame.eof:
            raise FormatError(f"raw object {key!r}: zstd frame truncated; re-fetch the object")
        size += len(chunk)
        if size > MAX_OBJECT_BYTES:
            raise FormatError(f"raw object {key!r} decompresses to more than {MAX_OBJECT_BYTES}")
        chunks.append(chunk)
        rest = frame.unused_data
    return b"".join(chunks)


def _decode_line(number: int, raw: bytes) -> RawLine:
    try:
        delivery = _parse_line(raw)
    except _LineError as error:
        return RawLine(line=number, delivery=None, error=str(error), raw=raw)
    return _frozen(RawLine, {"line": number, "delivery": delivery, "error": None, "raw": raw})


def _frozen(cls: type[_T], fields: dict[str, Any]) -> _T:
    """A frozen (dict-based) dataclass instance of ``fields``, all given, already checked.

    What its ``__init__`` would build, without an ``object.__setattr__`` per field or a second run
    of the checks: every landing line makes two (``tests/unit/test_raw.py`` holds them equal).
    """
    built = object.__new__(cls)
    built.__dict__.update(fields)
    return built


class _LineError(Exception):
    """Why one landing line cannot be read."""


def _parse_line(raw: bytes) -> Delivery:
    if not raw.strip():
        raise _LineError("empty line")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _LineError(f"invalid JSON: {error}") from None
    if not isinstance(obj, dict):
        raise _LineError("line is not a JSON object")
    # Re-serialising the parsed line gives each member once: when that reproduces the line byte
    # for byte (as this module writes lines), no member repeats. Any other spelling is checked.
    if orjson.dumps(obj) != raw:
        duplicate = duplicate_key(raw, obj)
        if duplicate is not None:
            # Two readers could take two different bodies (or seqs) from this line.
            raise _LineError(f"duplicate member {duplicate}: the line is ambiguous")
    version = obj.get("v")
    if type(version) is not int or version != RAW_FORMAT_VERSION:
        raise _LineError(f"unknown format version {version!r} (this reader knows v1)")
    body = _parse_body(obj)
    receiver_id, seq, received_at = obj.get("receiver_id"), obj.get("seq"), obj.get("received_at")
    source, headers = obj.get("source"), obj.get("headers")
    problem = _delivery_problem(receiver_id, seq, received_at, source, headers, body)
    if problem:
        raise _LineError(problem)
    # The checks above established the types: Delivery.__post_init__ would repeat them.
    return _frozen(
        Delivery,
        {
            "receiver_id": receiver_id,
            "seq": seq,
            "received_at": received_at,
            "source": source,
            "headers": headers,
            "body": body,
        },
    )


def _parse_body(obj: dict[str, Any]) -> bytes:
    has_text, has_b64 = "body" in obj, "body_b64" in obj
    if has_text == has_b64:
        raise _LineError("exactly one of 'body' and 'body_b64' must be present")
    if has_text:
        text = obj["body"]
        if not isinstance(text, str):
            raise _LineError("'body' is not a string")
        body = text.encode("utf-8")
    else:
        encoded = obj["body_b64"]
        if not isinstance(encoded, str):
            raise _LineError("'body_b64' is not a string")
        try:
            body = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise _LineError(f"'body_b64' is not valid base64: {error}") from None
    digest = obj.get("body_sha256")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise _LineError("'body_sha256' is missing or not 64 lowercase hex digits")
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), digest):
        raise _LineError("body does not match 'body_sha256': the line was altered or damaged")
    return body


def _delivery_problem(
    receiver_id: object,
    seq: object,
    received_at: object,
    source: object,
    headers: object,
    body: object,
) -> str | None:
    """What is wrong with a delivery's fields, or None; shared by the constructor and the reader."""
    if not isinstance(receiver_id, str) or not _RECEIVER_ID.fullmatch(receiver_id):
        return f"invalid receiver_id {receiver_id!r}"
    for name, value in (("seq", seq), ("received_at", received_at)):
        # bool is an int subclass; True is not a sequence number.
        if type(value) is not int or value < 0:
            return f"{name!r} must be a non-negative integer, got {value!r}"
    if source not in SOURCES:
        return f"unknown source {source!r} (expected 'webhook', 'outbound' or 'media')"
    if not isinstance(headers, Mapping) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
    ):
        return "'headers' must map strings to strings"
    if not isinstance(body, bytes):
        return "body must be bytes"
    return None
