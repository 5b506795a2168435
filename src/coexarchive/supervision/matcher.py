"""A policy compiled into Aho-Corasick automata: one pass over a text finds every term of it.

Every term, exclusion and proximity term of every lexicon rule is normalised
(:func:`~coexarchive.supervision.normalize.normalize`) into a key ``" w1 w2 "`` (a prefix pattern
``refund*`` into ``" refund"``) and added to one automaton; rules with ``stem: true`` go into one
automaton per stemming language, matched against the stemmed text. A text is normalised once,
stemmed once per such language, and walked once per automaton: the cost does not grow with the
number of terms.

Spans are word positions in the normalised text (``[start, end)``, counted from 0), per field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, NamedTuple

import ahocorasick

from coexarchive.supervision.normalize import Stemmers, normalize
from coexarchive.supervision.policy import FlagRule, LexiconRule, Policy, SampleRule

__all__ = ["Match", "Matcher", "Span", "sample_point"]

_TERM: Final = 0
_EXCLUDE: Final = 1
_NEAR: Final = 2
_TWO_64: Final = Decimal(2**64)
_MAX_STEMS: Final = 200_000


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
        self.automata: list[tuple[str | None, Any]] = []
        for language, table in sorted(entries.items(), key=lambda item: item[0] or ""):
            automaton = ahocorasick.Automaton()
            for key, found in table.items():
                words = key.strip().count(" ") + 1
                automaton.add_word(key, (key, words, tuple(found)))
            automaton.make_automaton()
            self.automata.append((language, automaton))
        self._stem_languages = [language for language, _ in self.automata if language]
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

    def find(self, fields: Mapping[str, str]) -> dict[int, _Found]:
        """Every term, exclusion and proximity match in ``fields``, by lexicon rule index."""
        found: dict[int, _Found] = {}
        for name, text in fields.items():
            base = normalize(text)
            base_words: list[str] | None = None
            stemmed = self._stemmed(base) if self._stem_languages else {}
            for language, automaton in self.automata:
                spaced = base if language is None else stemmed[language]
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
        everything = self.find(fields)
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
