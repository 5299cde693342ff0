"""Keyword highlighting: the ranker's notion of a match, as (segment, is_match) pieces."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.highlight import ELLIPSIS, _tokens, excerpt, highlight, match_spans
from newsletter.pipeline import rank_dump_path
from newsletter.ranking import tokenize
from newsletter.ranking.text import TOKEN, fold


def marked(text: str, keywords: list[str]) -> list[str]:
    return [segment for segment, hit in highlight(text, keywords) if hit]


@pytest.mark.parametrize(
    ("text", "keywords", "expected"),
    [
        ("Lean4 and Lean 4 are not clean", ["Lean"], ["Lean", "Lean"]),
        ("LLMs beat an LLM at Lean", ["LLM"], ["LLMs", "LLM"]),
        ("Theorem-proving and theorem provers", ["theorem proving"], ["Theorem-proving"]),
        ("Theorems need proving", ["theorem proving"], []),  # words apart: no lone word marked
        ("Test-time compute; time for a test", ["test-time compute"], ["Test-time compute"]),
        ("Café and CAFE", ["cafe"], ["Café", "CAFE"]),
        ("Cafe\u0301 au lait", ["café"], ["Cafe\u0301"]),  # the accent stays with its letter
        ("RL in the world", ["RL"], ["RL"]),
        ("CLIP, CLIPs and gradient clipping", ["CLIP"], ["CLIP", "CLIPs"]),  # acronym as written
        ("CLIP, CLIPs and gradient clipping", ["clip"], ["CLIP", "CLIPs", "clipping"]),  # a plain word
        ("Test-Time scaling", ["TEST-TIME"], ["Test-Time"]),  # typed in capitals, no acronym here
        ("Lean Lean, reasoning", ["Lean", "reasoning"], ["Lean Lean", "reasoning"]),
        ("nothing here", ["Lean", "!!!"], []),
    ],
)
def test_matches_follow_the_ranker(text: str, keywords: list[str], expected: list[str]) -> None:
    assert marked(text, keywords) == expected


def test_pieces_alternate_and_join_back() -> None:
    pieces = highlight("We prove Lean theorems in Lean.", ["Lean"])
    assert pieces == [("We prove ", False), ("Lean", True), (" theorems in ", False), ("Lean", True), (".", False)]
    assert highlight("", ["Lean"]) == [] and highlight("text", []) == [("text", False)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.lists(st.text(max_size=20), max_size=4))
def test_any_text_joins_back_and_tokens_agree_with_the_ranker(text: str, keywords: list[str]) -> None:
    pieces = highlight(text, keywords)
    assert "".join(segment for segment, _ in pieces) == text
    assert all(segment for segment, _ in pieces)
    assert all(a[1] != b[1] for a, b in pairwise(pieces))
    assert list(_tokens(text).stems) == tokenize(text)


def _reference_tokens(text: str) -> list[tuple[str, int, int]]:
    """Each character folded on its own, every token stemmed on its own: slow and plain."""
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = fold(char)
        folded.append(piece)
        origin.extend([index] * len(piece))
    tokens = []
    for match in TOKEN.finditer("".join(folded)):
        start, end = origin[match.start()], origin[match.end() - 1] + 1
        while end < len(text) and not folded[end]:
            end += 1
        tokens.extend((stem, start, end) for stem in tokenize(match.group()))
    return tokens


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcLEAN 4-.éÉ\u0301ßﬁ²Ωω\u00a0ǅ✓Ⅻ")) | st.characters(), max_size=120))
def test_token_spans_are_those_of_folding_character_by_character(text: str) -> None:
    tokens = _tokens(text)
    assert list(zip(tokens.stems, tokens.starts, tokens.ends)) == _reference_tokens(text)


def test_a_keyword_is_highlighted_exactly_where_the_ranker_matched_it() -> None:
    examples = Path(__file__).resolve().parents[1] / "examples" / "dumps"
    keywords = ["theorem proving", "Lean", "test-time compute", "reasoning models", "program synthesis"]
    ranked = rank_dump_path(examples, keywords, top=50)
    assert len(ranked) >= 8
    for pick in ranked:
        fields = {"title": pick.paper.title, "abstract": pick.paper.abstract}
        matched = {(m.keyword, field) for m in pick.matched for field in m.fields}
        for keyword in keywords:
            for field, text in fields.items():
                assert bool(marked(text, [keyword])) == ((keyword, field) in matched), (keyword, field, text)


# Whole keyword matches only (issue 15) ---------------------------------------------------
def test_words_of_a_phrase_are_never_marked_alone() -> None:
    title = "Sleep-time Compute: Beyond Inference Scaling at Test-time"
    assert marked(title, ["test-time compute"]) == []
    assert marked("Multi-Model Fusion for inference", ["model merging", "inference scaling"]) == []
    assert marked("Scaling test-time compute", ["test-time compute"]) == ["test-time compute"]


def test_other_spellings_the_ranker_knows_are_marked() -> None:
    text = "A sparse MoE layer, a mixture of experts."
    spellings = {"mixture of experts": [tokenize("MoE")]}
    assert marked(text, ["mixture of experts"]) == ["mixture of experts"]
    assert [s for s, hit in highlight(text, ["mixture of experts"], spellings) if hit] == [
        "MoE", "mixture of experts",
    ]


# The excerpt shows the match the card names (issue 15) -----------------------------------
OPENING = " ".join(f"Sentence number {n} says something general about the method." for n in range(12))
LATE = OPENING + " We apply it to theorem proving in Lean. It scales."


def test_a_match_past_the_cut_is_brought_into_the_excerpt() -> None:
    shown = excerpt(LATE, match_spans(LATE, ["theorem proving"]), 420)
    assert "theorem proving" in shown
    assert len(shown) <= 420
    assert shown.startswith("Sentence number 0")  # the opening, as much as fits
    assert f"{ELLIPSIS} We apply it to theorem proving in Lean." in shown
    assert marked(shown, ["theorem proving"]) == ["theorem proving"]


def test_an_early_match_or_no_match_keeps_the_opening() -> None:
    early = "Theorem proving in Lean. " + OPENING
    assert excerpt(early, match_spans(early, ["theorem proving"]), 420).startswith("Theorem proving in Lean.")
    assert excerpt(LATE, [], 420) == excerpt(LATE, match_spans(LATE, ["diffusion"]), 420)
    assert "theorem proving" not in excerpt(LATE, [], 420)
    assert excerpt("Short.", [(0, 5)], 420) == "Short."


def test_a_match_in_one_very_long_sentence_is_shown_in_a_window() -> None:
    words = " ".join(f"word{n}" for n in range(200))
    text = f"{words} theorem proving {words}."
    shown = excerpt(text, match_spans(text, ["theorem proving"]), 200)
    assert "theorem proving" in shown and len(shown) <= 200
    assert shown.startswith(ELLIPSIS) and shown.endswith(ELLIPSIS)


@given(st.text(max_size=600), st.integers(min_value=40, max_value=500))
@settings(max_examples=200, deadline=None)
def test_an_excerpt_is_never_longer_than_asked_and_holds_the_match(text: str, limit: int) -> None:
    text = " ".join(text.split())
    spans = match_spans(text, ["ab"])
    shown = excerpt(text, spans, limit)
    assert len(shown) <= limit or shown == text
    if spans and spans[0][1] - spans[0][0] < limit // 3:
        assert text[spans[0][0] : spans[0][1]] in shown
