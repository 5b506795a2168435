"""The raw landing format: round trips, damaged lines and objects, signatures, keys."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import orjson
import pytest
import zstandard

from coexarchive.errors import ConfigError, FormatError
from coexarchive.raw import (
    RAW_FORMAT_VERSION,
    Delivery,
    DeliveryAuth,
    RawLine,
    decode_landing,
    encode_landing,
    kept_headers,
    landing_key,
    parse_landing_key,
    receiver_id_problem,
    secret_id,
    signature_header,
    verify_signature,
)

SAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "raw-v1.jsonl"
SECRET = b"test-app-secret"
KEY = "raw/date=2026-01-05/rcv-a-00000000000000000007.jsonl.zst"
ARABIC_BODY = json.dumps({"text": "مرحبا 👋 äöå"}, ensure_ascii=False).encode()


def delivery(seq: int = 7, body: bytes = b'{"object":"whatsapp_business_account"}') -> Delivery:
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": signature_header(SECRET, body),
    }
    return Delivery("rcv-a", seq, 1767571200123, "webhook", headers, body)


def line_of(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": 1,
        "receiver_id": "rcv-a",
        "seq": 7,
        "received_at": 1767571200123,
        "source": "webhook",
        "headers": {},
        "body": "{}",
        "body_sha256": hashlib.sha256(b"{}").hexdigest(),
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def decode_one(raw: bytes) -> tuple[Delivery | None, str | None]:
    (line,) = decode_landing(raw + b"\n", key="x.jsonl")
    assert line.raw == raw
    return line.delivery, line.error


# -- happy paths ---------------------------------------------------------------------------------


def test_round_trip_keeps_every_field_and_order() -> None:
    deliveries = [delivery(7), delivery(8, ARABIC_BODY), delivery(9, b"")]
    lines = decode_landing(encode_landing(deliveries), key=KEY)
    assert [line.delivery for line in lines] == deliveries
    assert [line.line for line in lines] == [0, 1, 2]
    assert all(line.error is None for line in lines)


def test_decoded_lines_are_what_their_constructors_build() -> None:
    # decode_landing builds Delivery and RawLine without their __init__ (checked fields, one
    # dict update): the objects must be exactly what the constructors give, field for field.
    deliveries = [delivery(7), delivery(8, ARABIC_BODY), delivery(9, b"\xff\xfe")]
    lines = decode_landing(encode_landing(deliveries), key=KEY)
    for number, (line, sent) in enumerate(zip(lines, deliveries, strict=True)):
        assert line.delivery is not None
        rebuilt = Delivery(**{f.name: getattr(line.delivery, f.name) for f in fields(Delivery)})
        assert type(line.delivery) is Delivery
        assert vars(line.delivery) == vars(rebuilt) == vars(sent)
        assert list(vars(line.delivery)) == [f.name for f in fields(Delivery)]
        expected = RawLine(line=number, delivery=rebuilt, error=None, raw=line.raw)
        assert type(line) is RawLine
        assert line == expected
        assert list(vars(line)) == list(vars(expected)) == [f.name for f in fields(RawLine)]
        with pytest.raises(FrozenInstanceError):
            line.delivery.seq = 0  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            line.error = "changed"  # type: ignore[misc]
        assert hash(line.delivery.body) == hash(sent.body)


def test_invalid_utf8_body_round_trips_byte_exact() -> None:
    body = b'{"text":"caf\xe9\xff\xfe"}\x00\xed\xa0\x80'  # Latin-1, stray bytes, a UTF-16 surrogate
    (line,) = decode_landing(encode_landing([delivery(body=body)]), key=KEY)
    assert line.delivery is not None
    assert line.delivery.body == body
    assert b'"body_b64"' in line.raw
    assert b'"body"' not in line.raw


def test_utf8_body_is_kept_as_readable_text() -> None:
    (line,) = decode_landing(encode_landing([delivery(body=ARABIC_BODY)]), key=KEY)
    assert json.loads(line.raw)["body"] == ARABIC_BODY.decode()


def test_plain_jsonl_without_final_newline() -> None:
    plain = zstandard.ZstdDecompressor().decompressobj().decompress(encode_landing([delivery()]))
    (line,) = decode_landing(plain.rstrip(b"\n"), key="local/file.jsonl")
    assert line.delivery == delivery()


def test_concatenated_zstd_frames_are_one_object() -> None:
    data = encode_landing([delivery(7)]) + encode_landing([delivery(8)])
    assert [line.delivery.seq for line in decode_landing(data, key=KEY) if line.delivery] == [7, 8]


def test_golden_sample_decodes_and_verifies() -> None:
    lines = decode_landing(SAMPLE.read_bytes(), key=SAMPLE.name)
    assert len(lines) == 3
    assert all(line.error is None for line in lines)
    deliveries = [line.delivery for line in lines if line.delivery]
    assert [d.source for d in deliveries] == ["webhook", "outbound", "webhook"]
    secret = b"coexarchive-demo-app-secret"
    for d in deliveries:
        assert verify_signature(d.body, d.headers["x-hub-signature-256"], [secret])
    with pytest.raises(UnicodeDecodeError):
        deliveries[2].body.decode("utf-8")


def test_landing_key_names_date_receiver_and_padded_seq() -> None:
    key = landing_key("rcv-a", 7, 1767657599999)  # 2026-01-05T23:59:59.999Z
    assert key == KEY
    assert parse_landing_key(key) == ("2026-01-05", "rcv-a", 7)


# -- what is never kept --------------------------------------------------------------------------


def test_only_allowlisted_headers_land() -> None:
    headers = {
        "Authorization": "Bearer secret-token",
        "Cookie": "session=abc",
        "X-Forwarded-For": "10.0.0.1",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "Content-Type": "application/json",
    }
    landed = Delivery("rcv-a", 1, 1, "webhook", headers, b"{}")
    (line,) = decode_landing(encode_landing([landed]), key=KEY)
    assert b"secret-token" not in line.raw
    assert b"session" not in line.raw
    assert line.delivery is not None
    assert set(line.delivery.headers) == {"x-hub-signature-256", "content-type"}


def test_kept_headers_takes_first_of_repeated_names() -> None:
    pairs = [("X-Hub-Signature-256", "sha256=first"), ("x-hub-signature-256", "sha256=second")]
    assert kept_headers(pairs) == {"x-hub-signature-256": "sha256=first"}


# -- damaged lines: reported, never raised -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"v":1,"receiver_id":"rcv-a"', "invalid JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (b"   ", "empty line"),
        (line_of(v=2), "unknown format version"),
        (line_of(v="1"), "unknown format version"),
        (line_of(v=...), "unknown format version"),
        (line_of(body_sha256="0" * 64), "does not match"),
        (line_of(body_sha256="AB" * 32), "64 lowercase hex"),
        (line_of(body_sha256=...), "body_sha256"),
        (line_of(body=...), "exactly one of"),
        (line_of(body_b64="e30="), "exactly one of"),
        (line_of(body=..., body_b64="e30=!"), "not valid base64"),
        (line_of(body=..., body_b64=123), "not a string"),
        (line_of(body=["{}"]), "not a string"),
        (line_of(seq=-1), "'seq'"),
        (line_of(seq=True), "'seq'"),
        (line_of(seq="7"), "'seq'"),
        (line_of(received_at=1.5), "'received_at'"),
        (line_of(source="email"), "unknown source"),
        (line_of(receiver_id="Rcv_A"), "invalid receiver_id"),
        (line_of(receiver_id="../etc"), "invalid receiver_id"),
        (line_of(headers={"x": 1}), "'headers'"),
        (line_of(headers=["x"]), "'headers'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_line_is_reported_with_exact_bytes(raw: bytes, reason: str) -> None:
    found, error = decode_one(raw)
    assert found is None
    assert error is not None
    assert reason in error


def test_tampered_base64_body_fails_its_digest() -> None:
    body = b"\xff\xfe original"
    raw = line_of(
        body=...,
        body_b64=base64.b64encode(body.replace(b"original", b"tampered")).decode(),
        body_sha256=hashlib.sha256(body).hexdigest(),
    )
    found, error = decode_one(raw)
    assert found is None
    assert error is not None
    assert "altered" in error


def test_one_bad_line_does_not_hide_its_neighbours() -> None:
    plain = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress(encode_landing([delivery(7), delivery(8)]))
    )
    first, second = plain.rstrip(b"\n").split(b"\n")
    lines = decode_landing(first + b"\n{broken\n\n" + second + b"\n", key="x.jsonl")
    assert [line.error is None for line in lines] == [True, False, False, True]
    assert lines[1].raw == b"{broken"
    assert lines[2].raw == b""
    assert lines[3].line == 3


# -- damaged objects: FormatError ----------------------------------------------------------------


def test_corrupt_zstd_frame_is_a_format_error() -> None:
    data = bytearray(encode_landing([delivery(7), delivery(8)]))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(FormatError, match="corrupt zstd"):
        decode_landing(bytes(data), key=KEY)


def test_truncated_zstd_frame_is_a_format_error() -> None:
    data = encode_landing([delivery(7), delivery(8)])
    with pytest.raises(FormatError, match="truncated"):
        decode_landing(data[:-7], key=KEY)


@pytest.mark.parametrize("data", [b"", b"not zstd at all", b"{}\n"])
def test_non_zstd_object_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_landing(data, key=KEY)


def test_unknown_suffix_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="jsonl"):
        decode_landing(b"{}", key="raw/date=2026-01-05/rcv-a-00000000000000000007.json.gz")


# -- signatures ----------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_exact_bytes() -> None:
    # RFC 4231, test case 2.
    assert signature_header(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert verify_signature(ARABIC_BODY, signature_header(SECRET, ARABIC_BODY), [SECRET])


def test_non_ascii_body_is_signed_on_raw_bytes_not_reserialised_json() -> None:
    header = signature_header(SECRET, ARABIC_BODY)
    escaped = json.dumps(json.loads(ARABIC_BODY)).encode()  # \u-escaped re-serialisation
    assert escaped != ARABIC_BODY
    assert not verify_signature(escaped, header, [SECRET])


def test_wrong_secret_fails() -> None:
    assert not verify_signature(b"{}", signature_header(SECRET, b"{}"), [b"other-secret"])


def test_tampered_body_fails() -> None:
    header = signature_header(SECRET, b'{"amount":"10"}')
    assert not verify_signature(b'{"amount":"99"}', header, [SECRET])


def test_rotated_secrets_any_one_verifies() -> None:
    header = signature_header(b"old-secret", b"{}")
    assert verify_signature(b"{}", header, [b"new-secret", b"old-secret"])
    assert not verify_signature(b"{}", header, [])


def test_uppercase_hex_digest_is_accepted() -> None:
    header = signature_header(SECRET, b"{}")
    assert verify_signature(b"{}", "sha256=" + header[7:].upper(), [SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=zz",
        "sha256=" + "0" * 63,
        "sha1=" + "0" * 40,
        "SHA256=" + "0" * 64,
        "sha256=" + "0" * 64 + "00",
        "sha256=" + "é" * 64,
        "sha256 =" + "0" * 64,
        12345,
    ],
)
def test_garbage_headers_fail_without_raising(header: object) -> None:
    assert not verify_signature(b"{}", header, [SECRET])  # type: ignore[arg-type]


# -- construction and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"receiver_id": "RCV"},
        {"receiver_id": ""},
        {"receiver_id": "a" * 64},
        {"receiver_id": "-rcv"},
        {"seq": -1},
        {"received_at": -5},
        {"source": "meta"},
        {"body": "text"},
    ],
)
def test_delivery_rejects_bad_fields(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "receiver_id": "rcv-a",
        "seq": 1,
        "received_at": 1,
        "source": "webhook",
        "headers": {},
        "body": b"",
    }
    values.update(fields)
    with pytest.raises(ValueError, match=r"receiver_id|seq|received_at|source|body"):
        Delivery(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("receiver_id", "first_seq", "received_at"),
    [("Rcv", 0, 0), ("rcv/../x", 0, 0), ("rcv", -1, 0), ("rcv", 0, -1)],
)
def test_landing_key_rejects_bad_parts(receiver_id: str, first_seq: int, received_at: int) -> None:
    with pytest.raises(ValueError, match=r"receiver id|negative"):
        landing_key(receiver_id, first_seq, received_at)


@pytest.mark.parametrize(
    "key",
    [
        "raw/date=2026-01-05/rcv-a-7.jsonl.zst",
        "raw/rcv-a-00000000000000000007.jsonl.zst",
        "raw/date=2026-01-05/RCV-00000000000000000007.jsonl.zst",
        "archive/v1/chain=x/date=2026-01-05/rcv-a-00000000000000000007.jsonl.zst",
    ],
)
def test_parse_landing_key_rejects_other_keys(key: str) -> None:
    assert parse_landing_key(key) is None


def test_format_version_is_one() -> None:
    assert RAW_FORMAT_VERSION == 1


# -- authentication at ingest ---------------------------------------------------------------------

OLD = b"previous-app-secret"
CAPTURE_SECRET = b"capture-secret"


def outbound(body: bytes = b'{"phone_number_id":"1"}', secret: bytes = CAPTURE_SECRET) -> Delivery:
    headers = {"x-hub-signature-256": signature_header(secret, body)}
    return Delivery("rcv-a", 8, 1767571200123, "outbound", headers, body)


def test_a_verified_delivery_names_its_secret_by_a_short_digest() -> None:
    auth = DeliveryAuth((SECRET, OLD), (CAPTURE_SECRET,))
    assert auth.check(delivery()) == {
        "delivery_auth": "signature_verified",
        "delivery_key_id": hashlib.sha256(SECRET).hexdigest()[:8],
    }
    assert auth.check(outbound()) == {
        "delivery_auth": "signature_verified",
        "delivery_key_id": secret_id(CAPTURE_SECRET),
    }
    rotated = DeliveryAuth((b"new-secret", SECRET))
    assert rotated.check(delivery())["delivery_key_id"] == secret_id(SECRET)  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "signature_invalid: the x-hub-signature-256 header is missing"),
        (
            {"x-hub-signature-256": signature_header(b"other", b"{}")},
            "signature_invalid: x-hub-signature-256 does not sign the body under any of the 2 "
            "configured app secret(s)",
        ),
        (
            {"x-hub-signature-256": "sha256=zz"},
            "signature_invalid: x-hub-signature-256 does not sign the body",
        ),
    ],
    ids=["missing", "other_secret", "garbage"],
)
def test_a_delivery_that_does_not_verify_gets_a_quarantine_reason(
    headers: dict[str, str], reason: str
) -> None:
    forged = Delivery("rcv-a", 1, 1767571200123, "webhook", headers, b"{}")
    verdict = DeliveryAuth((SECRET, OLD)).check(forged)
    assert isinstance(verdict, str) and verdict.startswith(reason)


def test_app_secrets_do_not_verify_captures_nor_capture_secrets_webhooks() -> None:
    auth = DeliveryAuth((SECRET,), (CAPTURE_SECRET,))
    assert isinstance(auth.check(outbound(secret=SECRET)), str)
    signed_by_capture = Delivery(
        "rcv-a", 1, 0, "webhook", {"x-hub-signature-256": signature_header(CAPTURE_SECRET, b"{}")}
    )
    assert isinstance(auth.check(signed_by_capture), str)


def test_a_capture_without_a_configured_capture_secret_is_unverifiable() -> None:
    verdict = DeliveryAuth((SECRET,)).check(outbound())
    assert verdict == (
        "signature_unverifiable: no capture secret configured for outbound deliveries; "
        "set COEXARCHIVE_OUTBOUND_TOKEN and re-drive"
    )


def test_without_secrets_ingest_refuses_unless_explicitly_allowed() -> None:
    with pytest.raises(ConfigError, match="set COEXARCHIVE_APP_SECRETS") as refused:
        DeliveryAuth.from_env({})
    assert "--allow-unauthenticated" in str(refused.value)
    with pytest.raises(ConfigError, match="COEXARCHIVE_APP_SECRETS"):
        DeliveryAuth.from_env({"COEXARCHIVE_APP_SECRETS": " , \n"})
    with pytest.raises(ConfigError, match="non-empty"):
        DeliveryAuth((b"",))
    allowed = DeliveryAuth.from_env({}, allow_unauthenticated=True)
    unmarked = {"delivery_auth": "unverified_no_secret"}
    assert allowed.check(delivery()) == unmarked
    assert allowed.check(outbound()) == unmarked


def test_allowing_unauthenticated_input_does_not_excuse_a_bad_signature() -> None:
    auth = DeliveryAuth((SECRET,), allow_unauthenticated=True)
    forged = Delivery("rcv-a", 1, 0, "webhook", {}, b"{}")
    assert str(auth.check(forged)).startswith("signature_invalid")


def test_secrets_come_from_the_receivers_variables() -> None:
    auth = DeliveryAuth.from_env(
        {"COEXARCHIVE_APP_SECRETS": "a, b\nc", "COEXARCHIVE_OUTBOUND_TOKEN": "d"}
    )
    assert (auth.app_secrets, auth.capture_secrets) == ((b"a", b"b", b"c"), (b"d",))


def test_auth_never_shows_its_secrets_and_survives_pickling() -> None:
    auth = DeliveryAuth((SECRET,), (CAPTURE_SECRET,))
    assert SECRET.decode() not in repr(auth) and CAPTURE_SECRET.decode() not in repr(auth)
    # Beam pickles it into each worker.
    copy = pickle.loads(pickle.dumps(auth))  # noqa: S301 (our own bytes)
    assert copy.check(delivery()) == auth.check(delivery())


def test_receiver_id_problem_names_the_alphabet() -> None:
    assert receiver_id_problem("rcv-a") is None
    for bad in ("RCV", "", "a" * 64, "-a", 7):
        assert "a-z, 0-9 and '-'" in str(receiver_id_problem(bad))


# -- ambiguous lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "first", "second"),
    [("body", '"{}"', '"{\\"x\\":1}"'), ("seq", "7", "8"), ("source", '"webhook"', '"outbound"')],
)
def test_a_line_that_repeats_a_member_is_unreadable(member: str, first: str, second: str) -> None:
    line = line_of(body="{}")
    doubled = line.replace(
        f'"{member}":{first}'.encode(), f'"{member}":{first},"{member}":{second}'.encode()
    )
    assert doubled != line
    found, error = decode_one(doubled)
    assert found is None
    assert error == f'duplicate member "{member}": the line is ambiguous'


def test_a_repeated_header_inside_a_line_is_unreadable() -> None:
    line = line_of(headers={"content-type": "a"}).replace(
        b'"content-type":"a"', b'"content-type":"a","content-type":"b"'
    )
    expected = 'duplicate member "headers["content-type"]": the line is ambiguous'
    assert decode_one(line) == (None, expected)


def test_a_line_written_by_another_writer_still_reads() -> None:
    spaced = json.dumps(json.loads(line_of()), indent=1).replace("\n", " ").encode()
    found, error = decode_one(spaced)
    assert error is None and found is not None and found.body == b"{}"
