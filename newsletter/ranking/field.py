"""One BM25 index over one field (title or abstract) of every paper of a batch.

A field is indexed as its tokens plus every adjacent pair of tokens as one extra term ("test
time"), so a phrase is a term with its own document frequency, scored by bm25s like any word.
A keyword of three or more words is in phrase only where its words are one run, in order: the
pairs find the candidates, the papers' token lists confirm them.
Per-term score vectors are cached: a keyword shared by many subscribers is scored once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import bm25s
import numpy as np

from newsletter import acronyms
from newsletter.ranking.text import Terms, pairs

SCATTERED_WEIGHT = 0.3  # all words of a multi-word keyword present, but not adjacent
BM25_METHOD = "lucene"
BM25_K1 = 1.2  # Lucene's defaults
BM25_B = 0.75

# bm25s sets its own logger to DEBUG, which would print "Building index" lines through any
# handler the CLI installs; its warnings still get through.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class Field:
    """One BM25 index over one field of every paper, with per-term score vectors cached."""

    def __init__(self, documents: list[list[str]], tokens: Sequence[Sequence[str]] | None = None) -> None:
        self._size = len(documents)
        self._tokens = tokens  # each paper's tokens in order, to check phrases of 3+ words
        self._bm25: bm25s.BM25 | None = None
        self._cache: dict[str, np.ndarray] = {}
        # bm25s cannot index a corpus without a single token (an all-empty field).
        if any(documents):
            self._bm25 = bm25s.BM25(method=BM25_METHOD, k1=BM25_K1, b=BM25_B)
            self._bm25.index(documents, show_progress=False)

    @classmethod
    def from_tokens(cls, token_lists: Sequence[list[str]]) -> Field:
        return cls([tokens + pairs(tokens) for tokens in token_lists], token_lists)

    def __contains__(self, term: str) -> bool:
        return self._bm25 is not None and term in self._bm25.vocab_dict

    def term_scores(self, term: str) -> np.ndarray:
        """BM25 of one term (a token or a pair) in every paper; 0 where it does not occur."""
        scores = self._cache.get(term)
        if scores is None:
            if self._bm25 is None or term not in self._bm25.vocab_dict:
                scores = np.zeros(self._size, dtype=np.float32)
            else:
                scores = self._bm25.get_scores([term])
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
