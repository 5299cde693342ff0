"""Rank a batch of papers for a subscriber's keywords: lexical BM25 with phrases and a floor.

This module owns tokenisation of paper text and keywords, the per-batch index (`PaperIndex`),
scoring a `Profile` against it and choosing the picks. It is pure: papers and a profile in,
`Ranked` values out. Build the index once per batch, then `rank` any number of profiles:
scores are cached per term and per keyword, so a profile costs a few vector operations.

Rules
- Tokens: NFKC, accents stripped, case-folded; a token is a run of letters or a run of digits,
  so hyphens, spaces and punctuation are all boundaries ("test-time" == "test time", "Lean4"
  contains "lean") and a keyword never matches inside a longer word ("Lean" is not in "clean",
  "RL" is not in "world"). Tokens are stemmed by the Snowball English stemmer ("proofs" ==
  "proof"), and acronym plurals it leaves alone are folded too ("LLMs" == "LLM"). No stopword
  list: BM25's idf already makes common words cheap.
- Index: one `bm25s.BM25` (Lucene variant) per field, title and abstract. A field is indexed as
  its tokens plus every adjacent pair of tokens as one extra term ("test time"), so a phrase is a
  term with its own document frequency, scored by the library like any word.
- A keyword matches a field when all its tokens occur in it. Its score there is: one word, the
  BM25 of the token; several words in phrase (each adjacent pair of the keyword occurs as a pair
  in the field), the BM25 of the tokens plus that of the pairs; several words scattered,
  SCATTERED_WEIGHT x the BM25 of the tokens. A field holding only some of the words scores 0:
  "time" alone is not "test-time". Phrases of three or more words are checked pair by pair
  ("a b" and "b c" anywhere in the field), an approximation of exact adjacency.
- A keyword's score in a paper is TITLE_WEIGHT x title + abstract. A paper's score is its best
  keyword plus SECONDARY_WEIGHT x the others: several keywords count, yet one keyword squarely
  in the title beats three brushed once in the abstract.
- Exclusion: a paper where an `exclude` keyword occurs in the title or abstract (in phrase, for
  several words: "survey paper" must not exclude every abstract saying "this paper ... survey")
  is dropped from the ranking entirely.
- Order: score (rounded to SCORE_DECIMALS) descending, then upvotes descending (unknown counts as
  0), then title. Upvotes only order papers of equal score: they never lift one above another.
- Floor: only papers that matched at least one keyword as a whole appear at all (score > 0),
  so a profile that matches nothing gets no picks: there is no filler. A paper clears the floor
  when its score is at least FLOOR_FRACTION x the best paper's score in this ranking, or when its
  score for one keyword is at least FLOOR_FRACTION x the best score any paper got for that
  keyword (so a keyword whose best paper today is modest is not drowned by another keyword's
  strong matches). The picks are the first `max_papers` papers in rank order that clear the
  floor; a paper below the floor can sit between picks in the ranking. The floor is relative
  because BM25's scale depends on the batch and on the query: no absolute constant fits all.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import bm25s
import numpy as np
import Stemmer

from newsletter.models import KeywordMatch, Paper, Ranked

TITLE_WEIGHT = 2.5  # a title term counts this many times an abstract term
SECONDARY_WEIGHT = 0.5  # each keyword beyond a paper's best one counts this much
SCATTERED_WEIGHT = 0.3  # all words of a multi-word keyword present, but not adjacent
FLOOR_FRACTION = 0.15  # picks score at least this fraction of the profile's best paper
SCORE_DECIMALS = 4  # scores equal to this precision are ties (then upvotes, then title)
BM25_METHOD = "lucene"
BM25_K1 = 1.2  # Lucene's defaults
BM25_B = 0.75
STEMMER_LANGUAGE = "english"

_TOKEN = re.compile(r"[^\W\d_]+|\d+")
# Snowball keeps the "s" of a plural without a vowel ("llms"): fold acronym plurals ourselves.
_ACRONYM_PLURAL = re.compile(r"[b-df-hj-np-tv-xz]{2,}s")
_PAIR_SEPARATOR = " "  # never inside a token, so "a b" cannot collide with a word
_FIELD_NAMES = {1: ("title",), 2: ("abstract",), 3: ("title", "abstract")}
_STEMMER = Stemmer.Stemmer(STEMMER_LANGUAGE)

# bm25s sets its own logger to DEBUG, which would print "Building index" lines through any
# handler the CLI installs; its warnings still get through.
logging.getLogger("bm25s").setLevel(logging.WARNING)

Terms = tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """What one subscriber wants: keywords to rank by, keywords whose papers are never picked."""

    keywords: tuple[str, ...]
    exclude: tuple[str, ...] = ()


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def tokenize(text: str) -> list[str]:
    """The stemmed, case-folded word tokens of `text`, in order."""
    stems = _STEMMER.stemWords(_TOKEN.findall(_fold(text)))
    return [stem[:-1] if _ACRONYM_PLURAL.fullmatch(stem) else stem for stem in stems]


@lru_cache(maxsize=65536)
def keyword_terms(keyword: str) -> Terms:
    """A keyword as the index sees it: its stemmed tokens (empty for punctuation only)."""
    return tuple(tokenize(keyword))


def _pairs(tokens: Sequence[str]) -> list[str]:
    return [a + _PAIR_SEPARATOR + b for a, b in zip(tokens, tokens[1:])]


class _Field:
    """One BM25 index over one field of every paper, with per-term score vectors cached."""

    def __init__(self, documents: list[list[str]]) -> None:
        self._size = len(documents)
        self._bm25: bm25s.BM25 | None = None
        self._cache: dict[str, np.ndarray] = {}
        # bm25s cannot index a corpus without a single token (an all-empty field).
        if any(documents):
            self._bm25 = bm25s.BM25(method=BM25_METHOD, k1=BM25_K1, b=BM25_B)
            self._bm25.index(documents, show_progress=False)

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> _Field:
        documents = []
        for text in texts:
            tokens = tokenize(text)
            documents.append(tokens + _pairs(tokens))
        return cls(documents)

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

    def keyword_scores(self, terms: Terms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, all words present, in phrase) of a keyword in every paper of this field."""
        words = [self.term_scores(term) for term in dict.fromkeys(terms)]
        word_sum = np.sum(words, axis=0)
        present = np.logical_and.reduce([w > 0 for w in words])
        if len(terms) == 1:
            return np.where(present, word_sum, 0.0), present, present
        pairs = [self.term_scores(pair) for pair in dict.fromkeys(_pairs(terms))]
        in_phrase = present & np.logical_and.reduce([p > 0 for p in pairs])
        score = np.where(
            in_phrase,
            word_sum + np.sum(pairs, axis=0),
            np.where(present, SCATTERED_WEIGHT * word_sum, 0.0),
        )
        return score, present, in_phrase


@dataclass(frozen=True)
class _KeywordVectors:
    score: np.ndarray  # float, TITLE_WEIGHT * title + abstract, per paper
    fields: np.ndarray  # int64, 1 = matched in title, 2 = in abstract, 3 = both, per paper


class PaperIndex:
    """The papers of one batch, indexed once, against which many profiles are ranked."""

    def __init__(self, papers: Sequence[Paper], title: _Field, abstract: _Field) -> None:
        self.papers: tuple[Paper, ...] = tuple(papers)
        self._title = title
        self._abstract = abstract
        # Position of each paper in (upvotes descending, title) order: the tie-break as one key.
        tie_order = sorted(
            range(len(self.papers)),
            key=lambda i: (-(self.papers[i].upvotes or 0), _fold(self.papers[i].title)),
        )
        self.tie_break = np.empty(len(self.papers), dtype=np.int64)
        self.tie_break[tie_order] = np.arange(len(self.papers))
        self._keywords: dict[Terms, _KeywordVectors] = {}
        self._excluded: dict[Terms, np.ndarray] = {}

    @classmethod
    def build(cls, papers: Sequence[Paper]) -> PaperIndex:
        """Tokenise and index the title and abstract of every paper."""
        return cls(
            papers,
            _Field.from_texts([paper.title for paper in papers]),
            _Field.from_texts([paper.abstract for paper in papers]),
        )

    def __len__(self) -> int:
        return len(self.papers)

    def keyword_vectors(self, terms: Terms) -> _KeywordVectors:
        """Score and matched fields of one keyword in every paper (cached per keyword)."""
        vectors = self._keywords.get(terms)
        if vectors is None:
            title_score, in_title, _ = self._title.keyword_scores(terms)
            abstract_score, in_abstract, _ = self._abstract.keyword_scores(terms)
            vectors = _KeywordVectors(
                score=TITLE_WEIGHT * title_score + abstract_score,
                fields=in_title.astype(np.int64) | (in_abstract.astype(np.int64) << 1),
            )
            self._keywords[terms] = vectors
        return vectors

    def excluded_by(self, terms: Terms) -> np.ndarray:
        """Papers where an exclude keyword occurs (in phrase) in the title or abstract."""
        mask = self._excluded.get(terms)
        if mask is None:
            mask = self._title.keyword_scores(terms)[2] | self._abstract.keyword_scores(terms)[2]
            self._excluded[terms] = mask
        return mask


def _profile_keywords(keywords: Sequence[str]) -> list[tuple[str, Terms]]:
    """Keywords with their terms; those without any token or repeating another are left out."""
    seen: dict[Terms, str] = {}
    for keyword in keywords:
        terms = keyword_terms(keyword)
        if terms and terms not in seen:
            seen[terms] = keyword
    return [(keyword, terms) for terms, keyword in seen.items()]


@lru_cache(maxsize=65536)
def _keyword_match(keyword: str, fields_code: int) -> KeywordMatch:
    return KeywordMatch(keyword, _FIELD_NAMES[fields_code])


def _ranking(
    index: PaperIndex, profile: Profile, max_papers: int, *, picked_only: bool
) -> list[Ranked]:
    if max_papers < 0:
        raise ValueError(f"max_papers must be 0 or more, not {max_papers}")
    keywords = _profile_keywords(profile.keywords)
    if not keywords or not len(index):
        return []
    vectors = [index.keyword_vectors(terms) for _, terms in keywords]
    scores = np.stack([vector.score for vector in vectors])
    best = scores.max(axis=0)
    total = best + SECONDARY_WEIGHT * (scores.sum(axis=0) - best)
    keep = total > 0
    for terms in {keyword_terms(keyword) for keyword in profile.exclude} - {()}:
        keep &= ~index.excluded_by(terms)
    rows = np.flatnonzero(keep)
    if not rows.size:
        return []

    rounded = np.round(total[rows], SCORE_DECIMALS)
    order = np.lexsort((index.tie_break[rows], -rounded))
    rows, rounded = rows[order], rounded[order]
    # The floor of the profile as a whole, or of one keyword: a keyword whose best paper this
    # batch is modest still gets that paper picked beside another keyword's strong matches.
    keyword_scores = scores[:, rows]
    keyword_floor = FLOOR_FRACTION * keyword_scores.max(axis=1, keepdims=True)
    above_keyword_floor = (keyword_scores > 0) & (keyword_scores >= keyword_floor)
    above_floor = (rounded >= FLOOR_FRACTION * rounded[0]) | above_keyword_floor.any(axis=0)
    picked = above_floor & (np.cumsum(above_floor) <= max_papers)
    if picked_only:
        rows, rounded, picked = rows[picked], rounded[picked], picked[picked]

    # Each paper's matched fields as one integer, two bits per keyword (Python ints past 31
    # keywords); papers sharing a pattern share one `matched` tuple.
    codes = np.zeros(rows.size, dtype=np.int64 if len(vectors) <= 31 else object)
    for position, vector in enumerate(vectors):
        codes |= vector.fields[rows].astype(codes.dtype) << (2 * position)
    explanations: dict[int, tuple[KeywordMatch, ...]] = {}
    for code in set(codes.tolist()):
        explanations[code] = tuple(
            _keyword_match(keyword, (code >> (2 * position)) & 3)
            for position, (keyword, _) in enumerate(keywords)
            if (code >> (2 * position)) & 3
        )
    papers = index.papers
    return [
        Ranked(papers[row], score, explanations[code], is_picked)
        for row, score, code, is_picked in zip(
            rows.tolist(), rounded.tolist(), codes.tolist(), picked.tolist()
        )
    ]


def rank(index: PaperIndex, profile: Profile, *, max_papers: int) -> list[Ranked]:
    """Every paper that matched a keyword, best first, the picks marked `picked`.

    Papers matching an `exclude` keyword are left out of the result altogether.
    """
    return _ranking(index, profile, max_papers, picked_only=False)


def pick(index: PaperIndex, profile: Profile, *, max_papers: int) -> list[Ranked]:
    """Only the picks of `rank`, best first: what a digest needs, without the rest's cost."""
    return _ranking(index, profile, max_papers, picked_only=True)


def rank_papers(papers: Sequence[Paper], profile: Profile, *, max_papers: int) -> list[Ranked]:
    """Index `papers` and rank them for one profile (use `PaperIndex` for many profiles)."""
    return rank(PaperIndex.build(papers), profile, max_papers=max_papers)
