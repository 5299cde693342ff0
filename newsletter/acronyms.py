"""Acronyms the papers define themselves: "mixture-of-experts (MoE)" teaches that MoE is that.

The ranker asks this module which other spellings a keyword has in today's papers, so that a
subscriber writing `MoE` also gets the paper that only says "mixture of experts", and one
writing `chain of thought` the paper that only says "CoT". Nothing is hard-wired: a definition
counts only when some paper of the batch writes it, the way authors introduce an acronym, as
`long form (ACRONYM)`. Pure functions over strings; the caller tokenises.

How a definition is recognised (after Schwartz & Hearst, "A simple algorithm for identifying
abbreviation definitions in biomedical text", PSB 2003):
- the parenthesised word has 2 to 10 letters or digits, two or more of them capitals ("MoE",
  "CoT", "LLMs"; not "(see)", not "(i)");
- its long form is a run of words just before the parenthesis that starts with the acronym's
  first letter, not with a function word ("of", "the"), and holds every letter of the acronym,
  in order, each later letter anywhere in a word ("Mixture-of-Experts" for MoE: m..., o...,
  e...), with at most MAX_EXTRA_WORDS words more than the acronym has letters;
- of several such runs, the one whose word initials spell most of the acronym wins, then the
  shortest: "Proximal Policy Optimization (PPO)", not "Policy Optimization".
A trailing plural "s" of the acronym is not a letter to match ("LLMs", "LRMs").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

MIN_LETTERS = 2
MAX_LETTERS = 10
MAX_EXTRA_WORDS = 2  # "Chain-of-Thought (CoT)" has 3 words for 3 letters; allow a few more
_DEFINITION = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9]{1,10})\s*\)")
_WORD = re.compile(r"[^\W_]+")
FUNCTION_WORDS = frozenset({"a", "an", "and", "by", "for", "in", "of", "on", "the", "to", "with"})

Tokenizer = Callable[[str], list[str]]
Terms = tuple[str, ...]


def _letters(acronym: str) -> str | None:
    """The letters a long form must supply, or None when the word is no acronym."""
    if sum(char.isupper() for char in acronym) < 2:
        return None
    letters = acronym[:-1] if acronym.endswith("s") and acronym[-2:-1].isupper() else acronym
    letters = letters.lower()
    return letters if MIN_LETTERS <= len(letters) <= MAX_LETTERS else None


def _spells(letters: str, words: list[str]) -> bool:
    """Whether `words` (lower case) supply `letters` in order, the first at the first word's
    start, scanning backwards as Schwartz & Hearst do."""
    if not words or not words[0].startswith(letters[0]):
        return False
    text = " ".join(words)
    position = len(text) - 1
    for letter in reversed(letters[1:]):
        while position > 0 and text[position] != letter:
            position -= 1
        if position <= 0:
            return False
        position -= 1
    return True


def find_definitions(text: str) -> list[tuple[str, str]]:
    """(acronym, long form) pairs defined in `text`, in order, as written."""
    found = []
    for match in _DEFINITION.finditer(text):
        acronym = match.group(1)
        letters = _letters(acronym)
        if letters is None:
            continue
        before = _WORD.findall(text[: match.start()])[-(len(letters) + MAX_EXTRA_WORDS) :]
        lowered = [word.lower() for word in before]
        best: tuple[int, int] | None = None  # (initials spelt, -words)
        for count in range(1, len(lowered) + 1):
            words = lowered[-count:]
            if words[0] not in FUNCTION_WORDS and _spells(letters, words):
                candidate = (_initials_spelt(letters, words), -count)
                best = candidate if best is None else max(best, candidate)
        if best is not None:
            found.append((acronym, " ".join(before[best[1] :])))
    return found


def _initials_spelt(letters: str, words: list[str]) -> int:
    """How many of `letters`, in order, are initials of `words` (a longest common subsequence)."""
    initials = [word[0] for word in words]
    row = [0] * (len(initials) + 1)
    for letter in letters:
        previous = row[:]
        for at, initial in enumerate(initials, start=1):
            row[at] = previous[at - 1] + 1 if letter == initial else max(previous[at], row[at - 1])
    return row[-1]


def definitions(found: Iterable[tuple[str, str]], tokenize: Tokenizer) -> dict[Terms, frozenset[Terms]]:
    """The acronyms of `found` (what `find_definitions` found in one text), as terms, each
    with the long forms (as terms) it gives.

    A long form of a single term is dropped: "(GPUs)" after "graphics" would only confuse.
    """
    learned: dict[Terms, set[Terms]] = {}
    for acronym, long_form in found:
        short, long = tuple(tokenize(acronym)), tuple(tokenize(long_form))
        if len(short) == 1 and len(long) >= 2 and short != long:
            learned.setdefault(short, set()).add(long)
    return {short: frozenset(longs) for short, longs in learned.items()}


def written_forms(found: Iterable[tuple[str, str]], tokenize: Tokenizer) -> dict[Terms, str]:
    """How the texts write each acronym they define, keyed by its terms: the most frequent
    writing ("MoE" over "MOE"), the first seen on a tie."""
    counts = Counter((tuple(tokenize(acronym)), acronym) for acronym, _ in found)
    forms: dict[Terms, str] = {}
    for (terms, written), _ in counts.most_common():
        forms.setdefault(terms, written)
    return forms


def merge(per_text: Iterable[Mapping[Terms, frozenset[Terms]]]) -> dict[Terms, frozenset[Terms]]:
    """One dictionary of every definition of several texts."""
    merged: dict[Terms, set[Terms]] = {}
    for learned in per_text:
        for short, longs in learned.items():
            merged.setdefault(short, set()).update(longs)
    return {short: frozenset(longs) for short, longs in merged.items()}


Spelling = tuple[Terms, Terms | None]  # the terms, and the acronym it brought in (if any)


def _replace(terms: Terms, old: Terms, new: Terms) -> list[Terms]:
    width = len(old)
    return [
        terms[:at] + new + terms[at + width :]
        for at in range(len(terms) - width + 1)
        if terms[at : at + width] == old
    ]


def spellings(terms: Terms, acronyms: Mapping[Terms, frozenset[Terms]]) -> tuple[Spelling, ...]:
    """`terms` first, then its other spellings as the batch defines them: an acronym in it
    written out ("CoT compression" -> "chain of thought compression") or a long form in it
    abbreviated ("mixture of experts" -> "MoE"); one replacement per spelling, sorted.

    Each spelling comes with the acronym it introduced, so that the caller can ignore it in a
    paper that defines that acronym as something else ("SD" as "symmetric decomposable" is no
    spelling of "speculative decoding" there).
    """
    others: dict[Terms, Terms | None] = {}
    # A replacement needs the first term of what it replaces in `terms`: testing that first
    # skips nearly every pair (a day defines ~150 acronyms, a keyword holds one or none), in
    # the same order, so the same spellings come out (ten times as fast).
    present = frozenset(terms)
    for short, longs in acronyms.items():
        has_short = not short or short[0] in present
        for long in longs:
            if has_short:
                for spelled in _replace(terms, short, long):
                    others.setdefault(spelled, None)
            if not long or long[0] in present:
                for spelled in _replace(terms, long, short):
                    others[spelled] = short
    others.pop(terms, None)
    return ((terms, None), *sorted(others.items(), key=lambda item: item[0]))
