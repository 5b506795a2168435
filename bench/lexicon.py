"""Supervision lexicon matching: messages per second per core, beside the bare matcher.

Run from the repository root::

    .venv/bin/python bench/lexicon.py                     # 100,000 messages, 1,000 terms
    .venv/bin/python bench/lexicon.py --messages 50000 --repeat 1

A policy of 1,000 terms in five languages (English, Spanish, Portuguese, Arabic, Hindi: 200 each,
a tenth of them phrases, a tenth prefix patterns, with exclusions and one proximity rule) is
matched against generated messages of 4-24 words drawn (Zipf-like) from each language's
vocabulary, which holds the terms, with capitals, accents, Arabic harakat and tatweel, punctuation
and emoji. Measured, single process, best of ``--repeat`` passes interleaved:

* floor: the bare ``pyahocorasick`` automaton of the same 1,000 terms walked over the same texts
  as they are (no normalisation, no word boundaries, no rules);
* ours: ``Matcher.lexicon_matches`` (normal form, word boundaries, exclusions, proximity);
* ours, stemmed: the same policy with ``stem: true`` on every rule (five stemmed automata).

The target is at least half the floor's rate and 100,000 messages/s per core. Benchmarks report;
the exit code is always 0.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import ahocorasick

from coexarchive.supervision.matcher import Matcher
from coexarchive.supervision.policy import Policy, parse_policy

LANGUAGES = ("en", "es", "pt", "ar", "hi")
_LATIN = "bcdfghjklmnprstvz"
_VOWELS = {"en": "aeiou", "es": "aeiouáéíóú", "pt": "aeiouãõçéê"}
_ARABIC = "بتثجحخدذرزسشصضطظعغفقكلمنهوي"
_HARAKAT = "\u064e\u064f\u0650\u0651"
_DEVANAGARI = "कखगघचछजझटठडढतथदधनपफबभमयरलवशसह"
_MATRAS = "\u093e\u093f\u0940\u0941\u0942\u0947\u0948\u094b\u094c\u0902"
_PUNCT = (",", ".", "!", "?", " -", "…", " 🙏", " 📦", "؟", "।")


def _word(rng: random.Random, language: str) -> str:
    syllables = rng.randint(2, 4)
    if language == "ar":
        return "".join(rng.choice(_ARABIC) for _ in range(syllables + 1))
    if language == "hi":
        return "".join(rng.choice(_DEVANAGARI) + rng.choice(_MATRAS) for _ in range(syllables))
    vowels = _VOWELS[language]
    return "".join(rng.choice(_LATIN) + rng.choice(vowels) for _ in range(syllables))


def vocabulary(rng: random.Random, language: str, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add(_word(rng, language))
    return sorted(words)


def policy_of(terms: dict[str, list[str]], *, stem: bool) -> Policy:
    rules: list[dict[str, Any]] = []
    for language in LANGUAGES:
        chosen = terms[language]
        rules.append(
            {
                "type": "lexicon",
                "id": f"lexicon-{language}",
                "language": language,
                "stem": stem,
                "terms": chosen,
                "exclude": [f"no {chosen[0]}", f"not {chosen[1]}"],
            }
        )
    rules[0]["near"] = {"terms": terms["en"][-5:], "within": 5}
    return parse_policy(
        {"format": "coexarchive.policy/v1", "name": "bench", "version": 1, "rules": rules}
    )


def build(seed: int, count: int) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Messages, the terms per language, and the 1,000 terms as the floor gets them."""
    rng = random.Random(seed)
    vocab = {language: vocabulary(rng, language, 3000) for language in LANGUAGES}
    terms: dict[str, list[str]] = {}
    for language in LANGUAGES:
        # Terms are rarer words (ranks 500-3,000): a few messages in a hundred hit, as in practice.
        words = rng.sample(vocab[language][500:], 220)
        single = words[:160]
        phrases = [f"{a} {b}" for a, b in zip(words[160:180], words[180:200], strict=True)]
        prefixes = [w[:4] + "*" for w in words[200:220]]
        terms[language] = single + phrases + prefixes
    floor_terms = [t.rstrip("*") for language in LANGUAGES for t in terms[language]]
    # Zipf-like draws: word i with weight 1/(i+1).
    weights = [1 / (i + 1) for i in range(3000)]
    messages = []
    for _ in range(count):
        language = rng.choice(LANGUAGES)
        words = rng.choices(vocab[language], weights=weights, k=rng.randint(4, 24))
        if language in ("en", "es", "pt") and rng.random() < 0.3:
            words[0] = words[0].capitalize()
        if language == "ar" and rng.random() < 0.3:
            words = [w[:1] + rng.choice(_HARAKAT + "\u0640") + w[1:] for w in words]
        text = " ".join(words) + rng.choice(_PUNCT)
        messages.append(text)
    return messages, terms, floor_terms


def timed(run: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    found = run()
    return time.perf_counter() - start, found


def floor(automaton: Any, texts: Sequence[str]) -> Callable[[], int]:
    def run() -> int:
        found = 0
        for text in texts:
            for _ in automaton.iter(text):
                found += 1
        return found

    return run


def ours(matcher: Matcher, texts: Sequence[str]) -> Callable[[], int]:
    def run() -> int:
        found = 0
        for text in texts:
            if matcher.lexicon_matches({"text": text}):
                found += 1
        return found

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    messages, terms, floor_terms = build(args.seed, args.messages)
    automaton = ahocorasick.Automaton()
    for term in floor_terms:
        automaton.add_word(term, term)
    automaton.make_automaton()
    plain = Matcher(policy_of(terms, stem=False))
    stemmed = Matcher(policy_of(terms, stem=True))
    variants = {
        "floor: bare pyahocorasick": floor(automaton, messages),
        "ours: normal form + rules": ours(plain, messages),
        "ours, stemmed (5 languages)": ours(stemmed, messages),
    }
    ours(stemmed, messages[:20_000])()  # fill the stem caches as a long scan would have

    best: dict[str, float] = {}
    found: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, run in variants.items():
            seconds, count = timed(run)
            best[name] = min(best.get(name, seconds), seconds)
            found[name] = count

    chars = sum(map(len, messages)) / len(messages)
    print(
        f"lexicon matching: {len(messages):,} messages (mean {chars:.0f} characters), "
        f"{len(floor_terms):,} terms in {len(LANGUAGES)} languages; one process; "
        f"Python {platform.python_version()} on {platform.machine()}; best of {args.repeat}"
    )
    floor_rate = len(messages) / best["floor: bare pyahocorasick"]
    for name, seconds in best.items():
        rate = len(messages) / seconds
        label = "matches" if name.startswith("floor") else "messages hit"
        print(
            f"  {name:<30} {rate:>12,.0f} messages/s  {rate / floor_rate:5.2f}x floor  "
            f"({found[name]:,} {label})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
