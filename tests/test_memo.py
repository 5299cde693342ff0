"""The bounded memo (newsletter/memo.py): least recently used entries go first past the budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.memo import Kept


def test_the_least_recently_used_entries_go_first() -> None:
    kept: Kept[str, int] = Kept(budget=30)
    for name in "abc":
        kept.put(name, ord(name), size=10)
    assert kept.get("a") == ord("a")  # "a" is now the most recently used
    kept.put("d", ord("d"), size=10)
    assert kept.get("b") is None  # the least recently used went
    assert [kept.get(name) for name in "acd"] == [ord("a"), ord("c"), ord("d")]
    assert (len(kept), kept.size, kept.stored) == (3, 30, 4)


def test_a_value_larger_than_the_budget_is_kept_alone() -> None:
    kept: Kept[str, str] = Kept(budget=10)
    kept.put("small", "s", size=5)
    kept.put("large", "l", size=50)
    assert kept.get("small") is None and kept.get("large") == "l" and kept.size == 50


def test_putting_a_key_again_replaces_its_size() -> None:
    kept: Kept[str, str] = Kept(budget=100)
    kept.put("a", "first", size=60)
    kept.put("a", "second", size=20)
    assert (kept.get("a"), kept.size, len(kept)) == ("second", 20, 1)
    kept.clear()
    assert (kept.get("a"), kept.size, len(kept)) == (None, 0, 0)


def test_a_memo_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="positive budget"):
        Kept(budget=0)


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 40)), max_size=200), st.integers(1, 120))
def test_the_memo_never_holds_more_than_its_budget(operations: list[tuple[int, int]], budget: int) -> None:
    kept: Kept[int, int] = Kept(budget)
    for key, size in operations:
        if kept.get(key) is None:
            kept.put(key, key, size)
        assert kept.get(key) == key  # what was just used is kept
        assert kept.size <= budget or len(kept) == 1
