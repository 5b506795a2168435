"""The template registry: status and category per template name and language, as of a moment.

Facts come from ``message_template_status_update`` (status and category),
``template_category_update`` (category) and the imported catalogue (Graph API template list, status
and category as of the import). ``message_template_quality_update`` changes neither. Rules:
``schemas/ENRICHMENT.md``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from coexarchive.errors import FormatError
from coexarchive.records import Direction, Kind, Origin, Record, stable_id

__all__ = [
    "APPROVED_STATUSES",
    "CATALOGUE_TYPE",
    "CatalogueEntry",
    "TemplateEvent",
    "TemplateFacts",
    "TemplateRegistry",
    "catalogue_records",
    "content_digest",
    "language_key",
    "parse_catalogue",
    "template_event_of",
]

# Statuses under which Meta lets a template be sent. FLAGGED is a quality warning, still sendable.
APPROVED_STATUSES: Final = frozenset({"APPROVED", "REINSTATED", "FLAGGED"})
CATALOGUE_TYPE: Final = "template_catalogue"
_MAX_INT: Final = 2**53 - 1


def language_key(language: str | None) -> str:
    """``en_US``, ``en-US`` and ``EN_us`` are one language."""
    return (language or "").strip().replace("-", "_").casefold()


@dataclass(frozen=True, slots=True)
class TemplateEvent:
    record_id: str
    name: str
    language: str  # language_key form
    event_time: int
    status: str | None
    category: str | None
    content: str | None = None  # SHA-256 of a catalogue entry's components (its text)


def content_digest(entry: Any) -> str | None:
    """SHA-256 of a catalogue entry's ``components`` (canonical JSON); None without them."""
    components = entry.get("components") if isinstance(entry, dict) else None
    if not isinstance(components, list):
        return None
    return hashlib.sha256(orjson.dumps(components, option=orjson.OPT_SORT_KEYS)).hexdigest()


def template_event_of(record: Record) -> TemplateEvent | None:
    """The registry entry of a ``template_event`` record; None if it says nothing about status or
    category (quality updates)."""
    if record.kind != Kind.TEMPLATE_EVENT or not record.template_name:
        return None
    status: str | None = None
    category: str | None = None
    content: str | None = None
    if record.msg_type == CATALOGUE_TYPE:
        try:
            content = content_digest(orjson.loads(record.detail).get("raw"))
        except (orjson.JSONDecodeError, AttributeError):
            content = None
    if record.msg_type in ("template_status", CATALOGUE_TYPE):
        status = (record.template_status or record.status or "").upper() or None
        category = (record.template_category or "").upper() or None
    elif record.msg_type == "template_category":
        # Both variants carry the category in force when the event was sent: an upcoming change
        # takes effect with its own ``category_changed`` event.
        category = (record.template_category or "").upper() or None
    if status is None and category is None:
        return None
    return TemplateEvent(
        record.record_id,
        record.template_name,
        language_key(record.template_language),
        record.event_time,
        status,
        category,
        content,
    )


@dataclass(frozen=True)
class TemplateFacts:
    """What the registry knew about a template at a moment (None: nothing known)."""

    status: str | None = None
    category: str | None = None
    status_ref: str | None = None
    category_ref: str | None = None
    content: str | None = None  # the text in force (catalogue components' SHA-256), if known


class TemplateRegistry:
    """As-of status and category per (template name, language)."""

    def __init__(self, events: Iterable[TemplateEvent] = ()) -> None:
        self._events: dict[tuple[str, str], list[TemplateEvent]] = {}
        seen: set[str] = set()
        for event in sorted(events, key=lambda e: (e.event_time, e.record_id)):
            if event.record_id not in seen:
                seen.add(event.record_id)
                self._events.setdefault((event.name, event.language), []).append(event)
        self._times = {key: [e.event_time for e in found] for key, found in self._events.items()}

    def facts_at(self, name: str | None, language: str | None, at: int) -> TemplateFacts:
        key = (name or "", language_key(language))
        found = self._events.get(key)
        if not found:
            return TemplateFacts()
        end = bisect.bisect_right(self._times[key], at)
        status = category = content = None
        status_ref = category_ref = None
        for event in reversed(found[:end]):
            if status is None and event.status is not None:
                status, status_ref = event.status, event.record_id
            if category is None and event.category is not None:
                category, category_ref = event.category, event.record_id
            if content is None and event.content is not None:
                content = event.content
            if status is not None and category is not None and content is not None:
                break
        return TemplateFacts(status, category, status_ref, category_ref, content)


# --- catalogue import ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueEntry:
    index: int  # position in data[]
    name: str
    language: str
    status: str
    category: str
    template_id: str | None
    raw: dict[str, Any]


def _exact_int(text: str) -> int | str:
    value = int(text)
    return value if -_MAX_INT <= value <= _MAX_INT else text


def parse_catalogue(
    data: bytes, *, source: str = "catalogue"
) -> tuple[list[CatalogueEntry], list[str]]:
    """Entries of a Graph API template list (``{"data": [...], "paging": ...}`` or a bare list),
    and a problem line for each entry that lacks what the registry needs."""
    try:
        # Numbers stay exact: fractions as text, integers beyond 2^53 as text.
        tree = json.loads(data.decode("utf-8"), parse_float=str, parse_int=_exact_int)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{source}: not a JSON template list ({exc})") from exc
    items = tree.get("data") if isinstance(tree, dict) else tree
    if not isinstance(items, list):
        raise FormatError(f"{source}: expected an object with a data array, or an array")
    entries: list[CatalogueEntry] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"data[{index}]: not an object")
            continue
        missing = [k for k in ("name", "language", "status", "category") if not _text(item.get(k))]
        if missing:
            problems.append(f"data[{index}]: {', '.join(missing)} missing or not text")
            continue
        template_id = item.get("id")
        entries.append(
            CatalogueEntry(
                index=index,
                name=item["name"],
                language=item["language"],
                status=item["status"].upper(),
                category=item["category"].upper(),
                template_id=None if template_id is None else str(template_id),
                raw=item,
            )
        )
    return entries, problems


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 512


def catalogue_records(
    entries: Sequence[CatalogueEntry],
    *,
    waba_id: str,
    as_of_ms: int,
    imported_ms: int,
    registry: TemplateRegistry | None = None,
    source: str = "catalogue",
) -> list[Record]:
    """``template_event`` records (origin system) for entries the registry does not already know
    in that state at ``as_of_ms``; one snapshot per template, at the catalogue's as-of time."""
    chain_id = f"waba-{waba_id}"
    known = registry or TemplateRegistry()
    records = []
    for entry in entries:
        facts = known.facts_at(entry.name, entry.language, as_of_ms)
        digest = content_digest(entry.raw)
        same_text = digest is None or facts.content == digest
        if facts.status == entry.status and facts.category == entry.category and same_text:
            continue
        detail = {
            "v": 1,
            "field": CATALOGUE_TYPE,
            "path": f"$.data[{entry.index}]",
            "time_source": "as_of",
            "template_id": entry.template_id,
            "source": source,
            "raw": entry.raw,
        }
        records.append(
            Record(
                chain_id=chain_id,
                record_id=stable_id(
                    CATALOGUE_TYPE,
                    chain_id,
                    entry.template_id,
                    entry.name,
                    language_key(entry.language),
                    entry.status,
                    entry.category,
                    as_of_ms,
                ),
                kind=Kind.TEMPLATE_EVENT.value,
                origin=Origin.SYSTEM.value,
                direction=Direction.NONE.value,
                event_time=as_of_ms,
                received_time=imported_ms,
                waba_id=waba_id,
                msg_type=CATALOGUE_TYPE,
                status=entry.status,
                template_name=entry.name,
                template_language=entry.language,
                template_status=entry.status,
                template_category=entry.category,
                detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
            )
        )
    return records
