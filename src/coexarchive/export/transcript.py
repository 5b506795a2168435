"""Readable transcripts: one self-contained HTML page per conversation.

A page has inline CSS only: no script, no image, no external fetch (a Content-Security-Policy of
``default-src 'none'`` says so to the browser). Every record of the conversation is one table
row on one line of the file, showing its leaf index (``seq``) and leaf hash prefix so a reader
can find its proof. Message text is HTML-escaped, control characters are shown as visible
symbols, and each text is bidi-isolated so right-to-left content cannot reorder its neighbours.

Rendering is a pure function of the bundle's records and time zone: ``verify-bundle`` renders
the pages again from the records it has proven and compares them byte for byte.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from coexarchive.errors import ConfigError
from coexarchive.export._rows import (
    ConversationKey,
    CurrentFlags,
    Row,
    conversations,
    current_flags,
    detail_of,
    is_uncatalogued_message,
    safe_name,
    uncatalogued_text,
)
from coexarchive.export.formats import CURRENT, Rendering
from coexarchive.export.media import Attachment, attachment_of, attachments
from coexarchive.export.templates import TemplateBodies, render_send

__all__ = ["TRANSCRIPT_VERSION", "load_zone", "render_transcripts", "transcript_path"]

TRANSCRIPT_VERSION = CURRENT.transcript_version

ORIGINS = {
    "customer": "Customer",
    "business_app": "Business App (phone)",
    "cloud_api": "Cloud API",
    "history_import": "History import",
    "system": "System",
    "crm": "CRM import",
    "auditor": "Auditor",
}
DIRECTIONS = {"inbound": "← in", "outbound": "→ out", "none": "·"}
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker", "voice"})
# C0 controls (bar tab and newline) and DEL become their visible Control Pictures.
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}

_STYLE = """\
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:24px;\
color:#111}h1{font-size:20px}table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;\
padding:4px 6px;vertical-align:top;text-align:left}th{background:#f2f2f2}tr.in td.body{background:\
#f7fbff}tr.out td.body{background:#f4fff4}tr.aux{color:#555;font-size:12px}.body{white-space:\
pre-wrap;unicode-bidi:isolate;overflow-wrap:anywhere}.flag{display:inline-block;background:#fde2e2;\
color:#8a0000;border-radius:3px;padding:0 4px;margin:1px;font-size:12px}.mono{font-family:ui-\
monospace,Menlo,Consolas,monospace;font-size:12px}.meta{color:#444}dl{display:grid;grid-template-\
columns:max-content auto;gap:2px 12px}dt{font-weight:600}footer{margin-top:24px;color:#444;font-\
size:12px}"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_HEAD = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'\">\n"
    '<meta name="generator" content="{generator}">\n'
    "<title>{title}</title>\n<style>" + _STYLE.replace("{", "{{").replace("}", "}}") + "</style>\n"
    "</head>\n<body>\n"
)
_FOOTER = (
    '<footer>Rendered from the sealed records in <span class="mono">records/records.jsonl'
    "</span>. The records, not this page, are the evidence: each row's leaf index and hash lead "
    'to its inclusion proof in <span class="mono">proofs/</span>. Run <span class="mono">'
    "coexarchive verify-bundle</span> to check them and to re-render this page.</footer>\n"
    "</body>\n</html>\n"
)


def load_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        ) from None


_PLAIN_TEXT = re.compile("[^\\x00-\\x08\\x0b-\\x1f\\x7f&<>\"']*")


def esc(text: str | None) -> str:
    if not text:
        return ""
    if _PLAIN_TEXT.fullmatch(text):
        return text
    return html.escape(text.translate(_CONTROLS), quote=True)


def transcript_path(key: ConversationKey) -> str:
    chain, customer = key
    name = "_no-customer" if customer is None else safe_name(customer)
    return f"transcripts/chain={safe_name(chain)}/{name}.html"


_BUCKET_MS = 900_000  # zone offsets are looked up per quarter hour, checked at both ends


class _Clock:
    """Formats times in UTC and in the chosen zone, many at a time."""

    def __init__(self, zone: tzinfo, zone_name: str) -> None:
        self.zone = zone
        self.zone_name = zone_name
        self._offsets: dict[int, tuple[int, str] | None] = {}

    def utc(self, ms: int) -> str:
        return self.utc_many([ms])[0]

    def utc_many(self, values: Sequence[int]) -> list[str]:
        texts = np.datetime_as_string(np.array(values, dtype="datetime64[ms]"), unit="ms")
        return [t.replace("T", " ") for t in texts.tolist()]

    def _offset(self, ms: int) -> tuple[int, str]:
        moment = datetime.fromtimestamp(ms / 1000, tz=self.zone)
        offset = moment.utcoffset()
        seconds = int(offset.total_seconds()) if offset is not None else 0
        return seconds, moment.tzname() or ""

    def _bucket(self, ms: int) -> tuple[int, str] | None:
        bucket = ms // _BUCKET_MS
        if bucket not in self._offsets:
            first = self._offset(bucket * _BUCKET_MS)
            last = self._offset(bucket * _BUCKET_MS + _BUCKET_MS - 1)
            # A transition inside the quarter hour: such times are looked up one by one.
            self._offsets[bucket] = first if first == last else None
        return self._offsets[bucket]

    def local_many(self, values: Sequence[int]) -> list[str]:
        offsets = [self._bucket(ms) or self._offset(ms) for ms in values]
        shifted = np.array(
            [ms + seconds * 1000 for ms, (seconds, _) in zip(values, offsets, strict=True)],
            dtype="datetime64[ms]",
        )
        texts = np.datetime_as_string(shifted, unit="s").tolist()
        return [
            f"{text.replace('T', ' ')} {name} (UTC{_offset_text(seconds)})"
            for text, (seconds, name) in zip(texts, offsets, strict=True)
        ]


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def render_transcripts(
    rows: Sequence[Row],
    leaves: Sequence[bytes],
    *,
    zone_name: str,
    matter: str,
    groups: Mapping[ConversationKey, Sequence[int]] | None = None,
    rules: Rendering = CURRENT,
    thumbs: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """Path → HTML bytes: one page per conversation, plus ``transcripts/index.html``.

    ``groups`` is ``conversations(rows)`` when the caller has it already; ``rules`` those of the
    bundle format rendered (an earlier format's to verify a bundle it made); ``thumbs`` maps an
    image attachment's sha256 to its thumbnail file in the bundle (formats with thumbnails).
    """
    clock = _Clock(load_zone(zone_name), zone_name)
    times = [row["event_time"] for row in rows]
    utc, local = clock.utc_many(times), [esc(text) for text in clock.local_many(times)]
    current = current_flags(rows) if rules.current_flags else [(r["flags"], None) for r in rows]
    # Template sends are shown with the registry's text, from catalogue rows of any conversation.
    bodies = TemplateBodies(rows) if rules.template_bodies else None
    pages: dict[str, bytes] = {}
    index_rows = []
    for key, positions in (conversations(rows) if groups is None else groups).items():
        path = transcript_path(key)
        page = _page(
            key,
            rows,
            leaves,
            current,
            positions,
            utc,
            local,
            clock,
            matter,
            rules,
            bodies,
            thumbs or {},
        )
        pages[path] = page.encode()
        first, last = positions[0], positions[-1]
        index_rows.append(
            f'<tr><td class="mono">{esc(key[0])}</td><td>{esc(key[1] or "(no customer)")}</td>'
            f"<td>{len(positions)}</td><td>{utc[first]}</td><td>{utc[last]}</td>"
            f'<td><a href="{esc(path.removeprefix("transcripts/"))}">open</a></td></tr>\n'
        )
    pages["transcripts/index.html"] = (
        _HEAD.format(
            title=esc(f"Transcripts — matter {matter}"), generator=rules.transcript_version
        )
        + f"<h1>Transcripts — matter {esc(matter)}</h1>\n"
        + f'<p class="meta">{len(index_rows)} conversation(s), {len(rows)} record(s). Times in '
        "UTC.</p>\n<table>\n<tr><th>Chain (business number id)</th><th>Customer</th>"
        "<th>Records</th><th>First (UTC)</th><th>Last (UTC)</th><th>Transcript</th></tr>\n"
        + "".join(index_rows)
        + "</table>\n"
        + _FOOTER
    ).encode("utf-8")
    return pages


def _page(
    key: ConversationKey,
    all_rows: Sequence[Row],
    all_leaves: Sequence[bytes],
    current: Sequence[CurrentFlags],
    positions: Sequence[int],
    utc: Sequence[str],
    local: Sequence[str],
    clock: _Clock,
    matter: str,
    rules: Rendering,
    bodies: TemplateBodies | None = None,
    thumbs: Mapping[str, str] | None = None,
) -> str:
    chain, customer = key
    rows = [all_rows[p] for p in positions]
    names = sorted({n for n in (_profile_name(r) for r in rows) if n})
    business = next((r["business_phone"] for r in rows if r["business_phone"]), None)
    later = _later_events(rows, {id(all_rows[p]): utc[p] for p in positions})
    title = f"WhatsApp conversation {customer or '(no customer)'} — {business or chain}"
    # Each message's fetched attachment, from the media record that completes it.
    attached = {
        a.ref_record_id: replace(a, thumb=(thumbs or {}).get(a.sha256 or ""))
        for a in attachments(rows)
        if a.ref_record_id
    }
    head = _HEAD.format(title=esc(title), generator=rules.transcript_version)
    if any(a.path for a in attached.values()):
        # The bundle's own media/ files only: no other source, still no script.
        head = head.replace(_CSP, _CSP + "; img-src 'self'; media-src 'self'", 1)
    parts = [
        head,
        f"<h1>{esc(title)}</h1>\n<dl>\n",
        f"<dt>Matter</dt><dd>{esc(matter)}</dd>\n",
        f"<dt>Business number</dt><dd>{esc(business or 'unknown')} "
        f'(phone number id <span class="mono">{esc(chain)}</span>)</dd>\n',
        f"<dt>Customer</dt><dd>{esc(customer or '(records naming no customer)')}"
        + (f" — profile name(s): {esc(', '.join(names))}" if names else "")
        + "</dd>\n",
        f"<dt>Period</dt><dd>{utc[positions[0]]} to {utc[positions[-1]]} UTC</dd>\n",
        f"<dt>Records</dt><dd>{len(rows)}</dd>\n",
        f"<dt>Time zones</dt><dd>UTC and {esc(clock.zone_name)}</dd>\n</dl>\n",
        "<table>\n<tr><th>Leaf index · hash</th><th>Time (UTC)</th>"
        f"<th>Time ({esc(clock.zone_name)})</th><th>Direction</th><th>Origin</th><th>Kind</th>"
        "<th>Content</th><th>Statuses and later events</th><th>Flags</th></tr>\n",
    ]
    for position in positions:
        row = all_rows[position]
        after = later.get(row["wamid"]) if row["wamid"] else None
        parts.append(
            _row(
                row,
                all_leaves[position],
                utc[position],
                local[position],
                after,
                current[position],
                rules,
                attached.get(row["record_id"]),
                bodies,
            )
        )
    parts.append("</table>\n")
    parts.append(_FOOTER)
    return "".join(parts)


def _profile_name(row: Row) -> str | None:
    if row["kind"] not in ("message", "history_message") or row["direction"] != "inbound":
        return None
    contact = detail_of(row).get("contact")
    if isinstance(contact, dict):
        profile = contact.get("profile")
        if isinstance(profile, dict) and isinstance(profile.get("name"), str):
            name: str = profile["name"]
            return name
    return None


_MESSAGE_KINDS = frozenset({"message", "echo", "outbound", "history_message", "unsupported"})


def _later_events(rows: Sequence[Row], utc: Mapping[int, str]) -> Mapping[str, list[str]]:
    """Per message wamid: its statuses, edits and revokes, as short lines."""
    messages = {r["wamid"] for r in rows if r["kind"] in _MESSAGE_KINDS and r["wamid"]}
    later: dict[str, list[str]] = {}
    for row in rows:
        kind = row["kind"]
        if kind == "status":
            target = row["wamid"]
            label = f"{row['status'] or 'status'}"
            if row["error_code"] is not None:
                label += f" (error {row['error_code']})"
        elif kind in ("message_edit", "message_revoke"):
            target = row["context_wamid"]
            label = "edited" if kind == "message_edit" else "revoked (deleted for everyone)"
        else:
            continue
        if target in messages:
            later.setdefault(target, []).append(f"{label} {utc[id(row)]} UTC (#{row['seq']})")
    return later


def _row(
    row: Row,
    leaf: bytes,
    utc: str,
    local: str,
    later: list[str] | None,
    current: CurrentFlags,
    rules: Rendering,
    attachment: Attachment | None = None,
    bodies: TemplateBodies | None = None,
) -> str:
    """One record's table row; ``local`` is already escaped. Flags are current: a re-assessed
    record's say which assessment set them, and an assessment row shows its own in its content
    (with the rules of ``coexarchive.bundle/v1``, flags as sealed, on every row)."""
    direction = row["direction"]
    css = "in" if direction == "inbound" else "out" if direction == "outbound" else "aux"
    if row["kind"] not in _MESSAGE_KINDS and row["kind"] not in ("message_edit", "message_revoke"):
        css = "aux"
    kind = row["kind"] + (f" · {row['msg_type']}" if row["msg_type"] else "")
    shown, flags_seq = current
    flags = "".join(f'<span class="flag">{esc(flag)}</span>' for flag in shown)
    if row["kind"] == "assessment" and rules.current_flags:
        flags = ""
    elif flags_seq is not None:
        sealed = ", ".join(row["flags"]) or "none"
        flags += esc(f" (re-assessed #{flags_seq}; flags when sealed: {sealed})")
    statuses = "<br>".join(esc(line) for line in later or ())
    arrow = DIRECTIONS.get(direction, esc(direction))
    origin = esc(ORIGINS.get(row["origin"], row["origin"]))
    content = _content(row, rules, attachment, bodies)
    return (
        f'<tr class="{css}" id="seq-{row["seq"]}"><td class="mono">#{row["seq"]} · '
        f"{leaf[:8].hex()}</td><td>{utc}</td>"
        f"<td>{local}</td><td>{arrow}</td><td>{origin}</td>"
        f'<td>{esc(kind)}</td><td class="body" dir="auto">{content}</td>'
        f"<td>{statuses}</td><td>{flags}</td></tr>\n"
    )


def _content(
    row: Row,
    rules: Rendering,
    attachment: Attachment | None = None,
    bodies: TemplateBodies | None = None,
) -> str:
    kind, msg_type = row["kind"], row["msg_type"]
    text = esc(row["text"])
    if kind == "media":
        return _fetch_outcome(row)
    if kind == "status":
        return esc(f"Delivery status {row['status']} for message {row['wamid']}")
    if kind == "message_edit":
        return esc(f"Edit of message {row['context_wamid']}: ") + text
    if kind == "message_revoke":
        return esc(f"Revoked message {row['context_wamid']}")
    if kind == "consent_event":
        return esc(
            f"Consent event: {row['status']} ({msg_type}) → {row['consent_state'] or 'state n/a'}"
        )
    if kind == "assessment" and rules.readable_types:
        previous = detail_of(row).get("previous_flags")
        was = ", ".join(map(str, previous)) if isinstance(previous, list) else "not recorded"
        return esc(
            f"Re-assessment of record {row['ref_record_id']}: its flags are now "
            f"{', '.join(row['flags']) or 'none'} (before: {was or 'none'})"
        )
    if rules.readable_types and is_uncatalogued_message(row):
        return esc(uncatalogued_text(row)) + ("\n" + text if text else "")
    if row["template_name"] and bodies is not None:
        return esc(render_send(row, bodies)) + ("\n" + text if text else "")
    if row["template_name"]:
        template = esc(
            f"[template {row['template_name']} ({row['template_language']}; "
            f"{row['template_category'] or 'category unknown'}; "
            f"{row['template_status'] or 'status unknown'})]"
        )
        return template + ("\n" + text if text else "")
    if row["media_id"] or msg_type in MEDIA_TYPES:
        shown = _media(row) if attachment is None else _attachment(row, attachment, rules)
        return shown + ("\n" + text if text else "")
    if kind not in _MESSAGE_KINDS:
        return esc(" ".join(str(v) for v in (kind, msg_type, row["status"]) if v)) + (
            "\n" + text if text else ""
        )
    return text


def _media(row: Row) -> str:
    media = detail_of(row).get("media")
    facts = [f"media id {row['media_id']}"] if row["media_id"] else []
    if isinstance(media, dict):
        for name in ("filename", "mime_type", "sha256"):
            if isinstance(media.get(name), str):
                facts.append(f"{name} {media[name]}")
    return esc(f"[{row['msg_type'] or 'media'} — reference only: {', '.join(facts) or 'no id'}]")


def _attachment(row: Row, attachment: Attachment, rules: Rendering) -> str:
    """The attachment itself, from the bundle's ``media/`` file its media record names."""
    what = row["msg_type"] or "media"
    path = attachment.path
    if path is None:
        cause = attachment.cause or "unknown cause"
        return esc(f"[{what} — not archived: {cause} (media gap, record #{attachment.seq})]")
    src = f"../../{path}"
    mime = attachment.mime_type or "application/octet-stream"
    facts = esc(f"[{what} — {mime}, {attachment.size} bytes, sha256 {attachment.sha256}]")
    major = mime.split("/", 1)[0]
    if (major == "image" or what in ("image", "sticker")) and rules.thumbnails:
        # A derived thumbnail (never evidence) linking the original; an image Pillow refused
        # (a decompression bomb, unreadable) is a link alone.
        if attachment.thumb is not None:
            shown = (
                f'<a href="{src}"><img src="../../{esc(attachment.thumb)}" '
                f'alt="{esc(what)} (thumbnail; open the original)" loading="lazy"></a>'
            )
        else:
            shown = f'<a href="{src}">open the {esc(what)} (no thumbnail)</a>'
    elif major == "image" or what in ("image", "sticker"):
        shown = (
            f'<a href="{src}"><img src="{src}" alt="{esc(what)}" loading="lazy" '
            'style="max-width:320px;max-height:320px"></a>'
        )
    elif major == "audio" or what == "audio":
        shown = f'<audio controls preload="none" src="{src}"></audio>'
    elif major == "video" or what == "video":
        shown = f'<video controls preload="none" style="max-width:320px" src="{src}"></video>'
    else:
        name = attachment.filename or "document"
        shown = f'<a href="{src}" download="{esc(name)}">{esc(name)}</a>'
    return f"{shown}<br>{facts}"


def _fetch_outcome(row: Row) -> str:
    found = attachment_of(row)
    if found is None:
        return ""
    if found.path is None:
        return esc(
            f"Attachment of record {found.ref_record_id} not archived: "
            f"{found.cause or 'unknown cause'} (media gap)"
        )
    return esc(
        f"Attachment of record {found.ref_record_id} archived: {found.mime_type}, "
        f"{found.size} bytes, sha256 {found.sha256}"
    )
