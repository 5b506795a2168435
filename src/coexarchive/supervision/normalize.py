"""Text as the lexicon sees it: one normal form for policy terms and message text alike.

``normalize(text)`` gives the words of ``text`` joined by single spaces, with a space before the
first and after the last, so a term ``" word "`` matches only whole words:

1. compatibility decomposition (NFKD), case folding, NFKD again (``ﬁ`` → ``fi``, ``Ｒ`` → ``r``);
2. combining marks removed (``é`` → ``e``, Arabic harakat and hamza marks: ``أ`` → ``ا``), except in
   Indic scripts, where vowel signs and viramas are part of the word (only the nukta goes);
3. Arabic tatweel removed, ``ى`` → ``ي``, Persian ``ک``/``ی`` → ``ك``/``ي``,
   Arabic-Indic and Devanagari digits → ASCII digits;
4. every character that is not a letter, digit or kept mark becomes a space (punctuation, emoji,
   symbols, controls); scripts written without spaces between words (Han, kana, Hangul syllables
   excepted, Thai, Lao, Khmer, Myanmar) become one "word" per character, so a term in them
   matches as a run of characters;
5. runs of spaces collapse to one.

The same function normalises terms and texts, so whatever it does, a term and the text it was
taken from agree. Snowball stemming (:class:`Stemmers`) works on the words of that form.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final

import snowballstemmer

__all__ = ["STEM_LANGUAGES", "Stemmers", "normalize", "normalize_pieces", "words"]

# ISO 639-1 code → Snowball algorithm.
STEM_LANGUAGES: Final[dict[str, str]] = {
    "ar": "arabic",
    "ca": "catalan",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "eu": "basque",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}

_NUKTA: Final = "\u093c"
_TATWEEL: Final = "\u0640"
_SPECIAL: Final[dict[str, str]] = {
    "\u0649": "\u064a",  # ى alef maqsura → ي
    "\u06a9": "\u0643",  # ک Persian kaf → ك
    "\u06cc": "\u064a",  # ی Persian yeh → ي
    _TATWEEL: "",
    _NUKTA: "",
}
for _base, _first in ((0x0660, "0"), (0x06F0, "0"), (0x0966, "0")):
    for _i in range(10):
        _SPECIAL[chr(_base + _i)] = chr(ord(_first) + _i)


def _indic(char: str) -> bool:
    # Devanagari through Sinhala: marks there are vowel signs and viramas, not accents.
    return 0x0900 <= ord(char) <= 0x0DFF


def _unspaced(char: str) -> bool:
    code = ord(char)
    return (
        0x0E00 <= code <= 0x0EFF  # Thai, Lao
        or 0x1000 <= code <= 0x109F  # Myanmar
        or 0x1780 <= code <= 0x17FF  # Khmer
        or 0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0x20000 <= code <= 0x3FFFF  # CJK extensions B and later
    )


class _Table(dict[int, str]):
    """``str.translate`` table computed per code point on first use, then cached."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        special = _SPECIAL.get(char)
        if special is not None:
            value = special
        else:
            category = unicodedata.category(char)
            if category[0] in "LN":
                value = f" {char} " if _unspaced(char) else char
            elif category[0] == "M":
                value = char if _indic(char) or _unspaced(char) else ""
            else:
                value = " "
        self[code] = value
        return value


_TABLE = _Table()
# ASCII: letters and digits stay, everything else is a space (bytes.translate runs in C).
_ASCII = bytes(c if chr(c).isalnum() else 0x20 for c in range(128)) + b" " * 128


def _normal_token(token: str) -> str:
    """One whitespace-free piece of text in the normal form, without the outer spaces."""
    if token.isascii():
        folded = token.lower().encode("ascii").translate(_ASCII).decode("ascii")
    else:
        decomposed = unicodedata.normalize("NFKD", token)
        folded = decomposed.casefold()
        if folded != decomposed:
            folded = unicodedata.normalize("NFKD", folded)
        folded = folded.translate(_TABLE)
    return " ".join(folded.split())


# Words repeat (Zipf): most pieces of a text were normalised before. Bounded; cleared when full.
_TOKENS: dict[str, str] = {}
_MAX_TOKENS: Final = 500_000


def normalize(text: str) -> str:
    """``text`` in the lexicon's normal form: ``" word word "`` (module docstring).

    Every step works character by character and whitespace always separates words, so the text
    is normalised piece by piece (between whitespace), each piece once and then from a cache.
    """
    if text.isascii():  # one pass in C; the same result as piece by piece
        return " " + " ".join(text.lower().encode().translate(_ASCII).decode().split()) + " "
    tokens = text.split()
    try:
        pieces = list(map(_TOKENS.__getitem__, tokens))
    except KeyError:
        if len(_TOKENS) + len(tokens) > _MAX_TOKENS:
            _TOKENS.clear()
        pieces = []
        for token in tokens:
            normal = _TOKENS.get(token)
            if normal is None:
                normal = _TOKENS[token] = _normal_token(token)
            pieces.append(normal)
    if "" in pieces:  # a piece that was only punctuation or emoji
        pieces = [piece for piece in pieces if piece]
    return " " + " ".join(pieces) + " "


def normalize_pieces(text: str, pieces: list[str]) -> str:
    """``normalize(text)``, given ``pieces`` = ``text.split()`` (for callers that have it)."""
    if text.isascii():
        return " " + " ".join(text.lower().encode().translate(_ASCII).decode().split()) + " "
    try:
        normal = list(map(_TOKENS.__getitem__, pieces))
    except KeyError:
        return normalize(text)
    if "" in normal:
        normal = [piece for piece in normal if piece]
    return " " + " ".join(normal) + " "


def words(normalized: str) -> list[str]:
    return normalized.split()


class Stemmers:
    """Snowball stemmers by language, each with a cache of the words it has stemmed."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self._stemmers: dict[str, snowballstemmer.Stemmer] = {}
        self._caches: dict[str, dict[str, str]] = {}
        self.max_cached = max_cached

    @staticmethod
    def supported(language: str) -> bool:
        return language in STEM_LANGUAGES

    def stem_words(self, language: str, tokens: Sequence[str]) -> list[str]:
        cache = self._caches.get(language)
        if cache is None:
            self._stemmers[language] = snowballstemmer.stemmer(STEM_LANGUAGES[language])
            cache = self._caches[language] = {}
        try:
            return list(map(cache.__getitem__, tokens))
        except KeyError:
            pass
        if len(cache) + len(tokens) > self.max_cached:
            cache.clear()
        stemmer = self._stemmers[language]
        out = []
        for token in tokens:
            stem = cache.get(token)
            if stem is None:
                stem = cache[token] = stemmer.stemWord(token) or token
            out.append(stem)
        return out

    def stem(self, language: str, normalized: str) -> str:
        """``normalized`` with each word replaced by its stem, in the same spaced form."""
        return " " + " ".join(self.stem_words(language, normalized.split())) + " "
