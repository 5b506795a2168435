"""RSMF 2.0 (Relativity Short Message Format) files for review platforms.

One ``.rsmf`` per conversation and UTC day, split further so no file holds more than 10,000
events (Relativity's guidance). Each is an RFC 5322 message with the ``X-RSMF-*`` headers, a
plain-text body (Relativity's extracted text) and exactly one base64 attachment ``rsmf.zip``
holding ``rsmf_manifest.json`` and one small text file per media reference (media content is not
captured by the archive; the file says what the message referred to).

Every event carries, in ``custom``, the record's leaf index, leaf hash, chain and record id, so
a reviewer can go from an event to its inclusion proof. Delivery statuses become the message's
``read_receipts``; edits and revokes stay events of their own and mark the original (``edits``,
``deleted``) when both are in the same file. Output is deterministic: fixed zip timestamps,
sorted entries, fixed MIME boundary.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from typing import Any

import orjson

from coexarchive.export._rows import (
    ConversationKey,
    CurrentFlags,
    Row,
    conversations,
    current_flags,
    detail_of,
    is_uncatalogued_message,
    iso_utc_many,
    safe_name,
    uncatalogued_text,
)
from coexarchive.export.formats import CURRENT, Rendering
from coexarchive.export.media import attachment_of, attachments
from coexarchive.export.templates import TemplateBodies, render_send
from coexarchive.export.zipfiles import zip_bytes

__all__ = [
    "MAX_EVENTS",
    "RSMF_VERSION",
    "RsmfParts",
    "render_rsmf",
    "render_rsmf_parts",
    "rsmf_manifest_of",
    "unsafe_header_values",
]

RSMF_VERSION = "2.0.0"
MAX_EVENTS = 10_000
BOUNDARY = "coexarchive-rsmf-boundary"
_MESSAGE_KINDS = frozenset({"message", "echo", "outbound", "history_message", "unsupported"})
_RECEIPTS = {"delivered": "delivered", "read": "read", "played": "read"}
_ORIGINS = {
    "customer": "customer",
    "business_app": "WhatsApp Business App (phone)",
    "cloud_api": "WhatsApp Cloud API",
    "history_import": "history import at onboarding",
    "system": "system",
    "crm": "CRM import",
    "auditor": "auditor",
}


def _custom(pairs: Sequence[tuple[str, Any]]) -> list[dict[str, str]]:
    # RSMF custom values are non-empty strings. (For a value that is not a string, str() is
    # never empty, so `v != ""` decides exactly as `str(v) != ""` would.)
    return [{"name": n, "value": str(v)} for n, v in pairs if v is not None and v != ""]


@dataclass(frozen=True)
class RsmfParts:
    """An ``.rsmf`` message but for its zip: the text around it and the zip's members.

    The message is ``before + base64(zip(members)) + after``; ``verify-bundle`` compares these
    parts, because the zip's compressed bytes may differ between zlib builds.
    """

    before: bytes
    members: dict[str, bytes]
    after: bytes

    def message(self) -> bytes:
        return b"%s%s%s" % (self.before, _wrapped_b64(zip_bytes(self.members)), self.after)


Groups = Mapping[ConversationKey, Sequence[int]]


def render_rsmf(
    rows: Sequence[Row],
    leaves: Sequence[bytes],
    *,
    groups: Groups | None = None,
    rules: Rendering = CURRENT,
    media: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Path → ``.rsmf`` bytes, for every conversation that has events.

    ``media`` holds the bundle's ``media/`` files: a message whose attachment a ``media`` record
    says was stored carries those bytes in ``rsmf.zip``, else a text file naming the reference.
    """
    parts = render_rsmf_parts(rows, leaves, groups=groups, rules=rules, media=media)
    return {path: part.message() for path, part in parts.items()}


def render_rsmf_parts(
    rows: Sequence[Row],
    leaves: Sequence[bytes],
    *,
    groups: Groups | None = None,
    rules: Rendering = CURRENT,
    media: Mapping[str, bytes] | None = None,
) -> dict[str, RsmfParts]:
    """Path → the parts of its ``.rsmf`` message, for every conversation that has events.

    ``groups`` is ``conversations(rows)`` when the caller has it already; ``rules`` those of the
    bundle format rendered. With the rules of ``coexarchive.bundle/v1`` the header values are
    written as recorded, control characters included: that is only for comparing with the bytes
    of a bundle it made (:func:`unsafe_header_values` says whether a reader of it is exposed).
    """
    times = iso_utc_many([row["event_time"] for row in rows])
    current = current_flags(rows) if rules.current_flags else [(r["flags"], None) for r in rows]
    # Template sends are shown with the registry's text, from catalogue rows of any conversation.
    bodies = TemplateBodies(rows) if rules.template_bodies else None
    files: dict[str, RsmfParts] = {}
    attached = _attached(rows, media)
    for key, positions in (conversations(rows) if groups is None else groups).items():
        by_day: dict[str, list[int]] = {}
        for position in positions:
            by_day.setdefault(times[position][:10], []).append(position)
        for day, members in by_day.items():
            slices = [members[i : i + MAX_EVENTS] for i in range(0, len(members), MAX_EVENTS)]
            for part, chunk in enumerate(slices, start=1):
                path = _path(key, day, part if len(slices) > 1 else None)
                chunk_rows = [rows[p] for p in chunk]
                manifest, attachments = rsmf_manifest_of(
                    key,
                    chunk_rows,
                    [leaves[p] for p in chunk],
                    [times[p] for p in chunk],
                    [current[p] for p in chunk],
                    rules,
                    attached,
                    bodies,
                )
                files[path] = _parts(key, manifest, attachments, day, rules)
    return files


def _path(key: ConversationKey, day: str, part: int | None) -> str:
    chain, customer = key
    name = "_no-customer" if customer is None else safe_name(customer)
    suffix = f"-part{part:03d}" if part is not None else ""
    return f"rsmf/chain={safe_name(chain)}/{name}/{day}{suffix}.rsmf"


def _participants(
    key: ConversationKey, rows: Sequence[Row]
) -> tuple[list[dict[str, Any]], str, str | None]:
    chain, customer = key
    business_phone = next((r["business_phone"] for r in rows if r["business_phone"]), None)
    business_id = f"business:{chain}"
    business = {
        "id": business_id,
        "display": f"Business {business_phone or chain}",
        "account_id": business_phone or chain,
        "custom": _custom([("Phone number id", chain), ("Display phone number", business_phone)]),
    }
    if customer is None:
        return [business], business_id, None
    profile = next((n for n in (_profile_name(r) for r in rows) if n), None)
    user_ids = sorted({r["customer_user_id"] for r in rows if r["customer_user_id"]})
    wa_ids = sorted({r["customer_wa_id"] for r in rows if r["customer_wa_id"]})
    customer_id = f"customer:{customer}"
    person = {
        "id": customer_id,
        "display": f"{profile} ({customer})" if profile else customer,
        "account_id": customer,
        "custom": _custom(
            [("WhatsApp id", ", ".join(wa_ids)), ("Business-scoped user id", ", ".join(user_ids))]
        ),
    }
    return [business, person], business_id, customer_id


def _profile_name(row: Row) -> str | None:
    if row["direction"] != "inbound" or row["kind"] not in ("message", "history_message"):
        return None
    contact = detail_of(row).get("contact")
    if isinstance(contact, dict) and isinstance(contact.get("profile"), dict):
        name = contact["profile"].get("name")
        return name if isinstance(name, str) and name else None
    return None


def rsmf_manifest_of(
    key: ConversationKey,
    rows: Sequence[Row],
    leaves: Sequence[bytes],
    times: Sequence[str] | None = None,
    current: Sequence[CurrentFlags] | None = None,
    rules: Rendering = CURRENT,
    attached: Mapping[str, tuple[str, bytes, str]] | None = None,
    bodies: TemplateBodies | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ``rsmf_manifest.json`` document of one slice, and its attachment files.

    ``times`` are the rows' event times as ISO 8601 UTC with ms, when the caller has them;
    ``current`` the rows' current flags (:func:`current_flags` over the whole bundle).
    """
    if times is None:
        times = iso_utc_many([row["event_time"] for row in rows])
    if current is None:
        current = current_flags(rows) if rules.current_flags else [(r["flags"], None) for r in rows]
    chain, customer = key
    participants, business_id, customer_id = _participants(key, rows)
    conversation_id = f"{chain}/{customer or '_no-customer'}"
    conversation = {
        "id": conversation_id,
        "display": f"WhatsApp {customer or 'account events'} — {participants[0]['account_id']}",
        "platform": "whatsapp",
        "type": "direct",
        "participants": [p["id"] for p in participants],
        "custodian": business_id,
        "custom": _custom([("Chain id", chain), ("Source", "coexarchive sealed archive")]),
    }
    events: list[dict[str, Any]] = []
    by_wamid: dict[str, dict[str, Any]] = {}
    attachments: dict[str, bytes] = {}
    for row, leaf, timestamp, (flags, flags_seq) in zip(rows, leaves, times, current, strict=True):
        sender = customer_id if row["direction"] == "inbound" and customer_id else business_id
        kind = row["kind"]
        receipt = kind == "status" and row["status"] in _RECEIPTS and customer_id is not None
        if receipt and row["wamid"] in by_wamid:
            by_wamid[row["wamid"]].setdefault("read_receipts", []).append(
                {
                    "participant": customer_id,
                    "timestamp": timestamp,
                    "action": _RECEIPTS[row["status"]],
                }
            )
        held = (attached or {}).get(row["record_id"]) if kind != "media" else None
        event: dict[str, Any] = {
            # Record ids repeat when a live message and its history copy are both kept.
            "id": f"{chain}:{row['seq']}",
            "type": "message"
            if kind in _MESSAGE_KINDS or kind.startswith("message_")
            else "unknown",
            "participant": sender,
            "conversation": conversation_id,
            "timestamp": timestamp,
            "body": _body(row, rules, bodies, held=held is not None),
        }
        if row["direction"] in ("inbound", "outbound") and kind != "status":
            event["direction"] = "incoming" if row["direction"] == "inbound" else "outgoing"
        if held is not None:
            name, data, display = held
            attachments[name] = data
            event["attachments"] = [{"id": name, "display": display, "size": len(data)}]
        elif row["media_id"] and kind != "media":
            name, data = _attachment(row)
            attachments[name] = data
            event["attachments"] = [
                {
                    "id": name,
                    "display": f"{row['msg_type'] or 'media'} reference",
                    "size": len(data),
                }
            ]
        event["custom"] = _custom(
            [
                ("Leaf index", row["seq"]),
                ("Leaf hash", leaf.hex()),
                ("Chain id", chain),
                ("Record id", row["record_id"]),
                ("Kind", kind),
                ("Origin", _ORIGINS.get(row["origin"], row["origin"])),
                ("Message type", row["msg_type"]),
                ("WhatsApp message id", row["wamid"]),
                ("Status", row["status"]),
                ("Error code", row["error_code"]),
                ("Template", row["template_name"]),
                ("Flags", ", ".join(flags)),
                ("Flags set by re-assessment", flags_seq),
                ("Flags when sealed", ", ".join(row["flags"]) if flags_seq is not None else None),
                ("Raw object", row["raw_key"]),
                ("Raw line", row["raw_line"]),
            ]
        )
        if kind == "message_edit" and row["context_wamid"] in by_wamid:
            original = by_wamid[row["context_wamid"]]
            original.setdefault("edits", []).append(
                {
                    "participant": sender,
                    "timestamp": timestamp,
                    "previous": original["body"],
                    "new": row["text"] or "",
                }
            )
        if kind == "message_revoke" and row["context_wamid"] in by_wamid:
            by_wamid[row["context_wamid"]]["deleted"] = True
        if kind in _MESSAGE_KINDS and row["wamid"]:
            by_wamid.setdefault(row["wamid"], event)
        events.append(event)
    manifest = {
        "version": RSMF_VERSION,
        "eventcollectionid": conversation_id,
        "participants": participants,
        "conversations": [conversation],
        "events": events,
    }
    return manifest, attachments


def _body(
    row: Row, rules: Rendering, bodies: TemplateBodies | None = None, held: bool = False
) -> str:
    kind, text = row["kind"], row["text"] or ""
    if kind == "media":
        found = attachment_of(row)
        what = f"{row['msg_type'] or 'media'} of record {row['ref_record_id']}"
        if found is not None and found.path is not None:
            return f"[attachment fetched: {what}, {found.size} bytes, sha256 {found.sha256}]"
        cause = found.cause if found is not None else None
        return f"[attachment not archived: {what}: {cause or 'unknown cause'} (media gap)]"
    if kind == "status":
        code = f" (error {row['error_code']})" if row["error_code"] is not None else ""
        return f"[delivery status: {row['status']}{code} for {row['wamid']}]"
    if kind == "message_edit":
        return f"[edit of {row['context_wamid']}] {text}".rstrip()
    if kind == "message_revoke":
        return f"[revoked {row['context_wamid']}]"
    if row["template_name"] and bodies is not None:
        return f"{render_send(row, bodies)}\n{text}".rstrip()
    if row["template_name"]:
        head = f"[template {row['template_name']} ({row['template_language']})]"
        return f"{head} {text}".rstrip()
    if row["media_id"]:
        how = "attached" if held else "reference only"
        return f"[{row['msg_type'] or 'media'} attachment: {how}] {text}".rstrip()
    if rules.readable_types and is_uncatalogued_message(row):
        return f"{uncatalogued_text(row)} {text}".rstrip()
    if rules.readable_types and kind == "assessment":
        flags = ", ".join(row["flags"]) or "none"
        return f"[re-assessment of record {row['ref_record_id']}: flags now {flags}]"
    if kind not in _MESSAGE_KINDS:
        summary = " ".join(str(v) for v in (kind, row["msg_type"], row["status"]) if v)
        return f"[{summary}] {text}".rstrip()
    return text


def _attached(
    rows: Sequence[Row], media: Mapping[str, bytes] | None
) -> dict[str, tuple[str, bytes, str]]:
    """Message record id → (file name, bytes, display) of its stored attachment in ``media``."""
    found: dict[str, tuple[str, bytes, str]] = {}
    for attachment in attachments(rows):
        path, held = attachment.path, media or {}
        if path is None or attachment.ref_record_id is None or path not in held:
            continue
        name = f"media-{path.removeprefix('media/')[:16]}"
        display = f"{attachment.mime_type or 'attachment'} ({attachment.filename or name})"
        found.setdefault(attachment.ref_record_id, (name, held[path], display))
    return found


def _attachment(row: Row) -> tuple[str, bytes]:
    media = detail_of(row).get("media")
    lines = [
        "This message referred to a media file that the archive does not hold.",
        f"media id: {row['media_id']}",
        f"message type: {row['msg_type']}",
        f"WhatsApp message id: {row['wamid']}",
        f"record id: {row['record_id']}",
    ]
    if isinstance(media, dict):
        lines += [f"{k}: {media[k]}" for k in ("filename", "mime_type", "sha256") if k in media]
    return f"media-{safe_name(row['media_id'])}.txt", ("\n".join(lines) + "\n").encode("utf-8")


# Removed from every header value: C0 and C1 controls (CR and LF would start a header of the
# reader's choosing), DEL, and the bidirectional marks, embeddings, overrides and isolates that
# make a name display in another order than it is written (the manifest keeps the value as sent).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# Written as is: short values of printable ASCII without "=?" (which would read as an encoded
# word); in an address's display name (a phrase) only atext and spaces. Anything else becomes
# RFC 2047 encoded words, folded so no line passes 76 characters.
_PLAIN_TEXT = re.compile(r"[\x20-\x7e]{1,60}")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]{1,60}")


def header_text(value: str) -> str:
    """What a header says of ``value``: it with every character of ``_UNSAFE`` removed."""
    return _UNSAFE.sub("", value)


@functools.lru_cache(maxsize=4096)
def _header(name: str, value: str, *, phrase: bool = False) -> str:
    """``name: value`` as one RFC 5322 header field (CRLF-folded), safe for any ``value``."""
    text = header_text(value)
    plain = _PLAIN_PHRASE if phrase else _PLAIN_TEXT
    if plain.fullmatch(text) and "=?" not in text and text == text.strip() and "  " not in text:
        return f"{name}: {text}"
    return f"{name}: {_encoded_words(text, first=len(name) + 2)}"


@functools.lru_cache(maxsize=4096)
def _header_v1(name: str, value: str, *, phrase: bool = False) -> str:
    """``name: value`` as ``coexarchive.bundle/v1`` wrote it: ASCII as is (a CR or LF in it
    starts another header), anything else as :class:`email.header.Header` encoded it. Kept only
    to compare with the bytes of a v1 bundle, which writes nothing out."""
    del phrase
    return f"{name}: {value if value.isascii() else Header(value, 'utf-8').encode()}"


def unsafe_header_values(rows: Sequence[Row], groups: Groups | None = None) -> list[str]:
    """The conversations (``chain/customer``) whose RSMF header values hold a character that
    ``coexarchive.bundle/v1`` wrote as is and later formats remove (controls, CR and LF among
    them, and direction marks): a reader loading such a v1 file can be attacked through it."""
    found = []
    for key, positions in (conversations(rows) if groups is None else groups).items():
        participants = _participants(key, [rows[p] for p in positions])[0]
        values = [p["display"] for p in participants] + [key[0], key[1] or ""]
        if any(header_text(value) != value for value in values):
            found.append(f"{key[0]}/{key[1] or '_no-customer'}")
    return found


def _encoded_words(text: str, *, first: int) -> str:
    """``text`` as RFC 2047 "B" encoded words (UTF-8), folded so no line passes 76 characters.

    ``first`` characters of the first line are taken already (the header's name and ": ").
    Words split between characters, never inside one; a decoder joins adjacent encoded words
    without the folding whitespace between them (RFC 2047 section 6.2).
    """
    room = (76 - first - 12) // 4 * 3  # bytes per word: 12 characters of "=?utf-8?b?" and "?="
    whole = text.encode("utf-8")
    if len(whole) <= room:
        return f"=?utf-8?b?{base64.b64encode(whole).decode('ascii')}?="
    words: list[bytes] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > room:
            words.append(chunk)
            chunk, room = b"", 45  # a continuation line: one space and 72 characters
        chunk += data
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def _wrapped_b64(data: bytes) -> bytes:
    # 57 input bytes make one 76-character line.
    return b"\r\n".join(
        binascii.b2a_base64(data[i : i + 57], newline=False) for i in range(0, len(data), 57)
    )


def _parts(
    key: ConversationKey,
    manifest: dict[str, Any],
    attachments: dict[str, bytes],
    day: str,
    rules: Rendering = CURRENT,
) -> RsmfParts:
    participants = manifest["participants"]
    events = manifest["events"]
    members = {"rsmf_manifest.json": orjson.dumps(manifest), **attachments}
    text = "\r\n".join(_extracted_text(events, participants, rules)) + "\r\n"
    business = participants[0]["display"]
    to = participants[1]["display"] if len(participants) > 1 else business
    subject = f"WhatsApp conversation {key[1] or '(account events)'} on {day}"
    header = _header if rules.safe_headers else _header_v1
    headers = [
        header("From", business, phrase=True) + " <>",
        header("To", to, phrase=True) + " <>",
        header("Subject", subject),
        f"X-RSMF-Version: {RSMF_VERSION}",
        f"X-RSMF-Generator: {rules.generator}",
        "X-RSMF-Application: WhatsApp",
        f"X-RSMF-BeginDate: {events[0]['timestamp']}",
        f"X-RSMF-EndDate: {events[-1]['timestamp']}",
        f"X-RSMF-EventCount: {len(events)}",
        f"X-RSMF-AttachmentCount: {len(attachments)}",
        header("X-RSMF-EventCollectionID", manifest["eventcollectionid"]),
        header("X-RSMF-Custodian", business),
        header("X-RSMF-Participants", "; ".join(p["display"] for p in participants)),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"',
    ]
    body = [
        "",
        f"--{BOUNDARY}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        _wrapped_b64(text.encode("utf-8")).decode("ascii"),
        "",
        f"--{BOUNDARY}",
        'Content-Type: application/zip; name="rsmf.zip"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="rsmf.zip"',
        "",
        "",
    ]
    after = f"\r\n\r\n--{BOUNDARY}--\r\n"
    return RsmfParts("\r\n".join(headers + body).encode("ascii"), members, after.encode("ascii"))


def _extracted_text(
    events: Sequence[dict[str, Any]], participants: Sequence[dict[str, Any]], rules: Rendering
) -> Iterator[str]:
    clean = header_text if rules.safe_headers else str
    names = {p["id"]: clean(p["display"]) for p in participants}
    for event in events:
        yield f"{event['timestamp']} {names.get(event['participant'], '?')}: {event['body']}"
