"""Subscribers' own choices in the store (newsletter/store/choices.py), on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.store import Store

T0 = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'choices.db'}")
    yield store
    store.close()


def test_unsubscribe_is_case_blind_and_idempotent(store: Store) -> None:
    assert store.unsubscribe("Ada@Example.org", source="one-click") is True
    assert store.unsubscribe("ada@example.org", source="link") is False
    assert store.unsubscribed_addresses() == {"ada@example.org"}
    assert store.is_unsubscribed("ADA@EXAMPLE.ORG")
    assert store.resubscribe("ada@EXAMPLE.org") is True
    assert store.resubscribe("ada@example.org") is False
    assert store.unsubscribed_addresses() == set()


def test_an_unknown_source_is_a_bug(store: Store) -> None:
    with pytest.raises(ValueError):
        store.unsubscribe("ada@example.org", source="carrier pigeon")


def test_one_current_vote_per_subscriber_and_paper(store: Store) -> None:
    store.record_vote("Ada@Example.org", "arxiv:1", 1, at=T0)
    store.record_vote("ada@example.org", "arxiv:2", -1, at=T0 + timedelta(minutes=1))
    store.record_vote("ada@example.org", "arxiv:1", -1, at=T0 + timedelta(minutes=2))
    store.record_vote("bob@example.org", "arxiv:1", 1, at=T0 + timedelta(minutes=3))
    assert [(v.paper_id, v.vote, v.voted_at) for v in store.votes("ADA@example.org")] == [
        ("arxiv:1", -1, T0 + timedelta(minutes=2)),
        ("arxiv:2", -1, T0 + timedelta(minutes=1)),
    ]
    assert [(v.subscriber, v.paper_id) for v in store.votes()][0] == ("bob@example.org", "arxiv:1")
    assert len(store.votes()) == 3
    with pytest.raises(ValueError):
        store.record_vote("ada@example.org", "arxiv:1", 2)
