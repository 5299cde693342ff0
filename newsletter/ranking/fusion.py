"""Hybrid ranking: the lexical score fused with the semantic one (when papers have embeddings).

The constants were tuned on the `tune` split of bench/eval and, for the feedback, the keyword
mix and the scattered-words rule, also on the separate bench/eval-dev set; never on the
held-out split (bench/relevance.py prints a leave-one-profile-out check).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from newsletter.ranking.index import SIMILAR, PaperIndex

SEMANTIC_WEIGHT = 1.0  # weight of the semantic score (0..1) beside the lexical one (0..1)
SEMANTIC_PICK = 0.5  # a paper with no keyword whole in it needs this semantic score to be picked
SEMANTIC_ONLY_FLOOR = 0.7  # a paper with no keyword word at all needs this to be ranked ...
ANCHOR_FRACTION = 1.0  # ... and to be as close in meaning as the profile's best lexical match
HYBRID_FLOOR_FRACTION = 0.3  # picks score at least this fraction of the profile's best paper
FEEDBACK_DEPTH = 5  # papers, per keyword, whose mean embedding expands the keyword (0: off)
FEEDBACK_WEIGHT = 0.3  # share of the expanded keyword's cosine in the keyword's similarity
BEST_KEYWORD = 0.5  # similarity = this x the closest keyword + (1 - this) x the keywords' mean
SCATTERED_NEEDS_MEANING = True  # a keyword whole but scattered is eligible only by meaning too
SCORE_DECIMALS = 4  # scores equal to this precision are ties (then upvotes, then title)
TINY = np.finfo(np.float32).tiny


def expand_keywords(
    index: PaperIndex, texts: Sequence[str], cosines: np.ndarray, lexical: np.ndarray, whole: np.ndarray
) -> np.ndarray:
    """(keyword, paper) cosines widened by pseudo-relevance feedback over the day's papers.

    A keyword is a few words; what a subscriber means by "computer vision" is better said by
    the papers that are most plainly about it. Per distinct keyword (not per profile: keywords
    recur across subscribers), the FEEDBACK_DEPTH papers that best match it, in words (whole,
    relative to its best paper) plus meaning (relative between its median and closest paper),
    are averaged into one vector; a paper's cosine to that vector is mixed into its cosine to
    the keyword (Rocchio's update, on embeddings). `texts` name the keywords, `lexical` and
    `whole` are (keyword, paper): their scores and whether they occur whole. A keyword is
    expanded once per index (`PaperIndex.feedback` keeps it by text: its spellings, vectors
    and papers are fixed for the batch).
    """
    if FEEDBACK_DEPTH <= 0 or not len(cosines) or cosines.shape[1] <= FEEDBACK_DEPTH:
        return cosines
    done = index.feedback
    missing = [row for row, text in enumerate(texts) if text not in done]
    if missing:
        fresh = _expanded(index, cosines[missing], lexical[missing], whole[missing])
        done.update(zip([texts[row] for row in missing], fresh))
    return np.stack([done[text] for text in texts])


def _expanded(index: PaperIndex, cosines: np.ndarray, lexical: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """`expand_keywords` for keywords not expanded yet."""
    semantic = _relative(cosines)
    lexical = np.where(whole, lexical, 0)
    lexical = lexical / np.maximum(lexical.max(axis=1, keepdims=True), TINY)
    evidence = lexical + semantic
    top = np.argpartition(-evidence, FEEDBACK_DEPTH - 1, axis=1)[:, :FEEDBACK_DEPTH]
    expanded = index.similarity(index.centroids(top)).astype(np.float32)
    return ((1 - FEEDBACK_WEIGHT) * cosines + FEEDBACK_WEIGHT * expanded).astype(np.float32)


def _relative(similarity: np.ndarray) -> np.ndarray:
    """Each row between its median (0) and its largest value (1), clipped to 0..1."""
    median = _row_medians(similarity)
    spread = np.maximum(similarity.max(axis=1, keepdims=True) - median, TINY)
    return np.clip((similarity - median) / spread, 0, 1)


def fuse(
    lexical: np.ndarray,
    keep: np.ndarray,
    allowed: np.ndarray,
    whole: np.ndarray,
    cosines: np.ndarray,
    slot_of: np.ndarray,
    fields: np.ndarray,
    pull: np.ndarray | None = None,
    strong: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid (score, kept, eligible for the picks), each (profile, paper); marks in `fields`
    the closest keyword of papers eligible for their meaning alone.

    Each keyword's cosines (widened by `expand_keywords`) are first made relative to that
    keyword's day, between its median paper (0) and its closest paper (1), since cosines of a
    short keyword and of a long one live on different scales. A paper's similarity to a
    profile is then BEST_KEYWORD x its closest keyword + the rest x the mean over the
    keywords: a paper squarely on one keyword of five is not averaged away, and one near all
    of them still counts more. Both scores are made relative to the profile before they are
    added: the lexical one to the profile's best lexical paper, the semantic one again
    between the profile's median paper (0) and its closest paper (1). A paper without
    any keyword word is kept when its semantic score is high enough and it is at least as
    close in meaning as the profile's best lexical match; a profile with no lexical match at
    all keeps nothing, so a day with nothing relevant still mails no filler. A paper is
    eligible for the picks when a keyword occurs whole in it with its words together (`strong`;
    a one-word keyword anywhere, or most words of a sentence), or when its semantic score
    reaches SEMANTIC_PICK: a keyword whose words are only scattered over an abstract is weak
    evidence, which the meaning must confirm. `pull` (profile, paper), from the profile's
    votes, in cosines, is added to the similarity in units of the spread of the profile's mean
    cosine; an excluded paper stays out whatever it says.
    """
    valid = slot_of >= 0
    # Each keyword's cosines relative to its own spread today (a short keyword's and a long
    # one's live on different scales), gathered per profile: padding reads an all-zero last
    # row. Not as a (profile, slot) x (slot, paper) product: that matrix is nearly all zeros,
    # and a multithreaded BLAS on a busy 2-core machine took 2 s over the 79 chunks of 10,000.
    zero_row = np.zeros((1, cosines.shape[1]), dtype=cosines.dtype)
    gathered = np.vstack([_relative(cosines), zero_row])[slot_of]
    keywords = np.maximum(valid.sum(axis=1), 1)[:, None]
    similarity = (
        BEST_KEYWORD * gathered.max(axis=1)
        + (1 - BEST_KEYWORD) * gathered.sum(axis=1, dtype=np.float32) / keywords
    )
    if pull is not None:  # the profile's votes: toward the liked papers, away from the others
        # The pull is in cosines: in units of the spread of the profile's mean cosine, as
        # the similarity is in units of each keyword's spread.
        mean_cosine = np.vstack([cosines, zero_row])[slot_of].sum(axis=1, dtype=np.float32) / keywords
        scale = np.maximum(mean_cosine.max(axis=1, keepdims=True) - _row_medians(mean_cosine), TINY)
        similarity = similarity + pull / scale
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
    if strong is None or not SCATTERED_NEEDS_MEANING:
        strong = whole
    by_meaning = kept & ~strong & (semantic >= SEMANTIC_PICK)
    rows, papers = np.nonzero(by_meaning & ~whole)
    if rows.size:
        per_keyword = cosines[np.where(valid, slot_of, 0)[rows], papers[:, None]]
        nearest = np.where(valid[rows], per_keyword, -np.inf).argmax(axis=1)
        fields[rows, nearest, papers] |= SIMILAR
    return hybrid, kept, strong | by_meaning


def _row_medians(values: np.ndarray) -> np.ndarray:
    """`np.median(values, axis=1, keepdims=True)`, four times as fast: numpy sorts float32
    rows with SIMD, while the partition behind `np.median` selects element by element."""
    ordered = np.sort(values, axis=1)
    middle = values.shape[1] // 2
    return (ordered[:, (values.shape[1] - 1) // 2] + ordered[:, middle])[:, None] / 2
