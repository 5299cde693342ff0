"""Keyword highlighting: split a text into (segment, is_match) pieces. Pure.

The pieces mark where a subscriber's keywords occur, by the ranker's notion of a match
(`ranking.tokenize`: folded case and accents, word boundaries, Snowball stems), so what is
highlighted is what was scored: "Lean" lights up "Lean" in "Lean4" but not "clean", and
"theorem proving" lights up "Theorem-proving" and "theorem proves" alike.

- A one-word keyword marks every word whose stem is the keyword's stem; a word the keyword
  writes as an acronym ("CLIP") marks only that word written as an acronym ("CLIP", "CLIPs"),
  not another word of its stem ("clipping", "clip"), in a text that writes it as an acronym
  somewhere, as the ranker matches it.
- A several-word keyword marks each run of words that spells it in order ("test-time" and
  "test time" alike, with the separator between them), and only such runs: its words apart
  are never marked on their own (no lone "time" for "test-time compute").
- `spellings` may add, per keyword, other term sequences that spell it (the ranker's
  `PaperIndex.spellings`: "MoE" for "mixture of experts"); they are marked the same way.
- `excerpt` cuts a long abstract so that the first match is in the part shown.

Joining the segments gives back the text exactly, so the renderer can escape each one and
wrap the matches in markup of its own: text never becomes markup.

A paper's tokens, and the spans of each keyword in each text, are computed once per process
and reused for every subscriber (a day renders the same few hundred abstracts for everyone).
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

# The ranker's own folding and token pattern: what is highlighted is what was scored.
from newsletter.ranking.text import TOKEN as _TOKEN, Terms, acronym_words, fold as _fold, keyword_terms, tokenize

Segment = tuple[str, bool]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[\"'])")
ELLIPSIS = "…"


class _Tokens(NamedTuple):
    """A text's tokens as the ranker stems them, each with the span of the text it came from."""

    stems: tuple[str, ...]
    starts: array[int]
    ends: array[int]


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return _fold(char)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@lru_cache(maxsize=4096)
def _tokens(text: str) -> _Tokens:
    """The ranker's tokens of `text`, each with the span of the original text it came from.

    The ranker folds the whole text (NFKC, case, accents) and then finds tokens; folding is
    done here one character at a time so that every folded character knows its origin. The
    result is the same (accents are stripped after decomposition either way), and a test
    pins `list(_tokens(text).stems) == tokenize(text)`. An ASCII character folds to its lower
    case, so runs of them are folded whole; and an ASCII token is one word for the stemmer,
    so those are stemmed in one call.
    """
    origin: list[int] | None = None
    vanishing: set[int] = set()  # characters that fold to nothing (combining accents)
    if text.isascii():
        folded_text = text.lower()
    else:
        pieces: list[str] = []
        origin = []
        position = 0
        for found in _NON_ASCII.finditer(text):
            index = found.start()
            pieces.append(text[position:index].lower())
            origin.extend(range(position, index))
            piece = _fold_char(found.group())
            pieces.append(piece)
            origin.extend([index] * len(piece))
            if not piece:
                vanishing.add(index)
            position = index + 1
        pieces.append(text[position:].lower())
        origin.extend(range(position, len(text)))
        folded_text = "".join(pieces)
    matches = list(_TOKEN.finditer(folded_text))
    words = [match.group() for match in matches]
    spans = [match.span() for match in matches]
    if origin is not None:
        spans = [_origin_span(origin, vanishing, start, end) for start, end in spans]
    if " ".join(words).isascii():  # one stem per word
        stems, starts, ends = tokenize(" ".join(words)), [start for start, _ in spans], [end for _, end in spans]
    else:
        stems, starts, ends = [], [], []
        for word, (start, end) in zip(words, spans):
            for stem in tokenize(word):
                stems.append(stem)
                starts.append(start)
                ends.append(end)
    return _Tokens(tuple(map(sys.intern, stems)), array("I", starts), array("I", ends))


def _origin_span(origin: list[int], vanishing: set[int], start: int, end: int) -> tuple[int, int]:
    """The span of the original text that folded into [start, end)."""
    end = origin[end - 1] + 1
    while end in vanishing:  # keep combining accents with their letter
        end += 1
    return origin[start], end


def _phrase_spans(tokens: _Tokens, terms: Terms) -> list[tuple[int, int]]:
    """Where the run of stems `terms` occurs in `tokens` (found by C code: tuple.index)."""
    stems, size = tokens.stems, len(terms)
    found: list[tuple[int, int]] = []
    at = -1
    while True:
        try:
            at = stems.index(terms[0], at + 1)
        except ValueError:
            return found
        if size == 1 or stems[at : at + size] == terms:
            found.append((tokens.starts[at], tokens.ends[at + size - 1]))


@lru_cache(maxsize=16384)
def _keyword_spans(text: str, terms: Terms) -> tuple[tuple[int, int], ...]:
    """Where one spelling of a keyword occurs whole in `text`; once per (text, spelling) per
    process, so a day's abstracts are searched once for each keyword, whoever asks."""
    return tuple(_phrase_spans(_tokens(text), terms))


@lru_cache(maxsize=65536)
def _acronyms(text: str) -> frozenset[str]:
    return acronym_words(text)


@lru_cache(maxsize=8192)
def _terms(keyword: str) -> Terms:
    return tuple(map(sys.intern, keyword_terms(keyword)))


def match_spans(
    text: str, keywords: Iterable[str], spellings: Mapping[str, Sequence[Terms]] | None = None
) -> list[tuple[int, int]]:
    """The (start, end) spans of `text` where any keyword occurs whole, sorted and merged."""
    # Each spelling with the words it must write as acronyms (the keyword as written only, and
    # only words this text writes as acronyms somewhere: "TEST-TIME" still marks "Test-Time").
    wanted: dict[tuple[Terms, frozenset[str]], None] = {}
    for keyword in keywords:
        wanted[(_terms(keyword), _acronyms(keyword) & _acronyms(text))] = None
        for terms in (spellings or {}).get(keyword, ()):
            wanted[(tuple(terms), frozenset())] = None
    spans: list[tuple[int, int]] = []
    for terms, written in wanted:
        if terms:
            spans.extend(
                (start, end) for start, end in _keyword_spans(text, terms)
                if not written or written <= _acronyms(text[start:end])
            )
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        # Touching spans, or spans with only spaces between, make one highlight.
        if merged and (start <= merged[-1][1] or not text[merged[-1][1] : start].strip()):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(
    text: str, keywords: Iterable[str], spellings: Mapping[str, Sequence[Terms]] | None = None
) -> list[Segment]:
    """`text` cut into (segment, is_match) pieces, in order, adjacent pieces never alike.

    `"".join(segment for segment, _ in highlight(text, keywords)) == text` always holds.
    """
    segments: list[Segment] = []
    position = 0
    for start, end in match_spans(text, keywords, spellings):
        if start > position:
            segments.append((text[position:start], False))
        segments.append((text[start:end], True))
        position = end
    if position < len(text):
        segments.append((text[position:], False))
    return segments


def excerpt(text: str, spans: Sequence[tuple[int, int]], limit: int) -> str:
    """At most about `limit` characters of `text` (one line), cut at sentence ends where it
    can, so that the first of `spans` (match_spans of `text`) is inside what is shown.

    Without a span, or with the first one in the opening sentences, that is the opening
    sentences; else the opening sentences that fit, an ellipsis, and the sentence holding
    the match (itself cut around the match when it alone is longer than `limit`).
    """
    if len(text) <= limit:
        return text
    first = opening(text, limit)
    if not spans or spans[0][1] <= len(first.removesuffix(ELLIPSIS)):
        return first
    start, end = spans[0]
    sentence_start = max((m.end() for m in _SENTENCE_END.finditer(text, 0, start)), default=0)
    following = _SENTENCE_END.search(text, end)
    sentence_end = following.start() if following else len(text)
    sentence = text[sentence_start:sentence_end]
    tail = "" if sentence_end == len(text) else " " + ELLIPSIS
    room = limit - len(sentence) - len(tail) - 3  # 3: the " … " before the sentence
    if room < 0:
        return _window(text, start, end, limit)
    lead = opening(text[:sentence_start].rstrip(), room) if room >= limit // 4 else ""
    if lead.endswith(ELLIPSIS):  # only whole opening sentences lead in
        lead = ""
    return (f"{lead} {ELLIPSIS} " if lead else f"{ELLIPSIS} ") + sentence + tail


def opening(text: str, limit: int) -> str:
    """The sentences from the start that fit in `limit`; else the words that do, and "…"."""
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if len(kept) >= limit // 3:
        return kept
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + ELLIPSIS


def _window(text: str, start: int, end: int, limit: int) -> str:
    """About `limit` characters around text[start:end], cut at spaces, with ellipses."""
    before = max(0, start - (limit - (end - start)) // 3)
    after = min(len(text), before + limit - 4)  # 4: room for the ellipses
    if before > 0:
        space = text.find(" ", before, start)
        before = space + 1 if space >= 0 else before
    if after < len(text):
        space = text.rfind(" ", end, after)
        after = space if space >= 0 else after
    shown = text[before:after]
    return (ELLIPSIS + " " if before > 0 else "") + shown + (" " + ELLIPSIS if after < len(text) else "")
