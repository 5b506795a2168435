"""What of a record is searchable, and whether a query matches it (the index's reference).

A record's searchable text is its ``text`` (message body, media caption, button or list title)
and, for media, the document's file name from ``detail``. They are one stream of terms with a
gap of :data:`FIELD_GAP` positions between them, so neither a phrase nor NEAR spans the two.

:func:`matches` decides a query against one record without the index. Search results are read
back from the archive and checked with it, so an index that is out of date or was altered can
hide records but never show one that does not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from coexarchive.search.analysis import Token, stem, tokens
from coexarchive.search.language import And, Filter, Near, Node, Not, Phrase

__all__ = ["FIELD_GAP", "SEARCH_COLUMNS", "Searchable", "file_name", "matches"]

FIELD_GAP = 1_000
# The record columns the index and the check read.
SEARCH_COLUMNS = (
    "chain_id",
    "seq",
    "record_id",
    "kind",
    "direction",
    "event_time",
    "customer_id",
    "msg_type",
    "text",
    "record_version",
)
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


def file_name(msg_type: str | None, detail: str | None) -> str | None:
    """The media file name ``detail`` records: webhook media, or an outbound capture's request."""
    if msg_type not in MEDIA_TYPES or not detail:
        return None
    try:
        tree = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return None
    candidates: list[Any] = [_path(tree, "media", "filename")]
    candidates.append(_path(tree, "raw", "request", msg_type, "filename"))
    return next((c for c in candidates if isinstance(c, str) and c), None)


def _path(tree: Any, *names: str) -> Any:
    for name in names:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(name)
    return tree


@dataclass(frozen=True)
class Searchable:
    """A record's terms with their positions, and the columns filters look at."""

    terms: tuple[str, ...]
    positions: tuple[int, ...]
    spans: tuple[Token, ...]  # where each term came from; text first, then the file name
    columns: Mapping[str, Any]
    name: str | None = None  # the media file name
    text_terms: int = 0  # how many of the terms come from the text (the rest: the name)

    @classmethod
    def of(cls, row: Mapping[str, Any], name: str | None) -> Searchable:
        text_tokens = list(tokens(row.get("text") or ""))
        name_tokens = list(tokens(name or ""))
        positions = list(range(len(text_tokens)))
        start = len(text_tokens) + FIELD_GAP if text_tokens else 0
        positions += range(start, start + len(name_tokens))
        every = text_tokens + name_tokens
        return cls(
            tuple(token.term for token in every),
            tuple(positions),
            tuple(every),
            row,
            name,
            len(text_tokens),
        )

    @property
    def empty(self) -> bool:
        return not self.terms

    def stems(self) -> tuple[str, ...]:
        return tuple(stem(term) for term in self.terms)


def matches(node: Node, record: Searchable, *, stemmed: bool = False) -> bool:
    """Whether ``node`` matches ``record`` (the meaning the index implements)."""
    words = record.stems() if stemmed else record.terms
    where: dict[str, list[int]] = {}
    for word, position in zip(words, record.positions, strict=True):
        where.setdefault(word, []).append(position)
    return _matches(node, where, record.columns, stemmed)


def _matches(
    node: Node, where: Mapping[str, list[int]], columns: Mapping[str, Any], stemmed: bool
) -> bool:
    if isinstance(node, Phrase):
        return bool(_starts(_words(node, stemmed), where))
    if isinstance(node, Near):
        left, right = _words(node.left, stemmed), _words(node.right, stemmed)
        return _near(left, right, where, node.distance) or _near(right, left, where, node.distance)
    if isinstance(node, Filter):
        return columns.get(node.column) == node.value
    if isinstance(node, Not):
        return not _matches(node.operand, where, columns, stemmed)
    if isinstance(node, And):
        return all(_matches(child, where, columns, stemmed) for child in node.operands)
    return any(_matches(child, where, columns, stemmed) for child in node.operands)


def _words(phrase: Phrase, stemmed: bool) -> tuple[str, ...]:
    return tuple(stem(word) for word in phrase.words) if stemmed else phrase.words


def _starts(words: Sequence[str], where: Mapping[str, list[int]]) -> set[int]:
    """Positions where ``words`` occur in a row."""
    found = set(where.get(words[0], ()))
    for offset, word in enumerate(words[1:], start=1):
        found &= {p - offset for p in where.get(word, ())}
    return found


def _near(
    first: Sequence[str], second: Sequence[str], where: Mapping[str, list[int]], distance: int
) -> bool:
    """``second`` starts 1 to ``distance`` positions after ``first`` ends."""
    seconds = _starts(second, where)
    ends = {start + len(first) - 1 for start in _starts(first, where)}
    return any(end + gap in seconds for end in ends for gap in range(1, distance + 1))
