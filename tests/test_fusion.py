"""Hybrid fusion rules with hand-made vectors: feedback widens a keyword toward the papers that
match it, and a keyword whose words are only scattered in a paper needs its meaning too."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from newsletter.models import Paper
from newsletter.ranking import PaperIndex, Profile, Semantic, rank_papers
from newsletter.ranking import fusion


def unit(*weights: float) -> np.ndarray:
    vector = np.array(weights, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def encode_along_axis_0(texts: Sequence[str]) -> np.ndarray:
    return np.stack([np.eye(4, dtype=np.float32)[0] for _ in texts])


def test_feedback_moves_a_keyword_toward_what_its_best_papers_are_about() -> None:
    # The keyword's vector (axis 0) says little; the papers holding it are mostly about axis 1.
    matching = [Paper(f"Vision paper {n}", "Computer vision for robots.") for n in range(6)]
    unworded = Paper("Seeing machines", "Cameras and pixels.")  # about axis 1, no keyword word
    elsewhere = Paper("Protein folding", "Molecules.")  # about axis 2
    papers = [*matching, unworded, elsewhere]
    vectors = {p.paper_id: unit(0.3, 1, 0, 0) for p in matching}
    vectors[unworded.paper_id] = unit(0, 1, 0, 0)
    vectors[elsewhere.paper_id] = unit(0, 0, 1, 0)
    index = PaperIndex.build(papers, Semantic(vectors, encode_along_axis_0))
    position = {paper.title: at for at, paper in enumerate(index.papers)}
    keyword = index.keyword_vectors(index.spellings("computer vision"))
    cosines = index.cosines(["computer vision"])
    assert cosines[0, position["Seeing machines"]] == cosines[0, position["Protein folding"]] == 0

    widened = fusion.expand_keywords(
        index, ["computer vision"], cosines, keyword.score[None], ((keyword.fields & 3) > 0)[None]
    )

    assert widened[0, position["Seeing machines"]] > widened[0, position["Protein folding"]]
    # The centroid of the keyword's 5 best papers is unit(0.3, 1, 0, 0): mixed in FEEDBACK_WEIGHT.
    expected = fusion.FEEDBACK_WEIGHT * float(unit(0.3, 1, 0, 0) @ unit(0, 1, 0, 0))
    assert widened[0, position["Seeing machines"]] == pytest.approx(expected, rel=1e-5)
    assert "computer vision" in index.feedback  # expanded once per index


def test_feedback_needs_more_papers_than_its_depth() -> None:
    papers = [Paper("Computer vision", "Pixels."), Paper("Audio", "Sound.")]
    vectors = {papers[0].paper_id: unit(1, 0, 0, 0), papers[1].paper_id: unit(0, 1, 0, 0)}
    index = PaperIndex.build(papers, Semantic(vectors, encode_along_axis_0))
    cosines = index.cosines(["computer vision"])
    same = fusion.expand_keywords(index, ["computer vision"], cosines, np.ones((1, 2)), np.ones((1, 2), bool))
    np.testing.assert_array_equal(same, cosines)


SCATTERED = [
    Paper("Weather records", "Audio of storms was kept; tokenizers for the logs were rebuilt."),
    Paper("Sound codecs", "Audio is cut by learned tokenizers into units."),
    *(Paper(f"Filler {n}", "Nothing relevant here.") for n in range(4)),
]
SCATTERED_VECTORS = {
    SCATTERED[0].paper_id: unit(0, 0, 0, 1),  # its words are there, its meaning is not
    SCATTERED[1].paper_id: unit(1, 0.2, 0, 0),  # words apart, meaning close
    **{paper.paper_id: unit(0, 0.3 * n, 1, 0.1) for n, paper in enumerate(SCATTERED[2:])},
}


def test_a_keyword_s_words_scattered_need_its_meaning_to_be_picked() -> None:
    profile = Profile(("audio tokenizers",))
    lexical = rank_papers(SCATTERED, profile, max_papers=5)
    assert {i.paper.title for i in lexical if i.picked} == {"Weather records", "Sound codecs"}

    hybrid = rank_papers(
        SCATTERED, profile, max_papers=5, semantic=Semantic(SCATTERED_VECTORS, encode_along_axis_0)
    )
    picked = [item.paper.title for item in hybrid if item.picked]
    assert picked == ["Sound codecs"]
    weather = next(item for item in hybrid if item.paper.title == "Weather records")
    assert not weather.picked and weather.matched[0].fields == ("abstract",)  # still ranked, explained
