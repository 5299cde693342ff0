"""Keyword highlighting: the ranker's notion of a match, as (segment, is_match) pieces."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.highlight import _tokens, highlight
from newsletter.pipeline import rank_dump_path
from newsletter.ranking import tokenize


def marked(text: str, keywords: list[str]) -> list[str]:
    return [segment for segment, hit in highlight(text, keywords) if hit]


@pytest.mark.parametrize(
    ("text", "keywords", "expected"),
    [
        ("Lean4 and Lean 4 are not clean", ["Lean"], ["Lean", "Lean"]),
        ("LLMs beat an LLM at Lean", ["LLM"], ["LLMs", "LLM"]),
        ("Theorem-proving and theorem provers", ["theorem proving"], ["Theorem-proving"]),
        ("Theorems need proving", ["theorem proving"], ["Theorems", "proving"]),  # scattered
        ("Test-time compute; time for a test", ["test-time compute"], ["Test-time compute"]),
        ("Café and CAFE", ["cafe"], ["Café", "CAFE"]),
        ("Cafe\u0301 au lait", ["café"], ["Cafe\u0301"]),  # the accent stays with its letter
        ("RL in the world", ["RL"], ["RL"]),
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
    assert [token.stem for token in _tokens(text)] == tokenize(text)


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
