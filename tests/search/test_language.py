"""The query language and the analyzer, without an index."""

from __future__ import annotations

import pytest

from coexarchive.errors import CoexArchiveError
from coexarchive.search.analysis import terms, tokens
from coexarchive.search.document import Searchable, matches
from coexarchive.search.language import (
    MAX_NEAR,
    And,
    Filter,
    Near,
    Not,
    Or,
    Phrase,
    SearchSyntaxError,
    parse,
)


def word(text: str) -> Phrase:
    return Phrase((text,), text)


def test_precedence_or_is_looser_than_and() -> None:
    assert parse("a OR b c") == Or((word("a"), And((word("b"), word("c")))))
    assert parse("(a OR b) c") == And((Or((word("a"), word("b"))), word("c")))


def test_not_forms() -> None:
    assert parse("a NOT b") == And((word("a"), Not(word("b"))))
    assert parse("a -b") == parse("a NOT b")
    assert parse("NOT (a OR b)") == Not(Or((word("a"), word("b"))))
    assert parse("-chain:9") == Not(Filter("chain_id", "9"))


def test_near_and_phrases() -> None:
    assert parse("a NEAR/5 b") == Near(word("a"), word("b"), 5)
    assert parse('"a b" NEAR/2 c') == Near(Phrase(("a", "b"), "a b"), word("c"), 2)


def test_lower_case_operators_are_words() -> None:
    assert parse("cats and dogs") == And((word("cats"), word("and"), word("dogs")))
    assert parse("near/5") == Phrase(("near", "5"), "near/5")


def test_filters_and_words_with_colons() -> None:
    assert parse("customer:447700900001") == Filter("customer_id", "447700900001")
    assert parse("customer:+447700900001") == Filter("customer_id", "447700900001")
    assert parse("customer:US.13491208") == Filter("customer_id", "US.13491208")
    assert parse("type:document") == Filter("msg_type", "document")
    # Not a filter name: the words of it.
    assert parse("re:order") == Phrase(("re", "order"), "re:order")


def test_a_word_with_punctuation_is_a_phrase_of_its_words() -> None:
    assert parse("Invoice-2026.pdf") == Phrase(("invoice", "2026", "pdf"), "Invoice-2026.pdf")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('"open phrase', "unclosed quote at character 1"),
        ("(a OR b", "'(' at character 1 is never closed"),
        ("a)", "')' at character 2 closes nothing"),
        ("AND a", "AND at character 1 needs a word or phrase before it"),
        ("a OR", "the query ends"),
        ("a NOT", "the query ends"),
        ("NEAR/3 a", "needs a word or phrase before it"),
        ("a NEAR/0 b", "distance must be 1 to"),
        (f"a NEAR/{MAX_NEAR + 1} b", "distance must be 1 to"),
        ("a NEAR/3", "needs a word or phrase after it"),
        ("a NEAR/3 OR", "needs a word or phrase after it"),
        ("a NEAR/3 chain:1", "joins words or phrases, not filters"),
        ("a NEAR/3 b NEAR/3 c", "NEAR joins two words or phrases"),
        ("!!!", "no letters or digits"),
        ('""', "no letters or digits"),
        ("(" * 40 + "a" + ")" * 40, "nests deeper"),
        ("a " * 1_500, "longer than"),
        ("customer:bob", "neither a phone number"),
    ],
)
def test_malformed_queries_say_where(query: str, message: str) -> None:
    with pytest.raises(SearchSyntaxError, match=None) as caught:
        parse(query)
    assert message in str(caught.value)
    assert isinstance(caught.value, CoexArchiveError)


def test_folding() -> None:
    assert terms("¿Dónde ESTÁ?") == ["donde", "esta"]
    assert terms("Ｅｕｒｏ ﬁne Straße") == ["euro", "fine", "strasse"]
    assert terms("مَرْحَبًا ـــ") == ["مرحبا"]
    assert terms("नमस्ते, धन्यवाद") == ["नमस्ते", "धन्यवाद"]
    assert terms("注文です") == ["注", "文", "で", "す"]
    assert terms("x" * 100) == ["x" * 64]


def test_tokens_point_at_the_original_text() -> None:
    text = "Café ＥＵＲＯ 注文"
    assert [(t.term, text[t.start : t.end]) for t in tokens(text)] == [
        ("cafe", "Café"),
        ("euro", "ＥＵＲＯ"),
        ("注", "注"),
        ("文", "文"),
    ]


def record(text: str, name: str | None = None) -> Searchable:
    return Searchable.of({"text": text, "chain_id": "1", "direction": "inbound"}, name)


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("a NEAR/5 b", "a 1 2 3 4 b", True),
        ("a NEAR/5 b", "a 1 2 3 4 5 b", False),
        ("a NEAR/5 b", "b 1 2 3 4 a", True),
        ("a NEAR/1 b", "a b", True),
        ("a NEAR/1 a", "a", False),  # one word is not near itself
        ("a NEAR/1 a", "a a", True),
        ('"a b" NEAR/1 c', "a b c", True),
        ('"a b" NEAR/1 c', "c a b", True),
        ('"a b" NEAR/1 c', "a c b", False),
        ('"a b" NEAR/2 "c d"', "c d x a b", True),
        ('"a b" NEAR/1 "c d"', "c d x a b", False),
    ],
)
def test_near_meaning(query: str, text: str, expected: bool) -> None:
    assert matches(parse(query), record(text)) is expected


def test_the_file_name_is_apart_from_the_text() -> None:
    found = record("see attached", "report.pdf")
    assert matches(parse("attached report"), found)
    assert not matches(parse('"attached report"'), found)
    assert not matches(parse("attached NEAR/50 report"), found)


def test_filters_match_exactly() -> None:
    assert matches(parse("direction:inbound"), record("x"))
    assert not matches(parse("direction:Inbound"), record("x"))
