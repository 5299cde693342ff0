"""LaTeX residue in titles and abstracts (issue 15): real shapes from the listing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.text import clean_latex


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("how much a model {p}_{theta}(Y|X) knows", "how much a model p_θ(Y|X) knows"),
        ("\\scriptsize Sparse Experts", "Sparse Experts"),
        ("the FVEL\\textnormal{ER} dataset", "the FVELER dataset"),
        ("hardware verification, \\ie, detection", "hardware verification, i.e., detection"),
        ("from 10^{-45} to 10^{45}.", "from 10⁻⁴⁵ to 10⁴⁵."),
        ("baseline of mathcal{O}(mathcal{C_{Phi circ Psi}/n}) achieved", "baseline of O(C_Phi circ Psi/n) achieved"),
        ("metrics: \\(\\scoreGamma\\) measures", "metrics: scoreGamma measures"),
        ("Q^{pi_{sft}} (derived", "Q^pi_sft (derived"),
        ("sum_j mathcal W_{ij} u", "sum_j W_ij u"),
        ("with $\\alpha$-divergence in $O(n)$ time", "with α-divergence in O(n) time"),
        ("Costs $5 and $10 a month", "Costs $5 and $10 a month"),
        ("C++ and x_1 stay as written", "C++ and x_1 stay as written"),
    ],
)
def test_latex_residue_becomes_readable_text(raw: str, shown: str) -> None:
    assert clean_latex(raw) == shown


@given(st.text(alphabet=st.characters(blacklist_characters="\\${}^_"), max_size=200))
def test_text_without_latex_comes_back_unchanged(text: str) -> None:
    if "math" not in text:
        assert clean_latex(text) == text


@given(st.text(alphabet="\\${}^_()[]ab01 -thetamathcal", max_size=200))
def test_any_mix_of_latex_pieces_is_cleaned_without_error(text: str) -> None:
    assert isinstance(clean_latex(text), str)
