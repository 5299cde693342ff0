"""Text as the ranker sees it: folding, tokens, stems, keyword terms, adjacent pairs.

Rules (see `newsletter.ranking` for the whole ranking): NFKC, accents stripped, case-folded; a
token is a run of letters or a run of digits; tokens are stemmed by the Snowball English
stemmer, and acronym plurals it leaves alone are folded too ("LLMs" == "LLM").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

import Stemmer

STEMMER_LANGUAGE = "english"

TOKEN = re.compile(r"[^\W\d_]+|\d+")
# TOKEN on folded ASCII text (nearly every paper), where it can only mean these: twice as fast.
_ASCII_TOKEN = re.compile(r"[a-z]+|[0-9]+")
# Snowball keeps the "s" of a plural without a vowel ("llms"): fold acronym plurals ourselves.
_ACRONYM_PLURAL = re.compile(r"[b-df-hj-np-tv-xz]{2,}s")
# A word (a run of letters, as TOKEN finds it) with two capitals A-Z or more: an acronym ("MoE").
_ACRONYM = re.compile(r"(?<![^\W\d_])(?=[^\W\d_]*?[A-Z][^\W\d_]*?[A-Z])[^\W\d_]+")
_HYPHENATED = re.compile(r"(?<![^\W\d_])([^\W\d_]+)-([^\W\d_]+)(?![^\W\d_])")
PAIR_SEPARATOR = " "  # never inside a token, so "a b" cannot collide with a word
_STEMMER = Stemmer.Stemmer(STEMMER_LANGUAGE)

Terms = tuple[str, ...]


def fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def tokenize(text: str) -> list[str]:
    """The stemmed, case-folded word tokens of `text`, in order."""
    folded = fold(text)
    stems = _STEMMER.stemWords((_ASCII_TOKEN if folded.isascii() else TOKEN).findall(folded))
    return [
        stem[:-1] if stem[-1:] == "s" and _ACRONYM_PLURAL.fullmatch(stem) else stem
        for stem in stems
    ]


@lru_cache(maxsize=65536)
def keyword_terms(keyword: str) -> Terms:
    """A keyword as the index sees it: its stemmed tokens (empty for punctuation only)."""
    return tuple(tokenize(keyword))


def acronym_words(text: str) -> frozenset[str]:
    """The words `text` writes as acronyms (two capitals A-Z or more: "CLIP", "MoE", "LLMs"),
    folded, a plural "s" aside ("LLMs" -> "llm"). A keyword's acronym means that word as a
    paper writes it, not any word of its stem: "CLIP" is not "clipping", nor the verb "clip"."""
    found = set()
    # Only the whitespace-separated pieces holding a capital can hold an acronym: the
    # expression runs on those alone (a paper's title and abstract, 2.3 times as fast).
    for word in _ACRONYM.findall(" ".join([piece for piece in text.split() if not piece.islower()])):
        folded = fold(word)
        found.add(folded[:-1] if folded.endswith("s") and len(folded) > 2 else folded)
    return frozenset(found)


def pairs(tokens: Sequence[str]) -> list[str]:
    """Every adjacent pair of `tokens` as one term ("test time")."""
    return [a + PAIR_SEPARATOR + b for a, b in zip(tokens, tokens[1:])]


def hyphenated_words(texts: Iterable[str]) -> dict[str, Terms]:
    """The words the texts write with a hyphen, closed up and stemmed ("pretrain" for
    "pre-training"), each with its two halves as terms. A keyword word splits only where a
    paper hyphenates it: "notable" never becomes "not able"."""
    halves_found = sorted({
        pair
        for text in texts
        for word in text.casefold().split()
        if "-" in word  # the regular expression on hyphenated words only: 4 times as fast
        for pair in _HYPHENATED.findall(word)
    })
    found: dict[str, Terms] = {}
    for (first, second), closed, halves in zip(
        halves_found,
        map(tokenize, (first + second for first, second in halves_found)),
        map(tokenize, (f"{first} {second}" for first, second in halves_found)),
    ):
        if len(closed) == 1 and len(halves) == 2:
            found.setdefault(closed[0], tuple(halves))
    return found

