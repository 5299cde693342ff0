"""Scoring profiles against a `PaperIndex` and choosing the picks, as array operations.

`rank_many` scores a chunk of profiles as (profile, keyword, paper) arrays, with no loop over
profile x paper; `rank` and `rank_papers` are its one-profile forms. The rules are in the
docstring of `newsletter.ranking`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat

import numpy as np

from newsletter.models import KeywordMatch, Paper, Ranked
from newsletter.ranking import fusion
from newsletter.ranking.fusion import SCORE_DECIMALS
from newsletter.ranking.index import MOST_WORDS, SIMILAR, SOME_WORDS, WHOLE, PaperIndex, Semantic, Spellings, Terms
from newsletter.ranking.text import acronym_words

SECONDARY_WEIGHT = 0.5  # each keyword beyond a paper's best one counts this much
WORDS_WEIGHT = 0.5  # each keyword's words, counted one by one wherever they occur
FLOOR_FRACTION = 0.3  # picks score at least this fraction of the profile's best paper
BATCH_PROFILES = 128  # profiles scored together by `rank_many` (bounds its memory)
AUTHOR = 16  # field code of a followed author (a "keyword" slot of its own)
LIKE_WEIGHT = 0.5  # how far "more like this" pulls toward the liked papers (a cosine weight)
DISLIKE_WEIGHT = 0.25  # how far "less like this" pushes away from the disliked ones
_FIELD_NAMES = {
    1: ("title",), 2: ("abstract",), 3: ("title", "abstract"), AUTHOR: ("author",),
    SIMILAR: ("similar meaning",), SOME_WORDS: ("some words",),
    SIMILAR | SOME_WORDS: ("similar meaning", "some words"),
    MOST_WORDS: ("most words",), SIMILAR | MOST_WORDS: ("similar meaning", "most words"),
}


@dataclass(frozen=True)
class Profile:
    """What one subscriber wants: keywords to rank by, keywords whose papers are never picked,
    authors whose papers are always picked, and the papers they voted on ("more like this":
    `liked`, "less like this": `disliked`, by paper id; they tune the hybrid ranking)."""

    keywords: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    liked: frozenset[str] = frozenset()
    disliked: frozenset[str] = frozenset()


@lru_cache(maxsize=65536)
def _acronyms_of(keyword: str) -> frozenset[str]:
    """`acronym_words` of a keyword, once per keyword per process (keywords recur)."""
    return acronym_words(keyword)


@lru_cache(maxsize=65536)
def _keyword_match(keyword: str, code: int) -> KeywordMatch:
    """One shared (immutable) KeywordMatch per keyword and field code."""
    return KeywordMatch(keyword, _FIELD_NAMES[code])


@dataclass(frozen=True)
class _Slots:
    """Every distinct keyword of a batch of profiles as one row of each matrix, made once per
    `rank_many`; the last row is all zeros (padding). A slot is a keyword's spellings and the
    words it writes as acronyms ("CLIP" and "clip" share spellings, not a slot: only "clip"
    matches "clipping")."""

    keywords: list[list[tuple[str, Spellings]]]  # per profile: (keyword, spellings), deduplicated
    rows: list[list[int]]  # per profile: the slot of each of those keywords
    scores: np.ndarray  # (slot + 1, paper) float32
    words: np.ndarray  # (slot + 1, paper) float32
    fields: np.ndarray  # (slot + 1, paper) uint8
    allowed: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)  # per exclude list
    names: dict[str, int] = field(default_factory=dict)  # keywords as written, and authors: numbers
    explained: dict[bytes, tuple[KeywordMatch, ...]] = field(default_factory=dict)  # see `_explain`


def _slots(index: PaperIndex, profiles: Sequence[Profile]) -> _Slots:
    """Each profile's keywords with their spellings, and their slots. A keyword without any
    token, or another spelling of an earlier keyword of the profile ("LLMs" after "LLM", "MoE"
    after "mixture of experts"), is left out. Each keyword as written is looked at once."""
    slots: dict[tuple[Spellings, frozenset[str]], int] = {}
    known: dict[str, tuple[frozenset[Terms], Spellings, int]] = {}  # keyword -> (key, spellings, slot)
    keyword_lists: list[list[tuple[str, Spellings]]] = []
    rows: list[list[int]] = []
    for profile in profiles:
        seen: dict[frozenset[Terms], tuple[str, Spellings]] = {}
        row = []
        for keyword in profile.keywords:
            found = known.get(keyword)
            if found is None:
                spellings, key = index.spelled(keyword)
                slot = slots.setdefault((spellings, _acronyms_of(keyword)), len(slots)) if key else -1
                found = known[keyword] = (key, spellings, slot)
            key, spellings, slot = found
            if key and key not in seen:
                seen[key] = (keyword, spellings)
                row.append(slot)
        keyword_lists.append(list(seen.values()))
        rows.append(row)
    vectors = [index.keyword_vectors(spellings, written) for spellings, written in slots]
    zeros = np.zeros(len(index), dtype=np.float32)
    return _Slots(
        keyword_lists, rows,
        np.stack([v.score for v in vectors] + [zeros]),
        np.stack([v.words for v in vectors] + [zeros]),
        np.stack([v.fields for v in vectors] + [zeros.astype(np.uint8)]),
    )


def _rank_chunk(
    index: PaperIndex, profiles: Sequence[Profile], keyword_lists: Sequence[list[tuple[str, Spellings]]],
    slot_rows: Sequence[list[int]], table: _Slots, max_papers: int, picks_only: bool,
) -> list[list[Ranked]]:
    """The rules of the module docstring, as array operations over (profile, keyword, paper):
    profiles gather their keywords' rows of `table` (padding reads its all-zero last row)."""
    author_lists = [tuple(dict.fromkeys(profile.authors)) for profile in profiles]
    width = max(map(len, keyword_lists), default=0)
    authors_width = max(map(len, author_lists), default=0)
    if not len(index) or not (width or authors_width):
        return [[] for _ in profiles]
    width = max(width, 1)  # a profile of authors alone still has one (empty) keyword slot
    slot_of = np.full((len(profiles), width), -1, dtype=np.intp)
    for row, slots in enumerate(slot_rows):
        slot_of[row, : len(slots)] = slots
    scores = table.scores[slot_of]
    words = table.words[slot_of]
    fields = table.fields[slot_of]
    allowed = np.ones((len(profiles), len(index)), dtype=bool)
    for row, profile in enumerate(profiles):
        if profile.exclude:
            mask = table.allowed.get(profile.exclude)
            if mask is None:
                mask = table.allowed[profile.exclude] = _allowed_by(index, profile.exclude)
            allowed[row] = mask

    best = scores.max(axis=1)
    total = (
        best.astype(np.float64)
        + SECONDARY_WEIGHT * (scores.sum(axis=1) - best)
        + WORDS_WEIGHT * words.sum(axis=1)
    )
    total = np.round(total, SCORE_DECIMALS)
    keep = allowed & (total > 0)
    eligible = np.asarray((fields & (WHOLE | MOST_WORDS)).any(axis=1))
    floor_fraction = FLOOR_FRACTION
    if index.hybrid and any(keyword_lists):
        cosines, cosine_of = _chunk_cosines(index, keyword_lists, slot_of.shape)
        pull = _vote_pull(index, profiles) if any(p.liked or p.disliked for p in profiles) else None
        total, keep, eligible = fusion.fuse(total, keep, allowed, eligible, cosines, cosine_of, fields, pull)
        floor_fraction = fusion.HYBRID_FLOOR_FRACTION
    _keep_one_of_each_duplicate_set(index, total, keep)
    profile_best = np.where(keep, total, 0).max(axis=1, keepdims=True)
    above_floor = keep & eligible & (total >= floor_fraction * profile_best)
    if authors_width:
        author_fields = np.zeros((len(profiles), authors_width, len(index)), dtype=np.uint8)
        for row, names in enumerate(author_lists):
            for column, name in enumerate(names):
                author_fields[row, column] = np.where(index.by_author(name), AUTHOR, 0)
        followed = allowed & author_fields.any(axis=1)
        # A followed author's paper is picked whatever its keywords say, ahead of the rest;
        # the floor of the others stays where their own best paper puts it.
        lift = np.maximum(profile_best, 1.0)
        total = np.where(followed, np.round(total + lift, SCORE_DECIMALS), total)
        keep |= followed
        above_floor |= followed
        fields = np.concatenate([fields, author_fields], axis=1)
        width += authors_width
    order, picked, selected = _order(total, keep, above_floor, max_papers, picks_only)

    # Everything selected, in (profile, rank) order, turned into Python values in one go.
    rows, ranks = np.nonzero(selected)
    papers_at = order[rows, ranks]
    patterns = fields[rows, :, papers_at]
    # "some words" explains only a paper that holds no keyword whole: beside a whole match it
    # would be noise in the email.
    patterns[(patterns & WHOLE).any(axis=1)] &= ~np.uint8(SOME_WORDS | MOST_WORDS)
    counts = selected.sum(axis=1).tolist()
    keyword_width = width - authors_width
    named = np.full((len(profiles), width), -1, dtype=np.int64)  # (profile, column): name number
    for row, (keywords, authors) in enumerate(zip(keyword_lists, author_lists)):
        named[row, : len(keywords)] = [table.names.setdefault(keyword, len(table.names)) for keyword, _ in keywords]
        if authors:
            named[row, keyword_width : keyword_width + len(authors)] = [
                table.names.setdefault(author, len(table.names)) for author in authors
            ]
    # The `Ranked` values built by map and zip, with no Python-level step per paper (~80,000
    # picks on a 10,000-subscriber day): tuple.__new__ itself, not the named tuple's __new__.
    made = list(map(tuple.__new__, repeat(Ranked), zip(
        map(index.papers.__getitem__, papers_at.tolist()),
        total[rows, papers_at].tolist(),
        _explain(table, named[rows], patterns),
        picked[rows, ranks].tolist(),
    )))
    results = []
    start = 0
    for count in counts:
        results.append(made[start : start + count])
        start += count
    return results


def _chunk_cosines(
    index: PaperIndex, keyword_lists: Sequence[list[tuple[str, Spellings]]], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(keyword, paper) cosines of the chunk's keywords, and each (profile, column)'s row in
    them (-1: padding). Keywords of one slot share the row of the first one written in the
    chunk, whose text is embedded: as the ranker always did, so that hybrid rankings stay
    the same to the last bit (which keywords are embedded together decides the last bits of
    their cosines)."""
    rows: dict[tuple[Spellings, frozenset[str]], int] = {}
    texts: list[str] = []
    cosine_of = np.full(shape, -1, dtype=np.intp)
    for row, keywords in enumerate(keyword_lists):
        for column, (keyword, spellings) in enumerate(keywords):
            at = rows.setdefault((spellings, _acronyms_of(keyword)), len(texts))
            if at == len(texts):
                texts.append(keyword)
            cosine_of[row, column] = at
    return index.cosines(texts), cosine_of


def _explain(table: _Slots, named: np.ndarray, patterns: np.ndarray) -> list[tuple[KeywordMatch, ...]]:
    """The `matched` tuple of each selected paper, from its (name number, field code) per
    column: the (name, code) pairs of its columns with a code, in order, say it all. Papers
    with the same pairs, whatever their profiles, share one tuple: a 10,000-subscriber day's
    80,000 picks have 10,000 distinct ones."""
    holds = patterns != 0
    flat = named[holds] << 8 | patterns[holds]  # row by row, columns in order
    pairs = flat.tobytes()
    ends = np.cumsum(holds.sum(axis=1)).tolist()
    starts = [0, *ends[:-1]]
    keys = list(map(pairs.__getitem__, map(slice, [8 * at for at in starts], [8 * at for at in ends])))
    matched = list(map(table.explained.get, keys))
    missing = [at for at, found in enumerate(matched) if found is None]
    if missing:
        names, codes = list(table.names), flat.tolist()
        for at in missing:
            found = table.explained.get(keys[at])  # an earlier paper may have just made it
            if found is None:
                found = table.explained[keys[at]] = tuple([
                    _keyword_match(names[pair >> 8], pair & 0xFF) for pair in codes[starts[at] : ends[at]]
                ])
            matched[at] = found
    return matched


def _allowed_by(index: PaperIndex, exclude: tuple[str, ...]) -> np.ndarray:
    """Papers no keyword of `exclude` names (see `PaperIndex.excluded_by`)."""
    allowed = np.ones(len(index), dtype=bool)
    for spellings in {index.spellings(keyword) for keyword in exclude} - {()}:
        allowed &= ~index.excluded_by(spellings)
    return allowed


def _vote_pull(index: PaperIndex, profiles: Sequence[Profile]) -> np.ndarray:
    """(profile, paper): LIKE_WEIGHT x the mean cosine to the liked papers - DISLIKE_WEIGHT x
    the mean cosine to the disliked ones; 0 for a profile without votes. `fusion.fuse` adds it to the similarity
    of the paper to the profile's keywords (Rocchio's query update, on embeddings)."""
    pull = np.zeros((len(profiles), len(index)), dtype=np.float32)
    for row, profile in enumerate(profiles):
        for ids, weight in ((profile.liked, LIKE_WEIGHT), (profile.disliked, -DISLIKE_WEIGHT)):
            vectors = index.vectors_of(ids)
            if len(vectors):
                pull[row] += weight * index.similarity(vectors).mean(axis=0)
    return pull


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
    if not len(index):
        return [[] for _ in profiles]
    # A lexical ranking depends on nothing but the profile: equal profiles (one keyword each,
    # often the same) are ranked once, and profiles are ranked in chunks of equal width
    # (keywords, then followed authors), so that no chunk gathers arrays as wide as its
    # widest profile for all of them. In hybrid ranking the chunks stay the profiles as
    # given, BATCH_PROFILES at a time: what a chunk embeds together decides the last bits of
    # its cosines, and which keyword text stands for a slot (`_chunk_cosines`).
    distinct: dict[Profile, int] = {}
    which = (
        list(range(len(profiles))) if index.hybrid
        else [distinct.setdefault(profile, len(distinct)) for profile in profiles]
    )
    unique = list(profiles) if index.hybrid else list(distinct)
    table = _slots(index, unique)
    order = list(range(len(unique))) if index.hybrid else sorted(
        range(len(unique)), key=lambda at: (len(table.keywords[at]), len(set(unique[at].authors)))
    )
    ranked: list[list[Ranked]] = [[] for _ in unique]
    for start in range(0, len(order), BATCH_PROFILES):
        chunk = order[start : start + BATCH_PROFILES]
        results = _rank_chunk(
            index, [unique[at] for at in chunk], [table.keywords[at] for at in chunk],
            [table.rows[at] for at in chunk], table, max_papers, picks_only,
        )
        for at, result in zip(chunk, results):
            ranked[at] = result
    given = [False] * len(unique)
    out = []
    for at in which:  # a profile given twice gets a list of its own
        out.append(list(ranked[at]) if given[at] else ranked[at])
        given[at] = True
    return out


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
