"""The store on a real SQLite file and a real PostgreSQL database: dedup across dumps,
unchanged files skipped, the ledger."""

from __future__ import annotations

from datetime import date, timedelta
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from newsletter.models import Paper
from newsletter.ingest import ingest_dumps
from newsletter.store import Store
from databases import PostgresServer


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.close()


def test_real_dumps_store_229_distinct_papers_and_reingest_does_nothing(
    store: Store, shared_dumps: Path
) -> None:
    first = ingest_dumps(store, shared_dumps)
    assert len(first.ingested) == 4 and first.rejected == []
    assert sum(count for _, count, _ in first.ingested) == 240  # entries over the four captures
    assert first.new_papers == 229 == store.paper_count()
    again = ingest_dumps(store, shared_dumps)
    assert (again.unchanged, again.ingested, again.new_papers) == (4, [], 0)
    assert store.paper_count() == 229


def test_the_same_paper_from_text_then_json_is_one_row_with_the_richer_metadata(store: Store) -> None:
    from_text = Paper(title="Lean Proofs at Scale", abstract="Short.", author_count=3, upvotes=2)
    from_json = Paper(
        title="Lean proofs at scale!", abstract="A longer abstract about Lean proofs.",
        arxiv_id="2611.00001", authors=("A. Turing", "A. Lovelace", "K. Gödel"), upvotes=7,
    )
    store.add_dump(path="a.txt", sha256="a" * 64, format="hf-text", listing_date=None, dump_papers_=[from_text])
    assert store.add_dump(path="b.json", sha256="b" * 64, format="hf-json", listing_date=None, dump_papers_=[from_json]) == 0
    (paper,) = store.all_papers()
    assert paper.paper_id == from_text.paper_id  # the first id stays, so the ledger holds
    assert paper.arxiv_id == "2611.00001" and paper.upvotes == 7
    assert paper.authors == from_json.authors and paper.abstract == from_json.abstract
    assert paper.link == "https://huggingface.co/papers/2611.00001"


def test_ledger_never_records_a_paper_twice_for_one_subscriber(store: Store) -> None:
    paper = Paper(title="A paper", abstract="About things.")
    store.add_dump(path="a.txt", sha256="c" * 64, format="hf-text", listing_date=None, dump_papers_=[paper])
    record = store.plan_digest(subscriber="ada@example.org", day=date(2026, 11, 20), message_id="<1@x>", paper_ids=[paper.paper_id])
    store.mark(record.id, "sending")
    store.mark(record.id, "sent")
    assert store.digest_for("ada@example.org", date(2026, 11, 20)).status == "sent"  # type: ignore[union-attr]
    assert store.candidate_ids("ada@example.org", date(2026, 11, 22)) == []
    assert store.candidate_ids("bob@example.org", date(2026, 11, 22)) == [paper.paper_id]
    with pytest.raises(IntegrityError):
        store.plan_digest(subscriber="ada@example.org", day=date(2026, 11, 21), message_id="<2@x>", paper_ids=[paper.paper_id])
    with pytest.raises(IntegrityError):  # one digest per subscriber and day
        store.plan_digest(subscriber="ada@example.org", day=date(2026, 11, 20), message_id="<3@x>", paper_ids=[])
    (row,) = store.ledger()
    assert (row["status"], row["attempts"], row["message_id"]) == ("sent", 1, "<1@x>")


def test_candidates_are_papers_first_seen_since_the_last_digest(store: Store) -> None:
    old = Paper(title="Old paper", abstract="Seen before the digest.")
    store.add_dump(path="a.txt", sha256="d" * 64, format="hf-text", listing_date=None, dump_papers_=[old])
    record = store.plan_digest(subscriber="ada@example.org", day=date(2026, 11, 20), message_id="<1@x>", paper_ids=[])
    store.mark(record.id, "sent")
    new = Paper(title="New paper", abstract="Seen after it.")
    store.add_dump(path="b.txt", sha256="e" * 64, format="hf-text", listing_date=None, dump_papers_=[new])
    assert store.candidate_ids("ada@example.org", date(2026, 11, 22)) == [new.paper_id]


def test_the_database_survives_reopening(database_url: str) -> None:
    url = database_url
    Store(url).add_dump(path="a", sha256="f" * 64, format="hf-text", listing_date=date(2026, 1, 2),
                        dump_papers_=[Paper(title="T", abstract="A")])
    reopened = Store(url)
    assert reopened.paper_count() == 1 and reopened.dump_seen("f" * 64)


@pytest.mark.postgres
def test_times_read_back_are_utc_whatever_the_server_time_zone(postgres: PostgresServer) -> None:
    with postgres.database() as url:
        with postgres.admin.connect() as admin:  # a server set up far from UTC
            admin.execute(text(f'ALTER DATABASE "{make_url(url).database}" SET timezone TO \'Asia/Tokyo\''))
        store = Store(url)
        paper = Paper(title="A paper", abstract="About things.")
        store.add_dump(path="a.txt", sha256="9" * 64, format="hf-text", listing_date=None, dump_papers_=[paper])
        record = store.plan_digest(subscriber="ada@example.org", day=date(2026, 11, 20), message_id="<1@x>", paper_ids=[])
        store.mark(record.id, "sent")
        with store.engine.connect() as db:
            assert db.execute(text("SHOW timezone")).scalar_one() == "UTC"
        [row] = store.ledger()
        assert row["created_at"].utcoffset() == timedelta(0)
        store.close()
