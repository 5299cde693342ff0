"""The papers of one batch, indexed once, against which many profiles are ranked.

`PaperIndex` owns what is computed once per batch of papers: the BM25 fields, the acronyms the
papers define and the spellings of keywords they imply, near-duplicate groups, the papers'
embeddings (hybrid) and per-keyword score vectors, cached so that a keyword shared by many
subscribers is scored once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from newsletter import acronyms
from newsletter.duplicates import duplicate_groups_numbered
from newsletter.models import Paper
from newsletter.ranking.field import Field
from newsletter.ranking.text import TOKEN, Terms, acronym_words, fold, hyphenated_words, keyword_terms, tokenize

TITLE_WEIGHT = 2.5  # a title term counts this many times an abstract term
EMBEDDED_ACRONYM_LETTERS = 3  # a keyword is also embedded abbreviated by an acronym this long
WHOLE = 3  # field codes 1 (title), 2 (abstract) and 3 (both): the keyword occurs whole
SIMILAR = 4  # field code of a keyword a paper matched only in meaning (hybrid ranking)
SOME_WORDS = 8  # field code of a keyword only some of whose words occur
MOST_WORDS = 32  # field code of a long keyword most of whose words occur in one field
LONG_KEYWORD_WORDS = 3  # a keyword of this many content words or more is written as a sentence ...
MOST_WORDS_FRACTION = 0.6  # ... and this share of them in the title or abstract makes it eligible

Spellings = tuple[acronyms.Spelling, ...]


@dataclass(frozen=True)
class Semantic:
    """Sentence embeddings for hybrid ranking: unit vectors of the papers by paper id (computed
    once per paper and stored elsewhere), and a function encoding keywords the same way (or
    looking them up: a row of NaN for a text it has no vector for)."""

    paper_vectors: Mapping[str, np.ndarray]
    encode: Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class KeywordVectors:
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
            sorted(papers, key=lambda paper: (-(paper.upvotes or 0), fold(paper.title)))
        )
        self.listing: tuple[Paper, ...] = tuple(papers)  # as given: the order of the listing
        titles = [tokenize(paper.title) for paper in self.papers]
        abstracts = [tokenize(paper.abstract) for paper in self.papers]
        self._title = Field.from_tokens(titles)
        self._abstract = Field.from_tokens(abstracts)
        texts = [f"{paper.title}. {paper.abstract}" for paper in self.papers]
        found = [acronyms.find_definitions(text) for text in texts]
        self._defined = [acronyms.definitions(pairs, tokenize) for pairs in found]
        self.acronyms = acronyms.merge(self._defined)
        self._written = acronyms.written_forms(chain.from_iterable(found), tokenize)
        self._hyphenated = hyphenated_words(texts)
        groups = np.array(duplicate_groups_numbered(*self._abstract.numbered), dtype=np.intp)
        # Each group of near-duplicates with more than one member, as an array of positions.
        numbers, sizes = np.unique(groups, return_counts=True)
        self.duplicate_sets: tuple[np.ndarray, ...] = tuple(
            np.flatnonzero(groups == group) for group in numbers[sizes > 1]
        )
        self._authors = [frozenset(map(author_key, paper.authors)) for paper in self.papers]
        self._by_author: dict[str, np.ndarray] = {}
        self._spellings: dict[str, tuple[Spellings, frozenset[Terms]]] = {}
        self._terms: dict[Terms, KeywordVectors] = {}
        self._keywords: dict[tuple[Spellings, frozenset[str]], KeywordVectors] = {}
        self._written_words: list[frozenset[str]] | None = None  # acronyms per paper, on first need
        self._writing: dict[frozenset[str], np.ndarray] = {}
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

    @property
    def dimension(self) -> int:
        return 0 if self._paper_matrix is None else int(self._paper_matrix.shape[1])

    def vectors_of(self, paper_ids: Iterable[str]) -> np.ndarray:
        """The embeddings of these papers, in this batch or not (those `Semantic` holds)."""
        if self.semantic is None or not self.dimension:
            return np.zeros((0, self.dimension), dtype=np.float32)
        found = [self.semantic.paper_vectors.get(paper_id) for paper_id in paper_ids]
        rows = [vector for vector in found if vector is not None and len(vector) == self.dimension]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dimension), np.float32)

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        """(row, paper) dot products of `vectors` with the papers' embeddings."""
        if self._paper_matrix is None:
            raise ValueError("this index has no embeddings")
        return vectors @ self._paper_matrix.T

    def by_author(self, name: str) -> np.ndarray:
        """Papers one of whose named authors is `name` (case, accents and punctuation aside).
        Papers whose dump gives only a count of authors never match."""
        key = author_key(name)
        found = self._by_author.get(key)
        if found is None:
            found = np.array([key in authors for authors in self._authors], dtype=bool) if key else (
                np.zeros(len(self), dtype=bool)
            )
            self._by_author[key] = found
        return found

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
                # A text the encoder does not know (a NaN row: not in the store) is left out.
                known = rows[start : start + len(group)]
                known = known[~np.isnan(known).any(axis=1)]
                self._cosines[keyword] = (
                    known.mean(axis=0, dtype=np.float32) if len(known) else np.zeros(len(self), np.float32)
                )
                start += len(group)
        return np.stack([self._cosines[keyword] for keyword in keywords])

    def embedded_texts(self, keyword: str) -> tuple[str, ...]:
        """The texts a keyword is embedded from: as written and, where the papers abbreviate
        it ("mixture of experts" as MoE), abbreviated as they write it. The model places the
        acronyms of the field well and some written-out phrases badly ("mixture of experts"
        reads as ordinary words). Acronyms shorter than EMBEDDED_ACRONYM_LETTERS are left out:
        to the model "RL" or "SD" could mean anything. Acronyms are not written out: that
        measured worse (bench/relevance.py), the model knows "CoT" better than its expansion."""
        words = TOKEN.findall(fold(keyword))  # one per term of the keyword
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
            closed = tuple(tokenize("".join(TOKEN.findall(fold(keyword)))))
            if len(terms) > 1 and len(closed) == 1 and self._has(closed[0]):
                spelled = (*spelled, (closed, None))
            for at, term in enumerate(terms):
                if term in self._hyphenated:
                    spelled = (*spelled, ((*terms[:at], *self._hyphenated[term], *terms[at + 1 :]), None))
            found = self._spellings[keyword] = (spelled, frozenset(t for t, _ in spelled))
        return found

    def _has(self, term: str) -> bool:
        return term in self._title or term in self._abstract

    def _term_vectors(self, terms: Terms) -> KeywordVectors:
        vectors = self._terms.get(terms)
        if vectors is None:
            title, in_title, title_phrase, title_words = self._title.keyword_scores(terms)
            abstract, in_abstract, abstract_phrase, abstract_words = self._abstract.keyword_scores(terms)
            # Where the keyword is in phrase, if anywhere, is where the card says it matched:
            # its words apart in the title must not name the title beside a phrase elsewhere.
            fields = in_title.astype(np.uint8) | (in_abstract.astype(np.uint8) << 1)
            phrase = title_phrase.astype(np.uint8) | (abstract_phrase.astype(np.uint8) << 1)
            fields = np.where(phrase > 0, phrase, fields)
            words = TITLE_WEIGHT * title_words + abstract_words
            fields = np.where((fields == 0) & (words > 0), SOME_WORDS, fields)
            content = [t for t in dict.fromkeys(terms) if t not in acronyms.FUNCTION_WORDS]
            if MOST_WORDS_FRACTION and len(content) >= LONG_KEYWORD_WORDS:
                # A keyword written as a phrase of its own ("memory beyond the context window")
                # rarely occurs whole: most of its words in one field make the paper eligible.
                share = np.maximum(self._title.content_fraction(terms), self._abstract.content_fraction(terms))
                fields = np.where((fields == SOME_WORDS) & (share >= MOST_WORDS_FRACTION), MOST_WORDS, fields)
            vectors = KeywordVectors(
                score=np.log1p(TITLE_WEIGHT * title + abstract).astype(np.float32),
                words=np.log1p(words).astype(np.float32),
                fields=fields.astype(np.uint8),
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

    def keyword_vectors(self, spellings: Spellings, acronyms_written: frozenset[str] = frozenset()) -> KeywordVectors:
        """Score and matched fields of one keyword in every paper (cached per keyword): the
        best of its spellings, field by field; its words one by one as written.

        `acronyms_written` (`text.acronym_words` of the keyword): words the keyword writes as
        acronyms; those the batch's papers also write as acronyms are matched, as written, only
        where a paper writes them so ("CLIP" in "CLIP's encoder", not in "gradient clipping",
        though both stem to "clip"). Its other spellings (the acronym written out) are not
        affected."""
        vectors = self._keywords.get((spellings, acronyms_written))
        if vectors is None:
            parts = []
            for at, (terms, introduced) in enumerate(spellings):
                part = self._term_vectors(terms)
                if introduced is not None:
                    mute = self._defines_otherwise(introduced, spellings[0][0])
                    if mute.any():
                        part = KeywordVectors(
                            np.where(mute, 0, part.score).astype(np.float32),
                            part.words,
                            np.where(mute, 0, part.fields).astype(np.uint8),
                        )
                elif at == 0 and acronyms_written:
                    # A word in capitals is an acronym where some paper writes it so ("CLIP");
                    # a keyword typed in capitals ("TEST-TIME") says nothing by its case.
                    written = frozenset(w for w in acronyms_written if self.writing(frozenset({w})).any())
                    mute = ~self.writing(written)
                    if written and mute.any():
                        # There the keyword holds only its other words, if any ("some words").
                        acronym_terms = {term for word in written for term in tokenize(word)}
                        rest = tuple(term for term in terms if term not in acronym_terms)
                        rest_words = self._term_vectors(rest).words if rest else np.zeros(len(self), np.float32)
                        part = KeywordVectors(
                            np.where(mute, 0, part.score).astype(np.float32),
                            np.where(mute, rest_words, part.words).astype(np.float32),
                            np.where(mute, np.where(rest_words > 0, SOME_WORDS, 0), part.fields).astype(np.uint8),
                        )
                parts.append(part)
            whole = np.bitwise_or.reduce([part.fields & WHOLE for part in parts], axis=0)
            vectors = KeywordVectors(
                score=np.max([part.score for part in parts], axis=0),
                words=parts[0].words,
                fields=np.where(whole > 0, whole, parts[0].fields & (SOME_WORDS | MOST_WORDS)).astype(np.uint8),
            )
            self._keywords[(spellings, acronyms_written)] = vectors
        return vectors

    def writing(self, words: frozenset[str]) -> np.ndarray:
        """Papers whose title or abstract writes every one of `words` as an acronym
        (`text.acronym_words`)."""
        found = self._writing.get(words)
        if found is None:
            if self._written_words is None:
                self._written_words = [acronym_words(f"{p.title} {p.abstract}") for p in self.papers]
            found = self._writing[words] = np.array([words <= had for had in self._written_words], dtype=bool)
        return found

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


def author_key(name: str) -> str:
    """An author's name as compared: folded words ("Yann LeCun" == "yann lecun" == "Yann  LeCun")."""
    return " ".join(TOKEN.findall(fold(name)))
