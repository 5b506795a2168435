"""Properties of the lexicon matcher over generated multilingual text.

The matcher rejects most messages by looking up their raw whitespace-free pieces in a set of
pieces known to start no term (``Matcher._may_match``). That shortcut must be exact: here the same
texts go through a matcher that uses it (one instance for every example, so its caches fill and
are reused as in a scan) and through one that never takes it, and every result must be equal.
A term written into a text, in any case and with any accents, harakat or punctuation around it,
is found.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coexarchive.supervision.matcher import Matcher
from coexarchive.supervision.normalize import normalize, normalize_pieces
from coexarchive.supervision.policy import Policy, parse_policy

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TERMS = {
    "en": ["refund*", "guaranteed return", "damaged", "money back", "risk free"],
    "es": ["reembolso", "devolución", "garantizado"],
    "pt": ["fatura", "trocar", "reembolso"],
    "ar": ["إلغاء", "فاتورة", "استرداد"],
    "hi": ["रिफंड", "क़ीमत", "वापसी"],
    "th": ["คืนเงิน"],
    "zh": ["退款"],
}
STEMMED = {"en", "es", "pt", "ar"}


def _policy() -> Policy:
    rules: list[dict[str, Any]] = []
    for language, terms in TERMS.items():
        rule: dict[str, Any] = {
            "type": "lexicon",
            "id": f"r-{language}",
            "language": language,
            "terms": terms,
            "stem": language in STEMMED,
        }
        if language == "en":
            rule["exclude"] = ["no refund", "not guaranteed"]
        rules.append(rule)
        rules.append({**rule, "id": f"plain-{language}", "stem": False})
    rules.append(
        {
            "type": "lexicon",
            "id": "near",
            "language": "en",
            "terms": ["send"],
            "near": {"terms": ["replacement"], "within": 3},
        }
    )
    return parse_policy(
        {"format": "coexarchive.policy/v1", "name": "p", "version": 1, "rules": rules}
    )


class _Unfiltered(Matcher):
    """The same matcher without the shortcut: every text is normalised and walked."""

    def _may_match(self, pieces: list[str]) -> bool:
        return True


POLICY = _policy()
FILTERED = Matcher(POLICY)
UNFILTERED = _Unfiltered(POLICY)

_words = [w for terms in TERMS.values() for t in terms for w in t.rstrip("*").split()]
_words += ["refunds", "refunded", "Refunding", "unguaranteed", "sending", "replacement", "no"]
_words += ["order", "pedido", "طلبي", "चाहिए", "ok", "送货", "ส่ง", "Straße", "ＲＥＦＵＮＤ"]
_marks = ["", "\u0301", "\u064e", "\u0640", "\u093c", "\u0308"]
_joins = [" ", "  ", "\u00a0", "\u3000", "\n", "-", ", ", "! ", "؟ ", "। ", " 📦 ", "\u200d", ""]


@st.composite
def _word(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(_words) | st.text(min_size=1, max_size=6))
    case = draw(st.sampled_from([str, str.upper, str.capitalize, str.lower]))
    word = case(word)
    if word and draw(st.booleans()):
        cut = draw(st.integers(0, len(word)))
        word = word[:cut] + draw(st.sampled_from(_marks)) + word[cut:]
    return word


@st.composite
def _text(draw: st.DrawFn) -> str:
    words = draw(st.lists(_word(), max_size=12))
    return "".join(w + draw(st.sampled_from(_joins)) for w in words)


@SETTINGS
@given(text=_text(), filename=_text())
def test_the_shortcut_never_changes_a_result(text: str, filename: str) -> None:
    fields = {"text": text, "filename": filename}
    assert normalize_pieces(text, text.split()) == normalize(text)
    assert FILTERED.lexicon_matches(fields) == UNFILTERED.lexicon_matches(fields)
    assert FILTERED.find(fields) == UNFILTERED.find(fields)


@SETTINGS
@given(
    before=_text(),
    after=_text(),
    language=st.sampled_from(sorted(TERMS)),
    data=st.data(),
)
def test_a_term_written_into_a_text_is_found(
    before: str, after: str, language: str, data: st.DataObject
) -> None:
    term = data.draw(st.sampled_from(TERMS[language])).rstrip("*")
    shown = data.draw(st.sampled_from([str, str.upper, str.title]))(term)
    text = f"{before} {shown}. {after}"
    found = {m.rule for m in FILTERED.lexicon_matches({"text": text})}
    excluded = language == "en" and any(x in text.casefold() for x in ("no ", "not "))
    if not excluded:
        assert f"plain-{language}" in found, text
