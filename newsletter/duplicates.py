"""Near-duplicate papers: the same work listed twice under two titles.

A paper renamed between versions, or listed once with its arXiv id and once without, is one
paper to the reader, but two to the store when both its title and its id differ. The ranker
lets only the best of a group of near-duplicates into a ranking. Pure: token lists in, group
numbers out.

Two papers are near-duplicates when their abstracts share most of their word 3-grams
("shingles", Broder 1997): the shared shingles are at least CONTAINMENT of the shorter
abstract's. Containment rather than Jaccard so that a truncated abstract still meets its full
version. Abstracts of fewer than MIN_SHINGLES shingles (a missing or one-line abstract) are
never called duplicates: too little text to tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, combinations

import numpy as np

SHINGLE = 3
CONTAINMENT = 0.6
MIN_SHINGLES = 12
# A shingle in this many abstracts or more is boilerplate ("in this paper we") and says nothing
# about sameness; skipping it keeps the pair count linear in practice.
COMMON_SHINGLE_PAPERS = 8


def number_words(abstracts: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, int]:
    """(every word of every abstract as a number, in order; each abstract's word count; how
    many distinct words)."""
    vocabulary: dict[str, int] = {}
    numbered = [[vocabulary.setdefault(token, len(vocabulary)) for token in tokens] for tokens in abstracts]
    counts = np.fromiter(map(len, numbered), dtype=np.int64, count=len(numbered))
    words = np.fromiter(chain.from_iterable(numbered), dtype=np.int64, count=int(counts.sum()))
    return words, counts, len(vocabulary)


def _shingle_holders(words: np.ndarray, counts: np.ndarray, distinct: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shingle, paper) for every distinct shingle of every paper, sorted by shingle then
    paper, and each paper's count of distinct shingles. A shingle is a number: each run of
    SHINGLE word numbers (a 500-paper day holds 100,000 shingles: as tuples of strings, the
    sets took 0.15 s)."""
    papers = len(counts)
    paper_of = np.repeat(np.arange(papers, dtype=np.int64), counts)
    # Each run of SHINGLE words within one paper, numbered one word at a time: (run so far,
    # next word) pairs are renumbered densely, so the numbers never outgrow int64.
    starts = np.flatnonzero(paper_of[: len(paper_of) - SHINGLE + 1] == paper_of[SHINGLE - 1 :])
    runs = words[starts]
    for offset in range(1, SHINGLE):
        runs = np.unique(runs * (distinct + 1) + words[starts + offset], return_inverse=True)[1].astype(np.int64)
    held = np.unique(runs * papers + paper_of[starts])
    shingle_counts = np.bincount(held % papers, minlength=papers) if papers else np.zeros(0, np.int64)
    return held // papers, held % papers, shingle_counts


def duplicate_groups(abstracts: Sequence[Sequence[str]]) -> list[int]:
    """A group number per paper (its own position when it has no duplicate); papers that are
    near-duplicates, directly or through a chain, share the smallest position of their group."""
    return duplicate_groups_numbered(*number_words(abstracts))


def duplicate_groups_numbered(words: np.ndarray, counts: np.ndarray, distinct: int) -> list[int]:
    """`duplicate_groups` of abstracts whose words are numbered already (`number_words`)."""
    shingles, papers, counts = _shingle_holders(words, counts, distinct)
    total = len(counts)
    wordy = counts[papers] >= MIN_SHINGLES
    shingles, papers = shingles[wordy], papers[wordy]
    # Runs of equal shingles: the papers holding each one, in order.
    first = np.flatnonzero(np.r_[True, shingles[1:] != shingles[:-1]]) if len(shingles) else np.zeros(0, np.intp)
    sizes = np.diff(np.r_[first, len(shingles)])
    pairs = []
    for size in range(2, COMMON_SHINGLE_PAPERS):
        holders = papers[first[sizes == size][:, None] + np.arange(size)]  # (shingle, holder)
        pairs.extend(holders[:, a] * total + holders[:, b] for a, b in combinations(range(size), 2))
    found, shared = np.unique(np.concatenate(pairs), return_counts=True) if pairs else (np.zeros(0, np.int64),) * 2
    low, high = found // max(total, 1), found % max(total, 1)
    close = shared >= CONTAINMENT * np.minimum(counts[low], counts[high])
    group = list(range(total))

    def root(paper: int) -> int:
        while group[paper] != paper:
            group[paper] = group[group[paper]]
            paper = group[paper]
        return paper

    # Each union keeps the smaller root, so a group's number is its smallest position
    # whatever the order of the pairs.
    for first_paper, second_paper in zip(low[close].tolist(), high[close].tolist()):
        low_root, high_root = sorted((root(first_paper), root(second_paper)))
        group[high_root] = low_root
    return [root(paper) for paper in range(total)]
