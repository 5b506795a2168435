"""How text becomes search terms: the same steps for what is indexed and for what is asked.

1. Words are runs of letters, marks and digits in any script (``\\w`` alone would cut Devanagari
   words at their vowel signs, which are marks).
2. Each word is put in NFKC form and case-folded: full-width ``Ｅｕｒｏ`` is ``euro``, ``ﬁ`` is
   ``fi``, ``Straße`` is ``strasse``.
3. Diacritics are folded: the combining accents of Latin, Greek and Cyrillic (``pedido`` matches
   ``pédido``) and Arabic short vowels and tatweel (``مَرحبا`` matches ``مرحبا``). The vowel signs of
   Indic scripts are letters of the word, not accents, and are kept.
4. Han, kana and Hangul have no spaces between words: each of their characters is a term of its
   own, so a word in them is found as a phrase of its characters (``注文`` as ``"注 文"``).

Stemming (optional, English Snowball) maps each folded term to its stem in a second field.
:data:`ANALYZER_VERSION` changes whenever any of this does: an index built by another version is
refused until it is rebuilt.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

import snowballstemmer

__all__ = ["ANALYZER_VERSION", "Token", "stem", "terms", "tokens"]

ANALYZER_VERSION = 1


def _mark_ranges() -> str:
    """A regex class body of every combining mark (categories Mn, Mc, Me)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


# A word: letters and digits (``[^\W_]``) and the marks that belong to them.
_WORD = re.compile(f"(?:[^\\W_]|[{_mark_ranges()}])+")
# Accents folded away after NFD: Latin/Greek/Cyrillic combining diacritics, Arabic harakat,
# superscript alef and tatweel.
_FOLDED = re.compile(
    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640]"
)
# Scripts written without spaces between words: one term per character.
_UNSPACED = re.compile(
    "([\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f])"
)
_PIECES = re.compile(f"{_UNSPACED.pattern}|(?:(?!{_UNSPACED.pattern}).)+", re.DOTALL)
_MAX_TERM = 64  # longer "words" (base64, hashes) are cut: terms stay small


class Token(NamedTuple):
    """A term and where it came from: characters ``start:end`` of the original text."""

    term: str
    start: int
    end: int


@lru_cache(maxsize=65_536)
def fold(word: str) -> tuple[str, ...]:
    """The terms of one word (usually one; NFKC or an unspaced script can make several)."""
    text = unicodedata.normalize("NFKC", word).casefold()
    text = unicodedata.normalize("NFC", _FOLDED.sub("", unicodedata.normalize("NFD", text)))
    out: list[str] = []
    for piece in _WORD.findall(_UNSPACED.sub(r" \1 ", text)):
        out.append(piece[:_MAX_TERM])
    return tuple(out)


def tokens(text: str) -> Iterator[Token]:
    """The terms of ``text`` in order, each with the span of the original word it came from."""
    for match in _WORD.finditer(text):
        word, offset = match.group(), match.start()
        if word.isascii():  # the common case, and one term: no NFKC, accents or unspaced script
            yield Token(word.lower()[:_MAX_TERM], offset, match.end())
            continue
        # A character of an unspaced script is a word of its own, with its own span.
        for piece in _PIECES.finditer(word):
            for term in fold(piece.group()):
                yield Token(term, offset + piece.start(), offset + piece.end())


def terms(text: str) -> list[str]:
    """The terms of ``text`` in order (what a query word or phrase is searched as)."""
    return [token.term for token in tokens(text)]


_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65_536)
def stem(term: str) -> str:
    """The English Snowball stem of a folded term (terms of other scripts pass unchanged)."""
    result: str = _STEMMER.stemWord(term)
    return result
