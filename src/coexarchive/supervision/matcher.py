"""A policy compiled into Aho-Corasick automata: one pass over a text finds every term of it.

Every term, exclusion and proximity term of every lexicon rule is normalised
(:func:`~coexarchive.supervision.normalize.normalize`) into a key ``" w1 w2 "`` (a prefix pattern
``refund*`` into ``" refund"``) and added to one automaton; rules with ``stem: true`` go into one
automaton per stemming language, matched against the stemmed text. A text is normalised once,
stemmed once per such language, and walked once per automaton: the cost does not grow with the
number of terms.

Most texts hold no word that a term starts with. The matcher remembers which raw
whitespace-free pieces of text yield no such word (``Matcher._may_match``) and rejects a text made
only of them by one set lookup per piece, unnormalised; the shortcut is exact, never a guess.

Spans are word positions in the normalised text (``[start, end)``, counted from 0), per field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, NamedTuple

import ahocorasick

from coexarchive.supervision.normalize import Stemmers, normalize, normalize_pieces
from coexarchive.supervision.policy import FlagRule, LexiconRule, Policy, SampleRule

__all__ = ["Match", "Matcher", "Span", "sample_point"]

_TERM: Final = 0
_EXCLUDE: Final = 1
_NEAR: Final = 2
_TWO_64: Final = Decimal(2**64)
_MAX_STEMS: Final = 200_000
_MAX_PIECES: Final = 500_000


class Span(NamedTuple):
    """Where a term matched: the field, word positions ``[start, end)``, the term and the words."""

    field: str
    start: int
    end: int
    term: str
    words: str

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "start": self.start,
            "end": self.end,
            "term": self.term,
            "words": self.words,
        }


@dataclass(frozen=True)
class Match:
    """One rule that a message meets."""

    rule: str
    rule_type: str  # lexicon, flag or sample
    spans: tuple[Span, ...] = ()
    flags: tuple[str, ...] = ()


class _Found(NamedTuple):
    terms: list[tuple[str, int, int, str, str]]
    excluded: list[tuple[str, int, int]]
    near: list[tuple[str, int]]


def sample_point(policy: Policy, record_id: str) -> Decimal:
    """A number in [0, 1) fixed by the policy version and the record: sampled when below the rate.

    Deterministic, so a rescan samples the same messages; independent between versions.
    """
    text = f"{policy.name}\x1f{policy.version}\x1f{record_id}".encode()
    return Decimal(int.from_bytes(hashlib.sha256(text).digest()[:8], "big")) / _TWO_64


def _key(term: str, language: str | None, stemmers: Stemmers) -> tuple[str, int]:
    prefix = term.endswith("*")
    spaced = normalize(term[:-1] if prefix else term)
    if language is not None:
        spaced = stemmers.stem(language, spaced)
    return (spaced.rstrip() if prefix else spaced), spaced.count(" ") - 1


class Matcher:
    """Finds the rules of ``policy`` a message meets."""

    def __init__(self, policy: Policy, *, stemmers: Stemmers | None = None) -> None:
        self.policy = policy
        self.stemmers = stemmers or Stemmers()
        self.lexicon: list[LexiconRule] = [r for r in policy.rules if isinstance(r, LexiconRule)]
        self.flag_rules: list[FlagRule] = [r for r in policy.rules if isinstance(r, FlagRule)]
        self.sample_rules: list[SampleRule] = [r for r in policy.rules if isinstance(r, SampleRule)]
        # Automaton per stemming language (None: unstemmed): key → (key, words, entries).
        entries: dict[str | None, dict[str, list[tuple[int, int, str]]]] = {}
        # Per automaton: the words a term's key starts with, and the single-word prefix keys.
        starts: dict[str | None, tuple[set[str], set[str]]] = {}
        for index, rule in enumerate(self.lexicon):
            language = rule.language if rule.stem else None
            table = entries.setdefault(language, {})
            groups: list[tuple[int, Iterable[str]]] = [
                (_TERM, rule.terms),
                (_EXCLUDE, rule.exclude),
            ]
            if rule.near is not None:
                groups.append((_NEAR, rule.near.terms))
            for role, terms in groups:
                for term in terms:
                    key, _ = _key(term, language, self.stemmers)
                    table.setdefault(key, []).append((index, role, term))
                    if role == _TERM:
                        whole, prefixes = starts.setdefault(language, (set(), set()))
                        first, _space, rest = key.strip().partition(" ")
                        if key.endswith(" ") or rest:  # " w1 ... " or " w1 pre": w1 whole
                            whole.add(first)
                        else:  # " pre": a word that starts with it
                            prefixes.add(first)
        self.automata: list[tuple[str | None, Any]] = []
        for language, table in sorted(entries.items(), key=lambda item: item[0] or ""):
            automaton = ahocorasick.Automaton()
            for key, found in table.items():
                words = key.strip().count(" ") + 1
                automaton.add_word(key, (key, words, tuple(found)))
            automaton.make_automaton()
            self.automata.append((language, automaton))
        self._stem_languages = [language for language, _ in self.automata if language]
        self._starts = {
            language: (frozenset(whole), tuple(sorted(prefixes)))
            for language, (whole, prefixes) in starts.items()
        }
        # Raw whitespace-free pieces of text known to start no term (quiet) or to maybe start
        # one (loud); bounded, cleared when full. See _may_match.
        self._quiet: set[str] = set()
        self._loud: set[str] = set()
        # word → its stem in each of _stem_languages (bounded; cleared when full).
        self._stem_cache: dict[str, tuple[str, ...]] = {}

    # -- lexicon --------------------------------------------------------------------------------

    def _stemmed(self, base: str) -> dict[str, str]:
        """``base`` stemmed for each stemming language, from one cache lookup per word."""
        words = base.split()
        if not words:
            return dict.fromkeys(self._stem_languages, base)
        cache = self._stem_cache
        try:
            rows = list(map(cache.__getitem__, words))
        except KeyError:
            if len(cache) + len(words) > _MAX_STEMS:
                cache.clear()
            rows = []
            for word in words:
                row = cache.get(word)
                if row is None:
                    row = cache[word] = tuple(
                        self.stemmers.stem_words(language, [word])[0]
                        for language in self._stem_languages
                    )
                rows.append(row)
        return {
            language: " " + " ".join(column) + " "
            for language, column in zip(self._stem_languages, zip(*rows, strict=True), strict=True)
        }

    def _loud_piece(self, piece: str) -> bool:
        """Whether a word of ``piece`` (normalised, stemmed per automaton) can start a term."""
        for word in normalize(piece).split():
            for language, (whole, prefixes) in self._starts.items():
                stem = word if language is None else self.stemmers.stem_words(language, [word])[0]
                if stem in whole or stem.startswith(prefixes):
                    return True
        return False

    def _may_match(self, pieces: list[str]) -> bool:
        """False only when no term can match the text of ``pieces`` (its whitespace-free pieces,
        ``text.split()``): an exact shortcut, not a heuristic.

        A term's key ``" w1 ... "`` matches only where ``w1`` is a whole word of the normal form
        (a single-word prefix key: where a word starts with it), and every word of the normal
        form comes from one whitespace-free piece of the raw text, normalised on its own
        (``normalize`` works piece by piece). So a text whose pieces are all known to yield no
        such word cannot match; most messages are rejected by one set lookup per piece, and
        neither normalised, stemmed nor walked.
        """
        quiet = self._quiet
        if quiet.issuperset(pieces):
            return False
        loud = self._loud
        if len(quiet) + len(loud) + len(pieces) > _MAX_PIECES:
            quiet.clear()
            loud.clear()
        for piece in pieces:
            if piece in quiet:
                continue
            if piece in loud:
                return True
            if self._loud_piece(piece):
                loud.add(piece)
                return True
            quiet.add(piece)
        return False

    def find(self, fields: Mapping[str, str]) -> dict[int, _Found]:
        """Every term, exclusion and proximity match in ``fields``, by lexicon rule index."""
        return self._find({name: (text, text.split()) for name, text in fields.items()})

    def _find(self, fields: Mapping[str, tuple[str, list[str]]]) -> dict[int, _Found]:
        found: dict[int, _Found] = {}
        for name, (text, pieces) in fields.items():
            base = normalize_pieces(text, pieces)
            base_words: list[str] | None = None
            stemmed = self._stemmed(base) if self._stem_languages else None
            for language, automaton in self.automata:
                spaced = base if stemmed is None or language is None else stemmed[language]
                for end, (key, words, entries) in automaton.iter(spaced):
                    start = end - len(key) + 1
                    first = spaced.count(" ", 0, start + 1) - 1
                    for index, role, term in entries:
                        into = found.get(index)
                        if into is None:
                            into = found[index] = _Found([], [], [])
                        if role == _TERM:
                            if base_words is None:
                                base_words = base.split()
                            shown = " ".join(base_words[first : first + words])
                            into.terms.append((name, first, first + words, term, shown))
                        elif role == _EXCLUDE:
                            into.excluded.append((name, first, first + words))
                        else:
                            into.near.append((name, first))
        return found

    def lexicon_matches(self, fields: Mapping[str, str]) -> list[Match]:
        # Exclusions and proximity act only on terms of their own field: a field where no term
        # can match adds no span, so it is left out whole (most messages: all their fields).
        quiet = self._quiet
        loud: dict[str, tuple[str, list[str]]] = {}
        for name, text in fields.items():
            pieces = text.split()
            if not quiet.issuperset(pieces) and self._may_match(pieces):
                loud[name] = (text, pieces)
        if not loud:
            return []
        everything = self._find(loud)
        if not everything:
            return []
        matches = []
        for index, found in sorted(everything.items()):
            rule = self.lexicon[index]
            spans = []
            for name, start, end, term, shown in found.terms:
                if any(
                    f == name and s < end and start < e for f, s, e in found.excluded
                ):  # an exclusion phrase covers this term ("not guaranteed")
                    continue
                if rule.near is not None and not any(
                    f == name and abs(position - start) <= rule.near.within
                    for f, position in found.near
                ):
                    continue
                spans.append(Span(name, start, end, term, shown))
            if spans:
                unique = sorted(set(spans))
                matches.append(Match(rule.id, "lexicon", tuple(unique)))
        return matches

    # -- every rule -----------------------------------------------------------------------------

    def match(
        self,
        *,
        record_id: str,
        chain_id: str,
        fields: Mapping[str, str],
        flags: Sequence[str] = (),
    ) -> list[Match]:
        """The rules of the policy this message meets, in the policy's rule order."""
        found = {m.rule: m for m in self.lexicon_matches(fields)} if self.automata else {}
        for rule in self.flag_rules:
            present = tuple(sorted(set(rule.flags) & set(flags)))
            if present:
                found[rule.id] = Match(rule.id, "flag", flags=present)
        if self.sample_rules:
            point = sample_point(self.policy, record_id)
            for sample in self.sample_rules:
                if point < sample.rate_for(chain_id):
                    found[sample.id] = Match(sample.id, "sample")
        order = {rule.id: i for i, rule in enumerate(self.policy.rules)}
        return sorted(found.values(), key=lambda m: order[m.rule])
