"""The store: the only module that speaks SQL (SQLAlchemy 2 Core; SQLite by default).

Tables
- `dumps`: every file ingested or rejected, by content hash, so an unchanged file is skipped.
- `papers`: one row per paper identity (arXiv id, else normalised-title hash); a paper seen
  in two dumps is merged, keeping the richer metadata; `first_seen_at` drives selection.
- `dump_papers`: which dump listed which paper.
- `digests`: the delivery ledger, one row per (subscriber, digest day) with its state
  (planned, sending, sent, failed; abandoned once a later day gave its papers back), message
  id and SMTP error.
- `digest_papers`: which papers went into which digest; unique per (subscriber, paper), so the
  database itself refuses to record a paper twice for one subscriber.
- `paper_embeddings`: a paper's sentence embedding per model (float32 bytes), computed once
  per paper and model whoever the subscriber, for the hybrid ranker (`semantic.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import numpy as np

from newsletter.errors import ConfigError
from newsletter.models import Paper

SENT_STATES = ("sent",)
RELEASABLE_STATES = ("failed", "planned", "abandoned")

metadata = MetaData()

dumps = Table(
    "dumps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("format", String(32)),
    Column("listing_date", Date),
    Column("paper_count", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),  # ingested | rejected
    Column("error", Text),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
)

papers = Table(
    "papers",
    metadata,
    Column("paper_id", String(80), primary_key=True),
    Column("arxiv_id", String(40), index=True),
    Column("title_key", String(80), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("abstract", Text, nullable=False),
    Column("authors", Text, nullable=False, default="[]"),  # JSON list of names
    Column("author_count", Integer),
    Column("organization", Text),
    Column("published", Date),
    Column("upvotes", Integer),
    Column("url", Text),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
)

dump_papers = Table(
    "dump_papers",
    metadata,
    Column("dump_id", ForeignKey("dumps.id"), primary_key=True),
    Column("paper_id", ForeignKey("papers.paper_id"), primary_key=True),
)

digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False),
    Column("digest_day", Date, nullable=False),
    Column("status", String(16), nullable=False),  # planned | sending | sent | failed | abandoned
    Column("message_id", String(255), nullable=False),
    Column("paper_count", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error_code", Integer),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("subscriber", "digest_day"),
)

digest_papers = Table(
    "digest_papers",
    metadata,
    Column("digest_id", ForeignKey("digests.id"), primary_key=True),
    Column("paper_id", ForeignKey("papers.paper_id"), primary_key=True),
    Column("subscriber", String(320), nullable=False),
    Column("position", Integer, nullable=False),
    UniqueConstraint("subscriber", "paper_id"),
)


paper_embeddings = Table(
    "paper_embeddings",
    metadata,
    Column("paper_id", ForeignKey("papers.paper_id"), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created_at", DateTime(timezone=True), nullable=False),
)
EMBEDDING_DTYPE = np.dtype("<f4")


@dataclass(frozen=True)
class DigestRecord:
    """A ledger row as the pipeline needs it."""

    id: int
    subscriber: str
    digest_day: date
    status: str
    message_id: str
    paper_ids: tuple[str, ...]


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _richer(old: object, new: object) -> object:
    return new if old in (None, "", "[]") and new not in (None, "", "[]") else old


class Store:
    """Papers, dumps and the delivery ledger in one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url)
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigError(f"NEWSLETTER_DATABASE_URL {url!r} is not usable: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        try:
            metadata.create_all(self.engine)
        except OperationalError as exc:
            raise ConfigError(f"cannot open the database {url!r}: {exc.orig}") from None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()

    # dumps and papers ------------------------------------------------------------------
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
            dump_id = _new_id(db.execute(
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

    def candidates(self, subscriber: str, day: date) -> list[Paper]:
        """Papers never sent to `subscriber`, first seen since their last digest (else all).

        Papers held by an earlier digest that certainly never arrived (see `release_unsent`)
        count as not sent, so a preview sees what the next send will pick.
        """
        with self._tx() as db:
            last = db.execute(
                select(func.max(digests.c.created_at)).where(
                    digests.c.subscriber == subscriber, digests.c.status.in_(SENT_STATES)
                )
            ).scalar_one()
            held = (
                select(digest_papers.c.paper_id)
                .join(digests, digests.c.id == digest_papers.c.digest_id)
                .where(
                    digest_papers.c.subscriber == subscriber,
                    ~(digests.c.status.in_(RELEASABLE_STATES) & (digests.c.digest_day < day)),
                )
            )
            query = select(papers).where(papers.c.paper_id.not_in(held))
            if last is not None:
                query = query.where(papers.c.first_seen_at > _as_utc(last))
            return [_paper_from_row(row._mapping) for row in db.execute(query)]

    def papers_by_ids(self, paper_ids: Sequence[str]) -> list[Paper]:
        """The papers with these ids, in the order given (unknown ids are left out)."""
        with self._tx() as db:
            rows = db.execute(select(papers).where(papers.c.paper_id.in_(list(paper_ids))))
            found = {row.paper_id: _paper_from_row(row._mapping) for row in rows}
        return [found[paper_id] for paper_id in paper_ids if paper_id in found]

    def all_papers(self) -> list[Paper]:
        with self._tx() as db:
            return [_paper_from_row(row._mapping) for row in db.execute(select(papers))]

    # paper embeddings ----------------------------------------------------------------------
    def paper_embeddings(self, model: str, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these papers for `model` (papers without one are left out)."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(paper_ids))
        with self._tx() as db:
            for start in range(0, len(wanted), 500):  # bound the IN list
                rows = db.execute(
                    select(paper_embeddings.c.paper_id, paper_embeddings.c.vector).where(
                        paper_embeddings.c.model == model,
                        paper_embeddings.c.paper_id.in_(wanted[start : start + 500]),
                    )
                )
                for paper_id, vector in rows:
                    found[paper_id] = np.frombuffer(vector, dtype=EMBEDDING_DTYPE)
        return found

    def save_paper_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors for `model`; a paper that already has one keeps it."""
        if not vectors:
            return
        now = _now()
        with self._tx() as db:
            known = set(
                db.execute(
                    select(paper_embeddings.c.paper_id).where(
                        paper_embeddings.c.model == model,
                        paper_embeddings.c.paper_id.in_(list(vectors)),
                    )
                ).scalars()
            )
            rows = [
                {
                    "paper_id": paper_id,
                    "model": model,
                    "dimension": int(vector.shape[0]),
                    "vector": np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes(),
                    "created_at": now,
                }
                for paper_id, vector in vectors.items()
                if paper_id not in known
            ]
            if rows:
                db.execute(paper_embeddings.insert(), rows)

    # the delivery ledger -----------------------------------------------------------------
    def digest_for(self, subscriber: str, day: date) -> DigestRecord | None:
        with self._tx() as db:
            row = db.execute(
                select(digests).where(digests.c.subscriber == subscriber, digests.c.digest_day == day)
            ).first()
            if row is None:
                return None
            ids = db.execute(
                select(digest_papers.c.paper_id)
                .where(digest_papers.c.digest_id == row.id)
                .order_by(digest_papers.c.position)
            ).scalars()
            return DigestRecord(
                row.id, row.subscriber, row.digest_day, row.status, row.message_id, tuple(ids)
            )

    def plan_digest(
        self, *, subscriber: str, day: date, message_id: str, paper_ids: Iterable[str]
    ) -> DigestRecord:
        """Write the digest as `planned` with its papers, before any attempt to send it."""
        ids = tuple(paper_ids)
        now = _now()
        with self._tx() as db:
            digest_id = _new_id(db.execute(
                digests.insert().values(
                    subscriber=subscriber,
                    digest_day=day,
                    status="planned",
                    message_id=message_id,
                    paper_count=len(ids),
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            ))
            for position, paper_id in enumerate(ids):
                db.execute(
                    digest_papers.insert().values(
                        digest_id=digest_id, paper_id=paper_id, subscriber=subscriber, position=position
                    )
                )
        return DigestRecord(digest_id, subscriber, day, "planned", message_id, ids)

    def release_unsent(self, subscriber: str, before: date) -> int:
        """Give back the papers of earlier digests that certainly never arrived.

        A digest left `failed` (the server refused it) or `planned` (never attempted) on an
        earlier day is marked `abandoned` and its papers become candidates again, so a bad
        morning does not lose them for good. A `sending` row is left alone: the server may
        have accepted it just before a crash, and sending its papers again could repeat them.
        """
        with self._tx() as db:
            stale = db.execute(
                select(digests.c.id).where(
                    digests.c.subscriber == subscriber,
                    digests.c.digest_day < before,
                    digests.c.status.in_(("failed", "planned")),  # not yet abandoned
                )
            ).scalars().all()
            if stale:
                db.execute(digest_papers.delete().where(digest_papers.c.digest_id.in_(stale)))
                db.execute(
                    update(digests).where(digests.c.id.in_(stale)).values(status="abandoned", updated_at=_now())
                )
        return len(stale)

    def mark(
        self, digest_id: int, status: str, *, error_code: int | None = None, error: str | None = None
    ) -> None:
        """Move a ledger row to `status`; `sending` counts an attempt."""
        values: dict[str, object] = {"status": status, "updated_at": _now()}
        if status == "sending":
            values["attempts"] = digests.c.attempts + 1
        if status in ("sent", "failed"):
            values["error_code"] = error_code
            values["error"] = error
        with self._tx() as db:
            db.execute(update(digests).where(digests.c.id == digest_id).values(**values))

    def ledger(self) -> list[dict[str, object]]:
        with self._tx() as db:
            query = select(digests).order_by(digests.c.digest_day, digests.c.subscriber)
            return [dict(row._mapping) for row in db.execute(query)]


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # only when the dialect cannot report it; SQLite and PostgreSQL do
        raise RuntimeError("the database did not return the new row's id")
    return int(key[0])


def _paper_from_row(row: object) -> Paper:
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


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets `preview` read while the scheduler writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
