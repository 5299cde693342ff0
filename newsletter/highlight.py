"""Keyword highlighting: split a text into (segment, is_match) pieces. Pure.

The pieces mark where a subscriber's keywords occur, by the ranker's notion of a match
(`ranking.tokenize`: folded case and accents, word boundaries, Snowball stems), so what is
highlighted is what was scored: "Lean" lights up "Lean" in "Lean4" but not "clean", and
"theorem proving" lights up "Theorem-proving" and "theorem proves" alike.

- A one-word keyword marks every word whose stem is the keyword's stem.
- A several-word keyword marks each run of words that spells it in order ("test-time" and
  "test time" alike, with the separator between them); when the words occur but never in
  phrase, each of them is marked, as the ranker still scores that (scattered) match.

Joining the segments gives back the text exactly, so the renderer can escape each one and
wrap the matches in markup of its own: text never becomes markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# The ranker's own folding and token pattern: what is highlighted is what was scored.
from newsletter.ranking.text import TOKEN as _TOKEN, fold as _fold, keyword_terms, tokenize

Segment = tuple[str, bool]


@dataclass(frozen=True)
class _Token:
    stem: str
    start: int  # span in the original text
    end: int


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return _fold(char)


def _tokens(text: str) -> list[_Token]:
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
    return tokens


def _phrase_spans(tokens: Sequence[_Token], terms: tuple[str, ...]) -> list[tuple[int, int]]:
    size = len(terms)
    stems = [token.stem for token in tokens]
    return [
        (tokens[at].start, tokens[at + size - 1].end)
        for at in range(len(tokens) - size + 1)
        if tuple(stems[at : at + size]) == terms
    ]


def match_spans(text: str, keywords: Iterable[str]) -> list[tuple[int, int]]:
    """The (start, end) spans of `text` where any keyword occurs, sorted and merged."""
    tokens = _tokens(text)
    spans: list[tuple[int, int]] = []
    for terms in dict.fromkeys(keyword_terms(keyword) for keyword in keywords):
        if not terms:
            continue
        found = _phrase_spans(tokens, terms)
        if not found and len(terms) > 1 and set(terms) <= {token.stem for token in tokens}:
            found = [(t.start, t.end) for t in tokens if t.stem in terms]  # scattered
        spans.extend(found)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        # Touching spans, or spans with only spaces between, make one highlight.
        if merged and (start <= merged[-1][1] or not text[merged[-1][1] : start].strip()):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, keywords: Iterable[str]) -> list[Segment]:
    """`text` cut into (segment, is_match) pieces, in order, adjacent pieces never alike.

    `"".join(segment for segment, _ in highlight(text, keywords)) == text` always holds.
    """
    segments: list[Segment] = []
    position = 0
    for start, end in match_spans(text, keywords):
        if start > position:
            segments.append((text[position:start], False))
        segments.append((text[start:end], True))
        position = end
    if position < len(text):
        segments.append((text[position:], False))
    return segments
