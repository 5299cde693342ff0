"""Dumps and papers: what ingest writes and ranking reads (embeddings: `embeddings.py`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, bindparam, func, select, text, update
from sqlalchemy.engine import Connection, Row

from newsletter.models import Paper
from newsletter.store.base import StoreBase, new_id
from newsletter.store.base import now as _now
from newsletter.store.schema import dump_papers, dumps, papers

# The hottest query of a send run (once per subscriber), kept as plain SQL: building it with
# the expression language cost more than running it. Same rules as `PaperStore.candidate_ids`.
# Portable SQL: `:day` is bound as a date; '0001-01-01' (no digest sent yet) reads as the
# earliest timestamp on PostgreSQL and sorts before every stored timestamp text on SQLite.
_CANDIDATE_IDS = text(
    """
    SELECT p.paper_id FROM papers AS p
    WHERE p.paper_id NOT IN (
        SELECT dp.paper_id FROM digest_papers AS dp JOIN digests AS d ON d.id = dp.digest_id
        WHERE dp.subscriber = :subscriber
          AND NOT (d.status IN ('failed', 'planned', 'abandoned') AND d.digest_day < :day)
    )
    AND p.first_seen_at > COALESCE(
        (SELECT max(d.created_at) FROM digests AS d WHERE d.subscriber = :subscriber AND d.status = 'sent'),
        '0001-01-01'
    )
    """
).bindparams(bindparam("day", type_=Date))


def _richer(old: object, new: object) -> object:
    return new if old in (None, "", "[]") and new not in (None, "", "[]") else old



class PaperStore(StoreBase):
    def dump_seen(self, sha256: str) -> bool:
        with self._tx() as db:
            return db.execute(select(dumps.c.id).where(dumps.c.sha256 == sha256)).first() is not None

    def record_rejected_dump(self, *, path: str, sha256: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                dumps.insert().values(
                    path=path, sha256=sha256, status="rejected", error=error, ingested_at=_now()
                )
            )

    def add_dump(
        self,
        *,
        path: str,
        sha256: str,
        format: str,
        listing_date: date | None,
        dump_papers_: Sequence[Paper],
    ) -> int:
        """Store a parsed dump and upsert its papers in one transaction; returns new papers."""
        now = _now()
        new_count = 0
        with self._tx() as db:
            dump_id = new_id(db.execute(
                dumps.insert().values(
                    path=path,
                    sha256=sha256,
                    format=format,
                    listing_date=listing_date,
                    paper_count=len(dump_papers_),
                    status="ingested",
                    ingested_at=now,
                )
            ))
            linked: set[str] = set()
            for paper in dump_papers_:
                paper_id, is_new = self._upsert_paper(db, paper, now)
                new_count += is_new
                if paper_id not in linked:
                    linked.add(paper_id)
                    db.execute(dump_papers.insert().values(dump_id=dump_id, paper_id=paper_id))
        return new_count

    def _upsert_paper(self, db: Connection, paper: Paper, now: datetime) -> tuple[str, bool]:
        """Insert or merge one paper; returns its stored id and whether it is new."""
        row = {
            "arxiv_id": paper.arxiv_id,
            "title": paper.title,
            "abstract": paper.abstract,
            "authors": json.dumps(list(paper.authors)),
            "author_count": paper.author_count,
            "organization": paper.organization,
            "published": paper.published,
            "upvotes": paper.upvotes,
            "url": paper.url,
        }
        existing = self._find_paper(db, paper)
        if existing is None:
            db.execute(
                papers.insert().values(
                    paper_id=paper.paper_id, title_key=paper.title_key, first_seen_at=now, **row
                )
            )
            return paper.paper_id, True
        merged = {key: _richer(existing._mapping[key], value) for key, value in row.items()}
        if len(paper.abstract) > len(existing.abstract):
            merged["abstract"] = paper.abstract
        if paper.upvotes is not None and (existing.upvotes or 0) < paper.upvotes:
            merged["upvotes"] = paper.upvotes  # the later capture has the current count
        db.execute(update(papers).where(papers.c.paper_id == existing.paper_id).values(**merged))
        return existing.paper_id, False

    @staticmethod
    def _find_paper(db: Connection, paper: Paper) -> Row[Any] | None:
        """The stored row for `paper`: same arXiv id, else same normalised title.

        Matching on the title too lets a text capture (no arXiv id) and a JSON capture of the
        same paper meet in one row, whichever arrived first.
        """
        if paper.arxiv_id:
            row = db.execute(select(papers).where(papers.c.arxiv_id == paper.arxiv_id)).first()
            if row is not None:
                return row
        return db.execute(
            select(papers).where(papers.c.title_key == paper.title_key).limit(1)
        ).first()

    def paper_count(self) -> int:
        with self._tx() as db:
            return int(db.execute(select(func.count()).select_from(papers)).scalar_one())

    def dump_stats(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute(select(dumps.c.status, func.count()).group_by(dumps.c.status))
            return {status: int(count) for status, count in rows}

    def candidate_ids(self, subscriber: str, day: date) -> list[str]:
        """Ids of the papers never sent to `subscriber`, first seen since their last digest.

        Papers held by an earlier digest that certainly never arrived (see `_release_unsent`)
        count as not sent, so a preview sees what the next send will pick. Ids come back
        sorted, so subscribers with the same candidates get equal lists.
        """
        with self._tx() as db:
            rows = db.execute(_CANDIDATE_IDS, {"subscriber": subscriber, "day": day}).scalars()
            return sorted(rows)

    def papers_by_ids(self, paper_ids: Sequence[str]) -> list[Paper]:
        """The papers with these ids, in the order given (unknown ids are left out)."""
        with self._tx() as db:
            rows = db.execute(select(papers).where(papers.c.paper_id.in_(list(paper_ids))))
            found = {row.paper_id: paper_from_row(row._mapping) for row in rows}
        return [found[paper_id] for paper_id in paper_ids if paper_id in found]

    def all_papers(self) -> list[Paper]:
        with self._tx() as db:
            return [paper_from_row(row._mapping) for row in db.execute(select(papers))]


def paper_from_row(row: object) -> Paper:
    mapping = row  # a RowMapping
    return Paper(
        title=mapping["title"],  # type: ignore[index]
        abstract=mapping["abstract"],  # type: ignore[index]
        arxiv_id=mapping["arxiv_id"],  # type: ignore[index]
        authors=tuple(json.loads(mapping["authors"] or "[]")),  # type: ignore[index]
        author_count=mapping["author_count"],  # type: ignore[index]
        organization=mapping["organization"],  # type: ignore[index]
        published=mapping["published"],  # type: ignore[index]
        upvotes=mapping["upvotes"],  # type: ignore[index]
        url=mapping["url"],  # type: ignore[index]
        stored_id=mapping["paper_id"],  # type: ignore[index]
    )

