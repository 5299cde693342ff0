"""Trending: the day's most-upvoted papers, for subscribers who ask for them (`trending: N`).

The listing promises "trending papers in your email inbox": this picks them, apart from the
keyword picks. Pure: a `PaperIndex` and a `Profile` in, a `Trending` value out.

- Order: upvotes, most first; papers of equal count keep the order of the listing. A batch
  without any upvote count (the text dumps that give none) falls back to the listing order,
  and says so (`by_upvotes` is False), so the email can tell the reader.
- A paper already picked for the subscriber's keywords or authors is never repeated here, and
  a paper an `exclude` keyword names is never shown.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from newsletter.models import Paper, Trending
from newsletter.ranking.index import PaperIndex
from newsletter.ranking.scoring import Profile


def trending(index: PaperIndex, profile: Profile, count: int, skip: Collection[str] = ()) -> Trending:
    """The `count` most-upvoted papers of the batch for this profile, none of `skip` (paper
    ids: the keyword picks) and none that an exclude keyword names."""
    listing = index.listing
    by_upvotes = any(paper.upvotes is not None for paper in listing)
    if count <= 0 or not listing:
        return Trending((), by_upvotes)
    allowed = np.ones(len(index), dtype=bool)
    for spellings in {index.spellings(keyword) for keyword in profile.exclude} - {()}:
        allowed &= ~index.excluded_by(spellings)
    position = {paper.paper_id: at for at, paper in enumerate(index.papers)}
    skipped = set(skip)
    candidates = [
        paper for paper in listing if paper.paper_id not in skipped and allowed[position[paper.paper_id]]
    ]
    if by_upvotes:  # sorted() is stable: equal counts keep the listing order
        candidates = sorted(candidates, key=lambda paper: -(paper.upvotes or 0))
    return Trending(tuple(candidates[:count]), by_upvotes)
