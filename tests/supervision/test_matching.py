"""The lexicon's normal form and matcher: Unicode, word boundaries, exclusions, proximity,
stemming and deterministic sampling."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from coexarchive.supervision.matcher import Matcher, sample_point
from coexarchive.supervision.normalize import normalize
from coexarchive.supervision.policy import Policy, parse_policy


def policy(*rules: dict[str, Any], name: str = "p", version: int = 1) -> Policy:
    return parse_policy(
        {"format": "coexarchive.policy/v1", "name": name, "version": version, "rules": list(rules)}
    )


def lexicon(rule_id: str = "r", language: str = "en", **fields: Any) -> dict[str, Any]:
    return {"type": "lexicon", "id": rule_id, "language": language, **fields}


def rules_hit(matcher: Matcher, text: str, **fields: str) -> list[str]:
    found = matcher.match(record_id="rec", chain_id="c", fields={"text": text, **fields})
    return [m.rule for m in found]


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("GUARANTEED—Return!!", " guaranteed return "),
        ("Café crème", " cafe creme "),
        ("ＲＥＦＵＮＤ ﬁne", " refund fine "),  # full-width letters and a ligature (NFKC)
        ("Straße", " strasse "),  # case folding, not lower()
        ("أُريدُ إلغـــاء", " اريد الغاء "),  # harakat, tatweel and hamza marks removed
        ("مرحبا، هل طلبي جاهز؟", " مرحبا هل طلبي جاهز "),  # Arabic comma and question mark
        ("मुझे रिफंड चाहिए।", " मुझे रिफंड चाहिए "),  # Devanagari vowel signs kept, danda dropped
        ("क़ीमत", " कीमत "),  # nukta dropped
        ("٣٠ يوم / ३० दिन", " 30 يوم 30 दिन "),  # Arabic-Indic and Devanagari digits
        ("陈伟 ok", " 陈 伟 ok "),  # scripts without spaces: a word per character
        ("a\u202eb\u0000c", " a b c "),  # bidi override and controls are separators
    ],
)
def test_normal_form(text: str, normal: str) -> None:
    assert normalize(text) == normal


def test_terms_match_whole_words_only() -> None:
    matcher = Matcher(policy(lexicon(terms=["guaranteed", "refund*"])))
    assert rules_hit(matcher, "It is Guaranteed.") == ["r"]
    assert rules_hit(matcher, "It is unguaranteed") == []
    assert rules_hit(matcher, "guaranteedly") == []
    assert rules_hit(matcher, "Refunds issued") == ["r"]  # a prefix pattern
    assert rules_hit(matcher, "prerefund") == []


def test_phrases_match_across_punctuation_and_case() -> None:
    matcher = Matcher(policy(lexicon(terms=["risk free"])))
    assert rules_hit(matcher, "This is RISK-FREE!") == ["r"]
    assert rules_hit(matcher, "risk, free") == ["r"]  # punctuation is not a word
    assert rules_hit(matcher, "risk and free") == []
    assert rules_hit(matcher, "riskfree") == []


def test_exclusion_suppresses_only_the_terms_it_covers() -> None:
    matcher = Matcher(policy(lexicon(terms=["guaranteed"], exclude=["not guaranteed"])))
    assert rules_hit(matcher, "returns are not guaranteed") == []
    assert rules_hit(matcher, "not guaranteed today, but guaranteed tomorrow") == ["r"]
    found = matcher.match(
        record_id="x", chain_id="c", fields={"text": "not guaranteed; guaranteed"}
    )
    assert [(s.start, s.end) for s in found[0].spans] == [(2, 3)]


def test_proximity_counts_words_between() -> None:
    rule = lexicon(terms=["guaranteed"], near={"terms": ["return*"], "within": 5})
    matcher = Matcher(policy(rule))
    assert rules_hit(matcher, "guaranteed 10 % annual return") == ["r"]
    assert rules_hit(matcher, "a return that is guaranteed") == ["r"]  # either side
    assert rules_hit(matcher, "guaranteed a b c d e f return") == []  # six words away
    assert rules_hit(matcher, "guaranteed delivery") == []
    # Proximity never crosses fields.
    assert rules_hit(matcher, "guaranteed", filename="return.pdf") == []


def test_stemming_per_language() -> None:
    english = Matcher(policy(lexicon(terms=["return"], stem=True)))
    assert rules_hit(english, "Returns accepted") == ["r"]
    assert rules_hit(english, "returning soon") == ["r"]
    plain = Matcher(policy(lexicon(terms=["return"])))
    assert rules_hit(plain, "Returns accepted") == []
    arabic = Matcher(policy(lexicon(language="ar", terms=["فاتورة"], stem=True)))
    assert rules_hit(arabic, "الفاتورة") == ["r"]  # the definite article and ta marbuta
    portuguese = Matcher(policy(lexicon(language="pt", terms=["trocar"], stem=True)))
    assert rules_hit(portuguese, "Quero TROCAS") == ["r"]


def test_diacritics_and_scripts_match_in_both_directions() -> None:
    matcher = Matcher(
        policy(
            lexicon("es", "es", terms=["devolución"]),
            lexicon("ar", "ar", terms=["إلغاء"]),
            lexicon("hi", "hi", terms=["रिफंड"]),
            lexicon("zh", "zh", terms=["退款"]),
        )
    )
    assert rules_hit(matcher, "DEVOLUCION por favor") == ["es"]
    assert rules_hit(matcher, "تم إلغــاءُ طلبك") == ["ar"]
    assert rules_hit(matcher, "मुझे रिफंड चाहिए") == ["hi"]
    assert rules_hit(matcher, "我要退款了") == ["zh"]  # no spaces in Chinese
    assert rules_hit(matcher, "我要退了款") == []


def test_document_names_are_matched_with_their_field() -> None:
    matcher = Matcher(policy(lexicon(language="pt", terms=["fatura"])))
    found = matcher.match(record_id="x", chain_id="c", fields={"filename": "fatura-março.pdf"})
    assert [(s.field, s.words) for s in found[0].spans] == [("filename", "fatura")]


def test_flag_rules_match_current_flags() -> None:
    matcher = Matcher(policy({"type": "flag", "id": "f", "flags": ["marketing_without_consent"]}))
    hit = matcher.match(
        record_id="x", chain_id="c", fields={}, flags=["marketing_without_consent", "capture_gap"]
    )
    assert [(m.rule, m.flags) for m in hit] == [("f", ("marketing_without_consent",))]
    assert matcher.match(record_id="x", chain_id="c", fields={}, flags=["capture_gap"]) == []


def test_sampling_is_deterministic_per_version_and_record() -> None:
    rule = {"type": "sample", "id": "s", "rate": "0.1", "chains": {"quiet": "0"}}
    first, again = Matcher(policy(rule)), Matcher(policy(rule))
    ids = [f"record-{i}" for i in range(5000)]

    def sampled(matcher: Matcher, chain: str = "c") -> set[str]:
        return {i for i in ids if matcher.match(record_id=i, chain_id=chain, fields={})}

    chosen = sampled(first)
    assert chosen == sampled(again)  # a rescan samples the same messages
    assert 400 <= len(chosen) <= 600  # about 10 %
    assert sampled(first, "quiet") == set()  # a per-chain rate
    other = sampled(Matcher(policy(rule, version=2)))
    assert 400 <= len(other) <= 600 and other != chosen  # a new version draws anew
    assert sample_point(first.policy, "x") == sample_point(again.policy, "x") < Decimal(1)


def test_many_terms_share_one_automaton_per_stemming_language() -> None:
    terms = [f"term{i}" for i in range(2000)]
    matcher = Matcher(
        policy(
            lexicon("a", terms=terms),
            lexicon("b", "es", terms=["hola"]),
            lexicon("c", "pt", terms=["trocar"], stem=True),
        )
    )
    assert [language for language, _ in matcher.automata] == [None, "pt"]
    assert rules_hit(matcher, "term1999 hola") == ["a", "b"]
