"""One BM25 index over one field (title or abstract) of every paper of a batch.

A field is indexed as its tokens plus every adjacent pair of tokens as one extra term ("test
time"), so a phrase is a term with its own document frequency, scored like any word.
A keyword of three or more words is in phrase only where its words are one run, in order: the
pairs find the candidates, the papers' token lists confirm them.

BM25 is Lucene's (Kamphuis et al., ECIR 2020, as bm25s implements it, to the last bit of its
float32 scores; tests/test_ranking.py checks that against bm25s): idf = ln(1 + (N - df + 0.5)
/ (df + 0.5)), a term's score idf x tf / (tf + k1 x (1 - b + b x |d| / avgdl)), where |d|
counts a paper's tokens and pairs. It is computed lazily, term by term, from postings made in
one pass: a day's keywords ask for a thousand of the field's 60,000 terms, and bm25s scored
them all up front (0.15 s of a 10,000-subscriber rank stage).
Per-term score vectors are cached: a keyword shared by many subscribers is scored once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import numpy as np

from newsletter import acronyms
from newsletter.ranking.text import PAIR_SEPARATOR, Terms, pairs

SCATTERED_WEIGHT = 0.3  # all words of a multi-word keyword present, but not adjacent
BM25_K1 = 1.2  # Lucene's defaults
BM25_B = 0.75


class _Postings:
    """For each term (a number), the papers holding it and how often: sorted by term, then
    paper."""

    def __init__(self, terms: np.ndarray, papers: np.ndarray) -> None:
        order = np.argsort(terms, kind="stable")  # papers come in order: stay so per term
        terms, papers = terms[order], papers[order]
        changes = (terms[1:] != terms[:-1]) | (papers[1:] != papers[:-1])
        starts = np.flatnonzero(np.r_[True, changes]) if len(terms) else np.zeros(0, dtype=np.intp)
        self.terms = terms[starts]
        self.papers = papers[starts]
        self.counts = np.diff(np.r_[starts, len(terms)]).astype(np.float32)

    def of(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(papers, counts) of one term."""
        low, high = np.searchsorted(self.terms, (term, term + 1))
        return self.papers[low:high], self.counts[low:high]


class Field:
    """One BM25 index over one field of every paper, with per-term score vectors cached."""

    def __init__(self, tokens: Sequence[Sequence[str]]) -> None:
        self._size = len(tokens)
        self._tokens = tokens  # each paper's tokens in order, to check phrases of 3+ words
        self._cache: dict[str, np.ndarray] = {}
        self._vocabulary: dict[str, int] = {}
        numbered = [[self._vocabulary.setdefault(token, len(self._vocabulary)) for token in paper] for paper in tokens]
        counts = np.fromiter(map(len, numbered), dtype=np.int64, count=self._size)
        words = np.fromiter(chain.from_iterable(numbered), dtype=np.int64, count=int(counts.sum()))
        # Each paper's tokens as numbers, in order, and how many each has: `duplicates` reads them.
        self.numbered: tuple[np.ndarray, np.ndarray, int] = (words, counts, len(self._vocabulary))
        paper_of = np.repeat(np.arange(self._size, dtype=np.int64), counts)
        adjacent = np.flatnonzero(paper_of[1:] == paper_of[:-1])  # pairs within a paper
        self._words = _Postings(words, paper_of)
        self._pairs = _Postings(words[adjacent] * len(self._vocabulary) + words[adjacent + 1], paper_of[adjacent])
        lengths = counts + np.maximum(counts - 1, 0)  # tokens and pairs
        # The same operations, in the same order and types, as bm25s: the same float32 scores.
        average = lengths.mean() if lengths.any() else np.float64(1.0)
        self._norm = BM25_K1 * ((1 - BM25_B) + BM25_B * lengths / average)

    @classmethod
    def from_tokens(cls, token_lists: Sequence[list[str]]) -> Field:
        return cls(token_lists)

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        if PAIR_SEPARATOR not in term:
            number = self._vocabulary.get(term)
            return None if number is None else self._words.of(number)
        first, _, second = term.partition(PAIR_SEPARATOR)
        left, right = self._vocabulary.get(first), self._vocabulary.get(second)
        if left is None or right is None:
            return None
        found = self._pairs.of(left * len(self._vocabulary) + right)
        return found if len(found[0]) else None

    def __contains__(self, term: str) -> bool:
        return self._postings(term) is not None

    def term_scores(self, term: str) -> np.ndarray:
        """BM25 of one term (a token or a pair) in every paper; 0 where it does not occur."""
        scores = self._cache.get(term)
        if scores is None:
            scores = np.zeros(self._size, dtype=np.float32)
            found = self._postings(term)
            if found is not None:
                papers, counts = found
                idf = np.float32(math.log(1 + (self._size - len(papers) + 0.5) / (len(papers) + 0.5)))
                scores[papers] = idf * (counts / (self._norm[papers] + counts))
            self._cache[term] = scores
        return scores

    def keyword_scores(self, terms: Terms) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(score, all words present, in phrase, words) of a keyword in every paper of this
        field; `words` is the BM25 of its words one by one, whichever of them occur."""
        unique = list(dict.fromkeys(terms))
        words = [self.term_scores(term) for term in unique]
        word_sum = np.sum(words, axis=0)
        present = np.logical_and.reduce([w > 0 for w in words])
        # Alone, "of" or "the" says nothing about a keyword: they count only in a whole match.
        content = [w for term, w in zip(unique, words) if term not in acronyms.FUNCTION_WORDS]
        content_sum = np.sum(content, axis=0) if content else np.zeros_like(word_sum)
        if len(terms) == 1:
            return word_sum, present, present, content_sum
        pair_scores = [self.term_scores(pair) for pair in dict.fromkeys(pairs(terms))]
        in_phrase = present & np.logical_and.reduce([p > 0 for p in pair_scores])
        if len(terms) > 2:
            in_phrase = self._adjacent(terms, in_phrase)
        score = np.where(
            in_phrase,
            word_sum + np.sum(pair_scores, axis=0),
            np.where(present, SCATTERED_WEIGHT * word_sum, 0.0),
        )
        return score, present, in_phrase, content_sum

    def _adjacent(self, terms: Terms, candidates: np.ndarray) -> np.ndarray:
        """Of the papers holding every adjacent pair of `terms`, those where all the terms
        follow each other: "test time" and "time compute" in one title do not make "test-time
        compute" unless they are one run of words."""
        if self._tokens is None:
            return candidates
        exact = candidates.copy()
        width = len(terms)
        for at in np.flatnonzero(candidates):
            tokens = self._tokens[at]
            exact[at] = any(
                tuple(tokens[start : start + width]) == terms
                for start, token in enumerate(tokens)
                if token == terms[0]
            )
        return exact

    def content_fraction(self, terms: Terms) -> np.ndarray:
        """The share of a keyword's distinct content words (function words aside) that occur
        in each paper of this field."""
        content = [term for term in dict.fromkeys(terms) if term not in acronyms.FUNCTION_WORDS]
        if not content:
            return np.zeros(self._size, dtype=np.float32)
        return np.mean([self.term_scores(term) > 0 for term in content], axis=0).astype(np.float32)
