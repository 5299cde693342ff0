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

from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations

SHINGLE = 3
CONTAINMENT = 0.6
MIN_SHINGLES = 12
# A shingle in this many abstracts or more is boilerplate ("in this paper we") and says nothing
# about sameness; skipping it keeps the pair count linear in practice.
COMMON_SHINGLE_PAPERS = 8


def _shingles(tokens: Sequence[str]) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(tokens[at : at + SHINGLE]) for at in range(len(tokens) - SHINGLE + 1))


def duplicate_groups(abstracts: Sequence[Sequence[str]]) -> list[int]:
    """A group number per paper (its own position when it has no duplicate); papers that are
    near-duplicates, directly or through a chain, share the smallest position of their group."""
    shingles = [_shingles(tokens) for tokens in abstracts]
    holders: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for paper, paper_shingles in enumerate(shingles):
        if len(paper_shingles) >= MIN_SHINGLES:
            for shingle in paper_shingles:
                holders[shingle].append(paper)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for papers in holders.values():
        if 1 < len(papers) < COMMON_SHINGLE_PAPERS:
            for pair in combinations(papers, 2):
                shared[pair] += 1
    group = list(range(len(abstracts)))

    def root(paper: int) -> int:
        while group[paper] != paper:
            group[paper] = group[group[paper]]
            paper = group[paper]
        return paper

    for (first, second), count in shared.items():
        if count >= CONTAINMENT * min(len(shingles[first]), len(shingles[second])):
            low, high = sorted((root(first), root(second)))
            group[high] = low
    return [root(paper) for paper in range(len(abstracts))]
