"""Hybrid ranking: the lexical score fused with the semantic one (when papers have embeddings).

The constants were tuned on bench/eval (bench/relevance.py prints a leave-one-profile-out check).
"""

from __future__ import annotations

import numpy as np

from newsletter.ranking.index import SIMILAR

SEMANTIC_WEIGHT = 1.0  # weight of the semantic score (0..1) beside the lexical one (0..1)
SEMANTIC_PICK = 0.5  # a paper with no keyword whole in it needs this semantic score to be picked
SEMANTIC_ONLY_FLOOR = 0.7  # a paper with no keyword word at all needs this to be ranked ...
ANCHOR_FRACTION = 1.0  # ... and to be as close in meaning as the profile's best lexical match
HYBRID_FLOOR_FRACTION = 0.3  # picks score at least this fraction of the profile's best paper
SCORE_DECIMALS = 4  # scores equal to this precision are ties (then upvotes, then title)
TINY = np.finfo(np.float32).tiny


def fuse(
    lexical: np.ndarray,
    keep: np.ndarray,
    allowed: np.ndarray,
    whole: np.ndarray,
    cosines: np.ndarray,
    slot_of: np.ndarray,
    fields: np.ndarray,
    pull: np.ndarray | None = None,
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
    reaches SEMANTIC_PICK. `pull` (profile, paper), from the profile's votes, is added to the
    similarity before any of this; an excluded paper stays out whatever it says.
    """
    valid = slot_of >= 0
    # The mean over each profile's keywords, gathered (padding reads an all-zero last row).
    # Not as a (profile, slot) x (slot, paper) product: that matrix is nearly all zeros, and
    # a multithreaded BLAS on a busy 2-core machine took 2 s over the 79 chunks of 10,000.
    padded = np.vstack([cosines, np.zeros((1, cosines.shape[1]), dtype=cosines.dtype)])
    similarity = padded[slot_of].sum(axis=1, dtype=np.float32) / np.maximum(valid.sum(axis=1), 1)[:, None]
    if pull is not None:  # the profile's votes: toward the liked papers, away from the others
        similarity = similarity + pull
    median = _row_medians(similarity)
    spread = np.maximum(similarity.max(axis=1, keepdims=True) - median, TINY)
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
    hybrid = np.where(keep, lexical / np.maximum(lexical_best, TINY), 0) + SEMANTIC_WEIGHT * semantic
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
