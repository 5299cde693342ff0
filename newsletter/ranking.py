"""Rank a batch of papers for a subscriber's keywords: lexical BM25 with phrases and a floor.

This module owns tokenisation of paper text and keywords, the per-batch index (`PaperIndex`),
scoring a `Profile` against it and choosing the picks. It is pure: papers and profiles in,
`Ranked` values out. Build the index once per batch of papers, then rank any number of
profiles against it: score vectors are cached per term and per keyword, and `rank_many` scores
a chunk of profiles as (profile, keyword, paper) arrays, with no loop over profile x paper.

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
- A keyword matches a field whole when all its tokens occur in it. Its score there is: one
  word, the BM25 of the token; several words in phrase (each adjacent pair of the keyword occurs
  as a pair in the field), the BM25 of the tokens plus that of the pairs; several words
  scattered, SCATTERED_WEIGHT x the BM25 of the tokens. Phrases of three or more words are
  checked pair by pair ("a b" and "b c" anywhere in the field), an approximation of exact
  adjacency. Keywords with the same tokens or spellings ("LLM", "LLMs"; "MoE", "mixture of
  experts") count once, under the first one written.
- A keyword's score in a paper is log(1 + TITLE_WEIGHT x title + abstract): BM25 of a phrase in
  a short title runs an order of magnitude above an abstract mention, and the logarithm keeps
  one such keyword from drowning every other. A paper's score is its best keyword plus
  SECONDARY_WEIGHT x the others, plus WORDS_WEIGHT x log(1 + the BM25 of each keyword's words
  one by one, wherever they occur, function words left out). So several keywords count, yet
  one keyword squarely in the title and abstract beats three brushed once in the abstract; and
  a paper holding only some words of a keyword ("time" for "test-time") scores through those
  words alone, is listed as "some words" and is never picked on that alone.
- `matched` lists, in profile order, the keywords that matched and the fields where they did
  ("title", "abstract"); for a paper holding no keyword whole, the keywords of which it holds
  "some words".
- Spellings: a keyword also matches as the batch's papers spell it (`acronyms.py`): an acronym
  a paper defines, "mixture-of-experts (MoE)", makes `MoE` and `mixture of experts` one
  keyword, also inside a longer keyword ("CoT compression" finds "chain-of-thought
  compression"); a paper that defines the acronym as something else does not match it
  through the acronym. A multi-word keyword also matches closed up when a paper writes it so
  ("multi-agent", "multiagent"), and a closed word of a keyword hyphenated when a paper
  hyphenates it ("pretraining", "pre-training"; never "notable" as "not able", which nobody
  hyphenates). A keyword's score is the best of its spellings.
- Exclusion: a paper where an `exclude` keyword occurs in the title or abstract (in phrase, for
  several words: "survey paper" must not exclude every abstract saying "this paper ... survey")
  (in any spelling) is dropped from the ranking entirely.
- Near-duplicates (`duplicates.py`: the same work under two titles): only the best-ranked of
  a group stays in a profile's ranking.
- Order: score (rounded to SCORE_DECIMALS) descending, then upvotes descending (unknown counts as
  0), then title. Upvotes only order papers of equal score: they never lift one above another.
- Floor: a paper is picked only when a keyword occurs whole in it (or, hybrid, when it is close
  in meaning) and its score is at least FLOOR_FRACTION x the best paper's score in this
  ranking; a profile that matches nothing gets no picks: there is no filler. The picks are the
  first `max_papers` papers in rank order that clear the floor. The floor is relative because
  BM25's scale depends on the batch and on the query: no absolute constant fits all.
- Hybrid (when the index has paper embeddings, `Semantic`): see `_fuse`. The constants were
  tuned on bench/eval (bench/relevance.py prints a leave-one-profile-out check).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, islice

import bm25s
import numpy as np
import Stemmer

from newsletter import acronyms
from newsletter.duplicates import duplicate_groups
from newsletter.models import KeywordMatch, Paper, Ranked

TITLE_WEIGHT = 2.5  # a title term counts this many times an abstract term
SECONDARY_WEIGHT = 0.5  # each keyword beyond a paper's best one counts this much
SCATTERED_WEIGHT = 0.3  # all words of a multi-word keyword present, but not adjacent
WORDS_WEIGHT = 0.5  # each keyword's words, counted one by one wherever they occur
FLOOR_FRACTION = 0.3  # picks score at least this fraction of the profile's best paper
SCORE_DECIMALS = 4  # scores equal to this precision are ties (then upvotes, then title)
BM25_METHOD = "lucene"
BM25_K1 = 1.2  # Lucene's defaults
BM25_B = 0.75
# Hybrid ranking (when the index has paper embeddings; tuned on bench/eval, see the README):
SEMANTIC_WEIGHT = 1.0  # weight of the semantic score (0..1) beside the lexical one (0..1)
SEMANTIC_PICK = 0.5  # a paper with no keyword whole in it needs this semantic score to be picked
SEMANTIC_ONLY_FLOOR = 0.7  # a paper with no keyword word at all needs this to be ranked ...
ANCHOR_FRACTION = 1.0  # ... and to be as close in meaning as the profile's best lexical match
HYBRID_FLOOR_FRACTION = 0.3  # picks score at least this fraction of the profile's best paper
EMBEDDED_ACRONYM_LETTERS = 3  # a keyword is also embedded abbreviated by an acronym this long
STEMMER_LANGUAGE = "english"
BATCH_PROFILES = 128  # profiles scored together by `rank_many` (bounds its memory)

_TOKEN = re.compile(r"[^\W\d_]+|\d+")
# Snowball keeps the "s" of a plural without a vowel ("llms"): fold acronym plurals ourselves.
_ACRONYM_PLURAL = re.compile(r"[b-df-hj-np-tv-xz]{2,}s")
_HYPHENATED = re.compile(r"(?<![^\W\d_])([^\W\d_]+)-([^\W\d_]+)(?![^\W\d_])")
_PAIR_SEPARATOR = " "  # never inside a token, so "a b" cannot collide with a word
WHOLE = 3  # field codes 1 (title), 2 (abstract) and 3 (both): the keyword occurs whole
SIMILAR = 4  # field code of a keyword a paper matched only in meaning (hybrid ranking)
SOME_WORDS = 8  # field code of a keyword only some of whose words occur
_FIELD_NAMES = {
    1: ("title",), 2: ("abstract",), 3: ("title", "abstract"),
    SIMILAR: ("similar meaning",), SOME_WORDS: ("some words",),
    SIMILAR | SOME_WORDS: ("similar meaning", "some words"),
}
_STEMMER = Stemmer.Stemmer(STEMMER_LANGUAGE)
_TINY = np.finfo(np.float32).tiny

# bm25s sets its own logger to DEBUG, which would print "Building index" lines through any
# handler the CLI installs; its warnings still get through.
logging.getLogger("bm25s").setLevel(logging.WARNING)

Terms = tuple[str, ...]
Spellings = tuple[acronyms.Spelling, ...]


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
    return [
        stem[:-1] if stem[-1:] == "s" and _ACRONYM_PLURAL.fullmatch(stem) else stem
        for stem in stems
    ]


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
    def from_tokens(cls, token_lists: Sequence[list[str]]) -> _Field:
        return cls([tokens + _pairs(tokens) for tokens in token_lists])

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
        pairs = [self.term_scores(pair) for pair in dict.fromkeys(_pairs(terms))]
        in_phrase = present & np.logical_and.reduce([p > 0 for p in pairs])
        score = np.where(
            in_phrase,
            word_sum + np.sum(pairs, axis=0),
            np.where(present, SCATTERED_WEIGHT * word_sum, 0.0),
        )
        return score, present, in_phrase, content_sum


@dataclass(frozen=True)
class Semantic:
    """Sentence embeddings for hybrid ranking: unit vectors of the papers by paper id (computed
    once per paper and stored elsewhere), and a function encoding keywords the same way."""

    paper_vectors: Mapping[str, np.ndarray]
    encode: Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class _KeywordVectors:
    score: np.ndarray  # float32, log(1 + TITLE_WEIGHT * title + abstract), per paper
    words: np.ndarray  # float32, the same for its words one by one, whichever occur
    fields: np.ndarray  # uint8, 1 = whole in title, 2 = in abstract, 3 = both, SOME_WORDS = partly


class PaperIndex:
    """The papers of one batch, indexed once, against which many profiles are ranked.

    `papers` is held in tie-break order (upvotes descending, then title), so that a stable sort
    on score alone yields the full ranking order.
    """

    def __init__(self, papers: Sequence[Paper], semantic: Semantic | None = None) -> None:
        self.papers: tuple[Paper, ...] = tuple(
            sorted(papers, key=lambda paper: (-(paper.upvotes or 0), _fold(paper.title)))
        )
        titles = [tokenize(paper.title) for paper in self.papers]
        abstracts = [tokenize(paper.abstract) for paper in self.papers]
        self._title = _Field.from_tokens(titles)
        self._abstract = _Field.from_tokens(abstracts)
        texts = [f"{paper.title}. {paper.abstract}" for paper in self.papers]
        found = [acronyms.find_definitions(text) for text in texts]
        self._defined = [acronyms.definitions(pairs, tokenize) for pairs in found]
        self.acronyms = acronyms.merge(self._defined)
        self._written = acronyms.written_forms(chain.from_iterable(found), tokenize)
        self._hyphenated = _hyphenated_words(texts)
        groups = np.array(duplicate_groups(abstracts), dtype=np.intp)
        # Each group of near-duplicates with more than one member, as an array of positions.
        self.duplicate_sets: tuple[np.ndarray, ...] = tuple(
            np.flatnonzero(groups == group)
            for group in np.unique(groups)
            if np.count_nonzero(groups == group) > 1
        )
        self._spellings: dict[str, tuple[Spellings, frozenset[Terms]]] = {}
        self._terms: dict[Terms, _KeywordVectors] = {}
        self._keywords: dict[Spellings, _KeywordVectors] = {}
        self._excluded: dict[Spellings, np.ndarray] = {}
        self.semantic = semantic
        self._paper_matrix: np.ndarray | None = None
        self._cosines: dict[str, np.ndarray] = {}
        if semantic is not None and self.papers:
            vectors = [semantic.paper_vectors.get(paper.paper_id) for paper in self.papers]
            width = next((len(v) for v in vectors if v is not None), 0)
            zero = np.zeros(width, dtype=np.float32)  # a paper without a vector is like nothing
            self._paper_matrix = np.stack([zero if v is None else v for v in vectors]).astype(np.float32)

    @classmethod
    def build(cls, papers: Sequence[Paper], semantic: Semantic | None = None) -> PaperIndex:
        """Tokenise and index the title and abstract of every paper (and with `semantic`, line
        up their embeddings for hybrid ranking)."""
        return cls(papers, semantic)

    @property
    def hybrid(self) -> bool:
        return self._paper_matrix is not None

    def cosines(self, keywords: Sequence[str]) -> np.ndarray:
        """(keyword, paper) cosine similarities: a keyword's is the mean over its
        `embedded_texts`. Keywords are encoded once per index."""
        if self._paper_matrix is None or self.semantic is None:
            raise ValueError("this index has no embeddings")
        missing = [keyword for keyword in dict.fromkeys(keywords) if keyword not in self._cosines]
        if missing:
            texts = [self.embedded_texts(keyword) for keyword in missing]
            rows = self.semantic.encode([text for group in texts for text in group]) @ self._paper_matrix.T
            start = 0
            for keyword, group in zip(missing, texts):
                self._cosines[keyword] = rows[start : start + len(group)].mean(axis=0, dtype=np.float32)
                start += len(group)
        return np.stack([self._cosines[keyword] for keyword in keywords])

    def embedded_texts(self, keyword: str) -> tuple[str, ...]:
        """The texts a keyword is embedded from: as written and, where the papers abbreviate
        it ("mixture of experts" as MoE), abbreviated as they write it. The model places the
        acronyms of the field well and some written-out phrases badly ("mixture of experts"
        reads as ordinary words). Acronyms shorter than EMBEDDED_ACRONYM_LETTERS are left out:
        to the model "RL" or "SD" could mean anything. Acronyms are not written out: that
        measured worse (bench/relevance.py), the model knows "CoT" better than its expansion."""
        words = _TOKEN.findall(_fold(keyword))  # one per term of the keyword
        terms = keyword_terms(keyword)
        texts = [keyword]
        for spelled, introduced in self.spellings(keyword)[1:]:
            if introduced is None or len(introduced[0]) < EMBEDDED_ACRONYM_LETTERS:
                continue
            written = self._written.get(introduced)
            if written is None:
                continue
            before = _common_prefix(terms, spelled)
            after = _common_prefix(terms[before:][::-1], spelled[before:][::-1])
            texts.append(" ".join([*words[:before], written, *words[len(words) - after :]]))
        return tuple(dict.fromkeys(texts))

    def __len__(self) -> int:
        return len(self.papers)

    def spellings(self, keyword: str) -> Spellings:
        """The ways `keyword` is written in this batch: as given, with an acronym the papers
        define written out or a long form abbreviated, closed up ("multi-agent" as
        "multiagent") when a paper writes it so, and a word of it hyphenated ("pretraining" as
        "pre-training") when a paper hyphenates it so. Empty for a keyword without a word."""
        return self.spelled(keyword)[0]

    def spelled(self, keyword: str) -> tuple[Spellings, frozenset[Terms]]:
        """`spellings(keyword)`, and the set of their terms: keywords with the same set are
        one keyword ("LLM", "LLMs"; "MoE", "mixture of experts")."""
        found = self._spellings.get(keyword)
        if found is None:
            terms = keyword_terms(keyword)
            spelled = acronyms.spellings(terms, self.acronyms) if terms else ()
            closed = tuple(tokenize("".join(_TOKEN.findall(_fold(keyword)))))
            if len(terms) > 1 and len(closed) == 1 and self._has(closed[0]):
                spelled = (*spelled, (closed, None))
            for at, term in enumerate(terms):
                if term in self._hyphenated:
                    spelled = (*spelled, ((*terms[:at], *self._hyphenated[term], *terms[at + 1 :]), None))
            found = self._spellings[keyword] = (spelled, frozenset(t for t, _ in spelled))
        return found

    def _has(self, term: str) -> bool:
        return term in self._title or term in self._abstract

    def _term_vectors(self, terms: Terms) -> _KeywordVectors:
        vectors = self._terms.get(terms)
        if vectors is None:
            title, in_title, _, title_words = self._title.keyword_scores(terms)
            abstract, in_abstract, _, abstract_words = self._abstract.keyword_scores(terms)
            fields = in_title.astype(np.uint8) | (in_abstract.astype(np.uint8) << 1)
            words = TITLE_WEIGHT * title_words + abstract_words
            vectors = _KeywordVectors(
                score=np.log1p(TITLE_WEIGHT * title + abstract).astype(np.float32),
                words=np.log1p(words).astype(np.float32),
                fields=np.where((fields == 0) & (words > 0), SOME_WORDS, fields).astype(np.uint8),
            )
            self._terms[terms] = vectors
        return vectors

    def _defines_otherwise(self, short: Terms, terms: Terms) -> np.ndarray:
        """Papers that define acronym `short` as none of the long forms inside `terms`' other
        spellings: there, `short` means something else."""
        meant = _long_forms_of(terms, self.acronyms.get(short, frozenset()))
        return np.array(
            [short in defined and not defined[short] & meant for defined in self._defined],
            dtype=bool,
        )

    def keyword_vectors(self, spellings: Spellings) -> _KeywordVectors:
        """Score and matched fields of one keyword in every paper (cached per keyword): the
        best of its spellings, field by field; its words one by one as written."""
        vectors = self._keywords.get(spellings)
        if vectors is None:
            parts = []
            for terms, introduced in spellings:
                part = self._term_vectors(terms)
                if introduced is not None:
                    mute = self._defines_otherwise(introduced, spellings[0][0])
                    if mute.any():
                        part = _KeywordVectors(
                            np.where(mute, 0, part.score).astype(np.float32),
                            part.words,
                            np.where(mute, 0, part.fields).astype(np.uint8),
                        )
                parts.append(part)
            whole = np.bitwise_or.reduce([part.fields & WHOLE for part in parts], axis=0)
            vectors = _KeywordVectors(
                score=np.max([part.score for part in parts], axis=0),
                words=parts[0].words,
                fields=np.where(whole > 0, whole, parts[0].fields & SOME_WORDS).astype(np.uint8),
            )
            self._keywords[spellings] = vectors
        return vectors

    def excluded_by(self, spellings: Spellings) -> np.ndarray:
        """Papers where an exclude keyword occurs (in phrase, in any spelling) in the title or
        abstract."""
        mask = self._excluded.get(spellings)
        if mask is None:
            mask = np.zeros(len(self), dtype=bool)
            for terms, _ in spellings:
                mask |= self._title.keyword_scores(terms)[2] | self._abstract.keyword_scores(terms)[2]
            self._excluded[spellings] = mask
        return mask


def _hyphenated_words(texts: Iterable[str]) -> dict[str, Terms]:
    """The words the texts write with a hyphen, closed up and stemmed ("pretrain" for
    "pre-training"), each with its two halves as terms. A keyword word splits only where a
    paper hyphenates it: "notable" never becomes "not able"."""
    pairs = sorted({
        pair
        for text in texts
        for word in text.casefold().split()
        if "-" in word  # the regular expression on hyphenated words only: 4 times as fast
        for pair in _HYPHENATED.findall(word)
    })
    found: dict[str, Terms] = {}
    for (first, second), closed, halves in zip(
        pairs,
        map(tokenize, (first + second for first, second in pairs)),
        map(tokenize, (f"{first} {second}" for first, second in pairs)),
    ):
        if len(closed) == 1 and len(halves) == 2:
            found.setdefault(closed[0], tuple(halves))
    return found


def _common_prefix(first: Terms, second: Terms) -> int:
    """How many leading terms `first` and `second` share."""
    return next((at for at, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))


def _long_forms_of(terms: Terms, meanings: frozenset[Terms]) -> frozenset[Terms]:
    """The long forms among `meanings` that occur inside `terms`."""
    width = len(terms)
    return frozenset(
        long
        for long in meanings
        if any(terms[at : at + len(long)] == long for at in range(width - len(long) + 1))
    )


def _profile_keywords(index: PaperIndex, keywords: Sequence[str]) -> list[tuple[str, Spellings]]:
    """Keywords with their spellings; those without any token, or another spelling of an
    earlier keyword ("LLMs" after "LLM", "MoE" after "mixture of experts"), are left out."""
    seen: dict[frozenset[Terms], tuple[str, Spellings]] = {}
    for keyword in keywords:
        spellings, key = index.spelled(keyword)
        if key and key not in seen:
            seen[key] = (keyword, spellings)
    return list(seen.values())


@lru_cache(maxsize=65536)
def _explanation(keywords: tuple[str, ...], pattern: bytes) -> tuple[KeywordMatch, ...]:
    """The `matched` tuple for one pattern of field codes, one byte per keyword (papers with
    the same pattern share one tuple; bytes past the profile's keywords are padding)."""
    return tuple([_keyword_match(keyword, code) for keyword, code in zip(keywords, pattern) if code])


@lru_cache(maxsize=65536)
def _keyword_match(keyword: str, code: int) -> KeywordMatch:
    """One shared (immutable) KeywordMatch per keyword and field code."""
    return KeywordMatch(keyword, _FIELD_NAMES[code])


def _rank_chunk(
    index: PaperIndex, profiles: Sequence[Profile], max_papers: int, picks_only: bool
) -> list[list[Ranked]]:
    """The rules of the module docstring, as array operations over (profile, keyword, paper)."""
    keyword_lists = [_profile_keywords(index, profile.keywords) for profile in profiles]
    width = max(map(len, keyword_lists), default=0)
    if not len(index) or not width:
        return [[] for _ in profiles]
    # Each distinct keyword of the chunk is one row of a matrix; profiles gather their rows
    # (padding with an all-zero last row) into (profile, keyword, paper) arrays.
    slots: dict[Spellings, int] = {}
    slot_of = np.full((len(profiles), width), -1, dtype=np.intp)
    for row, keywords in enumerate(keyword_lists):
        slot_of[row, : len(keywords)] = [slots.setdefault(t, len(slots)) for _, t in keywords]
    vectors = [index.keyword_vectors(terms) for terms in slots]
    zeros = np.zeros(len(index), dtype=np.float32)
    scores = np.stack([v.score for v in vectors] + [zeros])[slot_of]
    words = np.stack([v.words for v in vectors] + [zeros])[slot_of]
    fields = np.stack([v.fields for v in vectors] + [zeros.astype(np.uint8)])[slot_of]
    allowed = np.ones((len(profiles), len(index)), dtype=bool)
    for row, profile in enumerate(profiles):
        for spellings in {index.spellings(keyword) for keyword in profile.exclude} - {()}:
            allowed[row] &= ~index.excluded_by(spellings)

    best = scores.max(axis=1)
    total = (
        best.astype(np.float64)
        + SECONDARY_WEIGHT * (scores.sum(axis=1) - best)
        + WORDS_WEIGHT * words.sum(axis=1)
    )
    total = np.round(total, SCORE_DECIMALS)
    keep = allowed & (total > 0)
    eligible = np.asarray((fields & WHOLE).any(axis=1))
    floor_fraction = FLOOR_FRACTION
    if index.hybrid:
        texts = [""] * len(slots)
        for keywords in keyword_lists:
            for keyword, spellings in keywords:
                texts[slots[spellings]] = texts[slots[spellings]] or keyword
        cosines = index.cosines(texts)
        total, keep, eligible = _fuse(total, keep, allowed, eligible, cosines, slot_of, fields)
        floor_fraction = HYBRID_FLOOR_FRACTION
    _keep_one_of_each_duplicate_set(index, total, keep)
    profile_best = np.where(keep, total, 0).max(axis=1, keepdims=True)
    above_floor = keep & eligible & (total >= floor_fraction * profile_best)
    order, picked, selected = _order(total, keep, above_floor, max_papers, picks_only)

    # Everything selected, in (profile, rank) order, turned into Python values in one go.
    rows, ranks = np.nonzero(selected)
    papers_at = order[rows, ranks]
    patterns = fields[rows, :, papers_at]
    # "some words" explains only a paper that holds no keyword whole: beside a whole match it
    # would be noise in the email.
    patterns[(patterns & WHOLE).any(axis=1)] &= ~np.uint8(SOME_WORDS)
    patterns_blob = np.ascontiguousarray(patterns).tobytes()
    columns = zip(
        papers_at.tolist(),
        total[rows, papers_at].tolist(),
        [patterns_blob[start : start + width] for start in range(0, len(patterns_blob), width)],
        picked[rows, ranks].tolist(),
    )
    papers = index.papers
    results = []
    for keywords, count in zip(keyword_lists, selected.sum(axis=1).tolist()):
        names = tuple(keyword for keyword, _ in keywords)
        results.append(
            [
                Ranked(papers[at], score, _explanation(names, pattern), is_picked)
                for at, score, pattern, is_picked in islice(columns, count)
            ]
        )
    return results


def _fuse(
    lexical: np.ndarray,
    keep: np.ndarray,
    allowed: np.ndarray,
    whole: np.ndarray,
    cosines: np.ndarray,
    slot_of: np.ndarray,
    fields: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid (score, kept, eligible for the picks), each (profile, paper); marks in `fields`
    the closest keyword of papers eligible for their meaning alone.

    A paper's similarity to a profile is its mean cosine to the profile's keywords (each
    keyword embedded as `PaperIndex.embedded_texts` says). Both scores are made relative to
    the profile before they are added: the lexical one to the profile's best lexical paper,
    the semantic one between the profile's median paper (0) and its closest paper (1), since
    cosines of a short keyword and of a long one live on different scales. A paper without
    any keyword word is kept when its semantic score is high enough and it is at least as
    close in meaning as the profile's best lexical match; a profile with no lexical match at
    all keeps nothing, so a day with nothing relevant still mails no filler. A paper is
    eligible for the picks when a keyword occurs whole in it, or when its semantic score
    reaches SEMANTIC_PICK.
    """
    valid = slot_of >= 0
    # The mean over each profile's keywords, as one product: (profile, slot) weights 1/k.
    weights = np.zeros((len(slot_of), len(cosines)), dtype=np.float32)
    rows, columns = np.nonzero(valid)
    weights[rows, slot_of[rows, columns]] = 1 / valid.sum(axis=1)[rows]
    similarity = weights @ cosines
    median = _row_medians(similarity)
    spread = np.maximum(similarity.max(axis=1, keepdims=True) - median, _TINY)
    semantic = np.clip((similarity - median) / spread, 0, 1)

    lexical_best = np.where(keep, lexical, 0).max(axis=1, keepdims=True)
    # The paper that best matches the words anchors what "close in meaning" is for this
    # profile today; none at all means nothing relevant today.
    anchor = np.where(keep, lexical, -1).argmax(axis=1)[:, None]
    anchor_similarity = np.take_along_axis(similarity, anchor, axis=1)
    meaning_only = (
        allowed & ~keep & (lexical_best > 0) & (semantic >= SEMANTIC_ONLY_FLOOR)
        & (similarity >= ANCHOR_FRACTION * anchor_similarity)
    )
    kept = keep | meaning_only
    hybrid = np.where(keep, lexical / np.maximum(lexical_best, _TINY), 0) + SEMANTIC_WEIGHT * semantic
    hybrid = np.round(np.where(kept, hybrid, 0), SCORE_DECIMALS)
    by_meaning = kept & ~whole & (semantic >= SEMANTIC_PICK)
    rows, papers = np.nonzero(by_meaning)
    if rows.size:
        per_keyword = cosines[np.where(valid, slot_of, 0)[rows], papers[:, None]]
        nearest = np.where(valid[rows], per_keyword, -np.inf).argmax(axis=1)
        fields[rows, nearest, papers] |= SIMILAR
    return hybrid, kept, whole | by_meaning


def _row_medians(values: np.ndarray) -> np.ndarray:
    """`np.median(values, axis=1, keepdims=True)`, four times as fast: numpy sorts float32
    rows with SIMD, while the partition behind `np.median` selects element by element."""
    ordered = np.sort(values, axis=1)
    middle = values.shape[1] // 2
    return (ordered[:, (values.shape[1] - 1) // 2] + ordered[:, middle])[:, None] / 2


def _keep_one_of_each_duplicate_set(index: PaperIndex, total: np.ndarray, keep: np.ndarray) -> None:
    """Of near-duplicate papers still kept, only the best-ranked stays (in place, per profile):
    the same work never appears twice. Positions break ties, as in the ranking order."""
    for members in index.duplicate_sets:
        scores = np.where(keep[:, members], total[:, members], -np.inf)
        best = members[np.argmax(scores, axis=1)]  # first of equals: the earlier position
        keep[:, members] &= members[None, :] == best[:, None]


def _order(
    total: np.ndarray, keep: np.ndarray, above_floor: np.ndarray, max_papers: int, picks_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(paper positions in rank order, picked, selected for output), each (profile, rank).

    Papers are stored in tie-break order, so the key (score in units of the last decimal kept,
    then position) is unique and any sort gives the ranking order. For the picks alone, a
    partition finds the `max_papers` best papers above the floor and only those are sorted.
    """
    papers = total.shape[1]
    positions = np.arange(papers, dtype=np.int64)
    sort_key = -np.rint(total * 10**SCORE_DECIMALS).astype(np.int64) * papers + positions
    last = np.iinfo(np.int64).max
    if picks_only:
        cut = min(max_papers, papers)
        key = np.where(above_floor, sort_key, last)
        order = np.argpartition(key, cut - 1, axis=1)[:, :cut] if cut else key[:, :0]
        order = np.take_along_axis(order, np.argsort(np.take_along_axis(key, order, 1), 1), 1)
        picked = np.take_along_axis(key, order, axis=1) < last
        return order, picked, picked
    order = np.argsort(np.where(keep, sort_key, last), axis=1)
    above_floor = np.take_along_axis(above_floor, order, axis=1)
    picked = above_floor & (np.cumsum(above_floor, axis=1) <= max_papers)
    return order, picked, positions < keep.sum(axis=1, keepdims=True)


def rank_many(
    index: PaperIndex, profiles: Sequence[Profile], *, max_papers: int, picks_only: bool = False
) -> list[list[Ranked]]:
    """`rank` for many profiles at once, vectorised in chunks of BATCH_PROFILES profiles.

    With `picks_only`, each list holds only the picks: what a digest needs, at a fraction of
    the cost of building a `Ranked` for every matching paper.
    """
    if max_papers < 0:
        raise ValueError(f"max_papers must be 0 or more, not {max_papers}")
    results: list[list[Ranked]] = []
    for start in range(0, len(profiles), BATCH_PROFILES):
        chunk = profiles[start : start + BATCH_PROFILES]
        results.extend(_rank_chunk(index, chunk, max_papers, picks_only))
    return results


def rank(index: PaperIndex, profile: Profile, *, max_papers: int) -> list[Ranked]:
    """Every paper that matched a keyword, best first, the picks marked `picked`.

    Papers matching an `exclude` keyword are left out of the result altogether.
    """
    return rank_many(index, [profile], max_papers=max_papers)[0]


def rank_papers(
    papers: Sequence[Paper], profile: Profile, *, max_papers: int, semantic: Semantic | None = None
) -> list[Ranked]:
    """Index `papers` and rank them for one profile (use `PaperIndex` for many profiles)."""
    return rank(PaperIndex.build(papers, semantic), profile, max_papers=max_papers)
