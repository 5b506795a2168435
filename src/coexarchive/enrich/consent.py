"""The consent ledger: opt-in and opt-out events, as of a moment, per customer and purpose.

Consent events come from three places, all sealed as ``consent_event`` records:

- ``user_preferences`` webhooks (the customer tapped stop or resume for marketing messages);
- keywords in inbound text (``STOP``, ``BAJA``, ``रोकें``, ...), turned into records here;
- CRM imports (``coexarchive consent import``), with their source and evidence reference.

A purpose is ``marketing`` or ``other``; an event may name ``all`` and then counts for both. The
state of a customer for a purpose at a moment is the state of the latest event at or before that
moment (an opt-out wins a tie), or ``unknown`` when there is none. Rules: ``schemas/ENRICHMENT.md``.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import orjson

from coexarchive.errors import ConfigError
from coexarchive.records import Direction, Kind, Origin, Record, stable_id

__all__ = [
    "ALL",
    "DEFAULT_KEYWORDS",
    "MARKETING",
    "OPTED_IN",
    "OPTED_OUT",
    "OTHER",
    "UNKNOWN",
    "ConsentEvent",
    "ConsentLedger",
    "KeywordConfig",
    "KeywordMatch",
    "consent_event_of",
    "customer_keys",
    "keyword_event",
    "normalize_phrase",
    "purpose_of",
    "state_of",
]

OPTED_IN: Final = "opted_in"
OPTED_OUT: Final = "opted_out"
UNKNOWN: Final = "unknown"

MARKETING: Final = "marketing"
OTHER: Final = "other"
ALL: Final = "all"

# user_preferences values (normaliser lower-cases them) and the states they mean.
_STATUS_STATES: Final[dict[str, str]] = {
    "stop": OPTED_OUT,
    "resume": OPTED_IN,
    "signup": OPTED_IN,
    OPTED_OUT: OPTED_OUT,
    OPTED_IN: OPTED_IN,
}
_PURPOSES: Final[dict[str, str]] = {
    "marketing_messages": MARKETING,
    MARKETING: MARKETING,
    OTHER: OTHER,
    ALL: ALL,
}


def customer_keys(record: Record) -> tuple[str, ...]:
    """Every identifier a record knows its customer by (wa_id, BSUID), for matching across kinds."""
    wa_id, user_id, customer_id = record.customer_wa_id, record.customer_user_id, record.customer_id
    if not user_id and (not customer_id or customer_id == wa_id):
        return (wa_id,) if wa_id else ()  # the usual record: a wa_id that is its customer id
    keys = []
    for value in (wa_id, user_id, customer_id):
        if value and value not in keys:
            keys.append(value)
    return tuple(keys)


def purpose_of(category: str | None) -> str | None:
    """The ledger purpose of a consent record's ``msg_type``; None for a category we do not know."""
    return _PURPOSES.get((category or "").lower())


def state_of(record: Record) -> str | None:
    """The consent state a consent record asserts (its ``consent_state``, else from ``status``)."""
    if record.consent_state in (OPTED_IN, OPTED_OUT):
        return record.consent_state
    return _STATUS_STATES.get((record.status or "").lower())


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One consent fact: who, for what purpose, which state, from when, and the record saying so."""

    record_id: str
    keys: tuple[str, ...]
    purpose: str  # marketing, other or all
    state: str  # opted_in or opted_out
    event_time: int


def consent_event_of(record: Record) -> ConsentEvent | None:
    """The ledger entry of a ``consent_event`` record, or None if it asserts nothing we can use."""
    if record.kind != Kind.CONSENT_EVENT:
        return None
    purpose, state, keys = purpose_of(record.msg_type), state_of(record), customer_keys(record)
    if purpose is None or state is None or not keys:
        return None
    return ConsentEvent(record.record_id, keys, purpose, state, record.event_time)


def _order(event: ConsentEvent) -> tuple[int, int, str]:
    # Latest wins; at the same millisecond an opt-out wins over an opt-in.
    return (event.event_time, 1 if event.state == OPTED_OUT else 0, event.record_id)


class ConsentLedger:
    """As-of consent state per customer identifier and purpose."""

    def __init__(self, events: Iterable[ConsentEvent] = ()) -> None:
        self._by_key: dict[str, list[ConsentEvent]] = {}
        self._times: dict[str, list[int]] = {}
        seen: set[str] = set()
        for event in sorted(events, key=_order):
            if event.record_id in seen:
                continue
            seen.add(event.record_id)
            for key in event.keys:
                self._by_key.setdefault(key, []).append(event)
        for key, found in self._by_key.items():
            self._times[key] = [event.event_time for event in found]

    def __len__(self) -> int:
        return len({e.record_id for found in self._by_key.values() for e in found})

    def state_at(
        self, keys: Sequence[str], purpose: str, at: int
    ) -> tuple[str, ConsentEvent | None]:
        """The state for ``purpose`` at ``at`` (ms), and the event that set it."""
        best: ConsentEvent | None = None
        for key in keys:
            found = self._by_key.get(key)
            if not found:
                continue
            end = bisect.bisect_right(self._times[key], at)
            for event in reversed(found[:end]):
                if event.purpose in (purpose, ALL):
                    if best is None or _order(event) > _order(best):
                        best = event
                    break
        return (best.state, best) if best is not None else (UNKNOWN, None)


# --- keywords ------------------------------------------------------------------------------------


def normalize_phrase(text: str) -> str:
    """Case-folded NFKC text with single spaces and no punctuation, symbols or emoji at the ends."""
    if text.isascii():
        # ASCII is its own NFKC form and case-folds as it lower-cases.
        return " ".join(text.lower().split()).strip(_ASCII_EDGES)
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    category = unicodedata.category  # _edge, inlined: this runs for every inbound text
    while start < end and category(folded[start])[0] in "PSZC":
        start += 1
    while end > start and category(folded[end - 1])[0] in "PSZC":
        end -= 1
    return folded[start:end]


def _edge(char: str) -> bool:
    return unicodedata.category(char)[0] in "PSZC"


_ASCII_EDGES: Final = "".join(char for char in map(chr, range(128)) if _edge(char))


# Whole-message keywords (after normalize_phrase), by language. Carriers' and BSPs' usual words
# for the markets where Coexistence is offered; a firm adds its own through KeywordConfig.
_OPT_OUT: Final[dict[str, tuple[str, ...]]] = {
    "en": ("STOP", "STOP ALL", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT",
           "OPT-OUT", "OPTOUT", "REMOVE ME"),
    "es": ("BAJA", "DAR DE BAJA", "PARAR", "ALTO", "DETENER", "CANCELAR SUSCRIPCIÓN", "NO MÁS"),
    "pt": ("PARAR", "PARE", "SAIR", "CANCELAR INSCRIÇÃO", "DESCADASTRAR", "NÃO QUERO MAIS"),
    "hi": ("रोकें", "रोको", "बंद करें", "बंद करो", "बंद", "रुको", "BAND KARO", "BAND KAREIN",
           "ROKO", "ROKEN", "RUKO"),
    "id": ("BERHENTI", "STOP", "KELUAR", "BERHENTI LANGGANAN", "HENTIKAN"),
    "ar": ("توقف", "إلغاء الاشتراك"),
}  # fmt: skip
_OPT_IN: Final[dict[str, tuple[str, ...]]] = {
    "en": ("START", "UNSTOP", "SUBSCRIBE", "RESUME", "OPT IN", "OPT-IN", "OPTIN"),
    "es": ("ALTA", "DAR DE ALTA", "SUSCRIBIR", "REANUDAR", "INICIAR"),
    "pt": ("INICIAR", "VOLTAR", "ASSINAR", "RETOMAR", "COMEÇAR"),
    "hi": ("शुरू", "शुरू करें", "शुरू करो", "SHURU", "SHURU KARO", "CHALU KARO"),
    "id": ("MULAI", "LANJUT", "BERLANGGANAN", "AKTIFKAN"),
    "ar": ("ابدأ", "اشتراك"),
}  # fmt: skip


@dataclass(frozen=True)
class KeywordMatch:
    state: str  # opted_out or opted_in
    phrase: str  # the normalised keyword matched
    languages: tuple[str, ...]


@dataclass(frozen=True)
class KeywordConfig:
    """Opt-out and opt-in keywords per language; a whole inbound message must equal one.

    ``purpose`` is what a keyword event covers (``all`` by default: "STOP" means stop everything).
    ``payloads_*`` match quick-reply button payloads exactly (case-insensitive).
    """

    opt_out: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(_OPT_OUT))
    opt_in: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(_OPT_IN))
    purpose: str = ALL
    payloads_opt_out: tuple[str, ...] = ()
    payloads_opt_in: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.purpose not in (MARKETING, OTHER, ALL):
            raise ConfigError(f"keyword purpose {self.purpose!r}: use marketing, other or all")
        _ = self._table  # conflicts are configuration errors, found at once

    @cached_property
    def _table(self) -> dict[str, KeywordMatch]:
        table: dict[str, KeywordMatch] = {}
        for state, lists in ((OPTED_OUT, self.opt_out), (OPTED_IN, self.opt_in)):
            for language, phrases in sorted(lists.items()):
                for phrase in phrases:
                    key = normalize_phrase(phrase)
                    if not key:
                        continue
                    found = table.get(key)
                    if found is not None and found.state != state:
                        raise ConfigError(f"keyword {phrase!r} is both an opt-out and an opt-in")
                    languages = (*found.languages, language) if found else (language,)
                    table[key] = KeywordMatch(state, key, languages)
        return table

    @cached_property
    def _payloads(self) -> dict[str, str]:
        found = {p.casefold(): OPTED_OUT for p in self.payloads_opt_out}
        for payload in self.payloads_opt_in:
            if found.get(payload.casefold()) == OPTED_OUT:
                raise ConfigError(f"payload {payload!r} is both an opt-out and an opt-in")
            found[payload.casefold()] = OPTED_IN
        return found

    def match_text(self, text: str | None) -> KeywordMatch | None:
        if not text or len(text) > 64:
            return None
        return self._table.get(normalize_phrase(text))

    def match_payload(self, payload: str | None) -> KeywordMatch | None:
        state = self._payloads.get((payload or "").casefold()) if payload else None
        return KeywordMatch(state, payload or "", ("payload",)) if state else None


DEFAULT_KEYWORDS: Final = KeywordConfig()

_KEYWORD_TYPES: Final = frozenset({"text", "button", "interactive"})
_MESSAGE: Final = Kind.MESSAGE.value
_CUSTOMER: Final = Origin.CUSTOMER.value
_CONSENT_EVENT: Final = Kind.CONSENT_EVENT.value
_NO_DIRECTION: Final = Direction.NONE.value


def keyword_event(record: Record, keywords: KeywordConfig) -> Record | None:
    """The consent record a live inbound message's keyword implies, or None.

    Its id derives from the message's record id, so a re-run or a duplicate makes the same record.
    """
    if (
        record.kind != _MESSAGE
        or record.origin != _CUSTOMER
        or record.msg_type not in _KEYWORD_TYPES
        or not (record.customer_wa_id or record.customer_user_id or record.customer_id)
    ):
        return None
    match = keywords.match_text(record.text)
    via = "text"
    if match is None and record.msg_type == "button":
        payload = _button_payload(record.detail)
        match, via = keywords.match_payload(payload), "button_payload"
    if match is None:
        return None
    detail = {
        "v": 1,
        "field": "keyword",
        "path": "$",
        "time_source": "source_message",
        "keyword": match.phrase,
        "languages": list(match.languages),
        "matched_in": via,
        "source_record_id": record.record_id,
        "source_wamid": record.wamid,
        "source_raw_key": record.raw_key,
        "source_raw_line": record.raw_line,
    }
    # Positional, in field order (a keyword call costs twice as much).
    return Record(
        record.chain_id, stable_id("consent_keyword", record.chain_id, record.record_id),
        _CONSENT_EVENT, _CUSTOMER, _NO_DIRECTION, record.event_time, record.received_time,
        record.waba_id, record.business_phone, record.customer_id, record.customer_wa_id,
        record.customer_user_id, record.wamid, keywords.purpose, record.text, None, None, None,
        None, None, match.state, None, None, record.record_id, match.state, None, (),
        orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(), record.raw_key,
        record.raw_line,
    )  # fmt: skip


def _button_payload(detail: str) -> str | None:
    try:
        found = orjson.loads(detail).get("button_payload")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None
