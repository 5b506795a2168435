"""The search language: words, phrases, AND / OR / NOT, parentheses, NEAR/n and field filters.

::

    query   := any ( "OR" any )*
    any     := unary ( ["AND"] unary )*          two terms side by side both must match
    unary   := ("NOT" | "-") unary | "(" query ")" | near | filter
    near    := operand [ "NEAR/" n operand ]     n words or fewer apart, either order
    operand := WORD | "a phrase"
    filter  := FIELD ":" VALUE                   chain, customer, direction, kind, type

Operators are upper case (``and`` is a word); a word or phrase is folded the way indexed text is
(:mod:`coexarchive.search.analysis`). ``a NEAR/5 b`` matches when ``b`` starts at most five
words after ``a`` ends, or ``a`` at most five after ``b``: words six apart do not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from coexarchive.customers import normalize_customer
from coexarchive.errors import InvalidArgumentError, SearchSyntaxError
from coexarchive.search.analysis import terms

__all__ = [
    "FIELDS",
    "MAX_NEAR",
    "And",
    "Filter",
    "Near",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "SearchSyntaxError",
    "parse",
]

# Filter name in the language → the record column it matches exactly.
FIELDS = {
    "chain": "chain_id",
    "customer": "customer_id",
    "direction": "direction",
    "kind": "kind",
    "type": "msg_type",
}
MAX_NEAR = 50
_MAX_QUERY = 2_000
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Phrase:
    """One word (a phrase of one term) or several in a row."""

    words: tuple[str, ...]
    text: str  # as written, for messages


@dataclass(frozen=True)
class Near:
    left: Phrase
    right: Phrase
    distance: int


@dataclass(frozen=True)
class Filter:
    column: str
    value: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


_T = TypeVar("_T")

Node = Phrase | Near | Filter | Not | And | Or

_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<phrase>[^"]*)"|(?P<badquote>")'
    r"|(?P<word>[^\s()\"]+))"
)
_NEAR = re.compile(r"NEAR/(\d+)")
_FILTER = re.compile(r"([a-z]+):(.+)")


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # open, close, phrase, word
    text: str
    at: int


def _lex(query: str) -> list[_Lexeme]:
    out: list[_Lexeme] = []
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            break  # only trailing blanks are left
        if match["badquote"] is not None:
            raise SearchSyntaxError(
                f"unclosed quote at character {match.start('badquote') + 1} of the query: "
                'close the phrase with "'
            )
        kind = next(k for k in ("open", "close", "phrase", "word") if match[k] is not None)
        out.append(_Lexeme(kind, match[kind], match.start(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, query: str) -> None:
        self.lexemes = _lex(query)
        self.index = 0
        self.depth = 0

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def take(self) -> _Lexeme:
        lexeme = self.lexemes[self.index]
        self.index += 1
        return lexeme

    def is_operator(self, *names: str) -> bool:
        lexeme = self.peek()
        return lexeme is not None and lexeme.kind == "word" and lexeme.text in names

    def query(self) -> Node:
        operands = [self.all_of()]
        while self.is_operator("OR"):
            self.take()
            operands.append(self.all_of())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def all_of(self) -> Node:
        operands = [self.unary()]
        while True:
            lexeme = self.peek()
            if lexeme is None or lexeme.kind == "close" or self.is_operator("OR"):
                break
            if self.is_operator("AND"):
                self.take()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        lexeme = self.peek()
        if lexeme is None:
            raise SearchSyntaxError("the query ends where a word, phrase or '(' was expected")
        if lexeme.kind == "word" and lexeme.text in ("NOT", "-"):
            self.take()
            return Not(self._nested(self.unary))
        if lexeme.kind == "word" and lexeme.text.startswith("-") and len(lexeme.text) > 1:
            self.take()
            rest = _Lexeme("word", lexeme.text[1:], lexeme.at + 1)
            return Not(self._operand_or_filter(rest))
        if lexeme.kind == "open":
            self.take()
            inner = self._nested(self.query)
            closing = self.peek()
            if closing is None or closing.kind != "close":
                raise SearchSyntaxError(
                    f"'(' at character {lexeme.at + 1} is never closed: add ')'"
                )
            self.take()
            return inner
        if lexeme.kind == "close":
            raise SearchSyntaxError(f"')' at character {lexeme.at + 1} closes nothing")
        if _is_operator(lexeme):
            raise SearchSyntaxError(
                f"{lexeme.text} at character {lexeme.at + 1} needs a word or phrase before it"
            )
        node = self._operand_or_filter(self.take())
        following = self.peek()
        if isinstance(node, Phrase) and following is not None and following.kind == "word":
            near = _NEAR.fullmatch(following.text)
            if near is not None:
                return self._near(node, int(near.group(1)), self.take())
        return node

    def _near(self, left: Phrase, distance: int, operator: _Lexeme) -> Near:
        if not 1 <= distance <= MAX_NEAR:
            raise SearchSyntaxError(
                f"{operator.text} at character {operator.at + 1}: the distance must be 1 to "
                f"{MAX_NEAR} words"
            )
        lexeme = self.peek()
        if lexeme is None or lexeme.kind not in ("word", "phrase") or _is_operator(lexeme):
            raise SearchSyntaxError(
                f"{operator.text} at character {operator.at + 1} needs a word or phrase after it"
            )
        right = self._operand_or_filter(self.take())
        if not isinstance(right, Phrase):
            raise SearchSyntaxError(f"{operator.text} joins words or phrases, not filters")
        following = self.peek()
        if following is not None and following.kind == "word" and _NEAR.fullmatch(following.text):
            raise SearchSyntaxError(
                f"{following.text} at character {following.at + 1}: NEAR joins two words or "
                "phrases; join more with AND, e.g. (a NEAR/5 b) AND (b NEAR/5 c)"
            )
        return Near(left, right, distance)

    def _operand_or_filter(self, lexeme: _Lexeme) -> Node:
        if lexeme.kind == "word":
            found = _FILTER.fullmatch(lexeme.text)
            if found is not None and found.group(1) in FIELDS:
                value = found.group(2)
                if found.group(1) == "customer":
                    value = _customer(value)
                return Filter(FIELDS[found.group(1)], value)
        words = tuple(terms(lexeme.text))
        if not words:
            raise SearchSyntaxError(
                f"{lexeme.text!r} at character {lexeme.at + 1} has no letters or digits to "
                "search for"
            )
        return Phrase(words, lexeme.text)

    def _nested(self, parse: Callable[[], _T]) -> _T:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise SearchSyntaxError(f"the query nests deeper than {_MAX_DEPTH} levels")
        try:
            return parse()
        finally:
            self.depth -= 1


def _is_operator(lexeme: _Lexeme) -> bool:
    return lexeme.kind == "word" and (
        lexeme.text in ("AND", "OR", "NOT") or _NEAR.fullmatch(lexeme.text) is not None
    )


def parse(query: str) -> Node:
    """The query as a tree; :class:`SearchSyntaxError` says where it goes wrong."""
    if len(query) > _MAX_QUERY:
        raise SearchSyntaxError(f"the query is longer than {_MAX_QUERY} characters")
    parser = _Parser(query)
    if not parser.lexemes:
        raise SearchSyntaxError("the query is empty: give a word, a phrase or a filter")
    tree = parser.query()
    leftover = parser.peek()
    if leftover is not None:
        raise SearchSyntaxError(f"')' at character {leftover.at + 1} closes nothing")
    return tree


def _customer(value: str) -> str:
    """``customer:+447700900123`` finds what ``customer:447700900123`` finds (one spelling)."""
    try:
        return normalize_customer(value)
    except InvalidArgumentError as exc:
        raise SearchSyntaxError(str(exc)) from None
