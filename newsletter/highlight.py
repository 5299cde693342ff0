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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# The ranker's own folding and token pattern: what is highlighted is what was scored.
from newsletter.ranking.text import TOKEN as _TOKEN, Terms, acronym_words, fold as _fold, keyword_terms, tokenize

Segment = tuple[str, bool]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[\"'])")
ELLIPSIS = "…"


@dataclass(frozen=True)
class _Token:
    stem: str
    start: int  # span in the original text
    end: int


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return _fold(char)


@lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[_Token, ...]:
    """The ranker's tokens of `text`, each with the span of the original text it came from.

    The ranker folds the whole text (NFKC, case, accents) and then finds tokens; folding is
    done here one character at a time so that every folded character knows its origin. The
    result is the same (accents are stripped after decomposition either way), and a test
    pins `[t.stem for t in _tokens(text)] == tokenize(text)`.
    """
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = _fold_char(char)
        folded.append(piece)
        origin.extend([index] * len(piece))
    folded_text = "".join(folded)
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(folded_text):
        start = origin[match.start()]
        end = origin[match.end() - 1] + 1
        while end < len(text) and not folded[end]:  # keep combining accents with their letter
            end += 1
        tokens.extend(_Token(stem, start, end) for stem in tokenize(match.group()))
    return tuple(tokens)


def _phrase_spans(tokens: Sequence[_Token], terms: tuple[str, ...]) -> list[tuple[int, int]]:
    size = len(terms)
    stems = [token.stem for token in tokens]
    return [
        (tokens[at].start, tokens[at + size - 1].end)
        for at in range(len(tokens) - size + 1)
        if tuple(stems[at : at + size]) == terms
    ]


@lru_cache(maxsize=65536)
def _keyword_spans(text: str, terms: Terms) -> tuple[tuple[int, int], ...]:
    """Where one spelling of a keyword occurs whole in `text`; once per (text, spelling) per
    process, so a day's abstracts are searched once for each keyword, whoever asks."""
    return tuple(_phrase_spans(_tokens(text), terms))


@lru_cache(maxsize=65536)
def _acronyms(text: str) -> frozenset[str]:
    return acronym_words(text)


@lru_cache(maxsize=8192)
def _terms(keyword: str) -> Terms:
    return tuple(keyword_terms(keyword))


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
