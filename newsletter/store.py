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
- `suppressions`: addresses whose deliveries were refused permanently (5xx for the recipient or
  the message), with a count of such refusals in a row; at the threshold the address is
  suppressed (never mailed) until the operator clears it. A delivery that goes through resets
  the count of an address that is not yet suppressed.
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
    text,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import numpy as np

from newsletter.errors import ConfigError
from newsletter.models import Paper


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


suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),  # case-folded
    Column("failures", Integer, nullable=False),
    Column("last_code", Integer),
    Column("last_error", Text),
    Column("suppressed_at", DateTime(timezone=True)),  # set once `failures` hit the threshold
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# The hottest query of a send run (once per subscriber), kept as plain SQL: building it with
# the expression language cost more than running it. Same rules as `Store.candidate_ids`.
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
)


@dataclass(frozen=True)
class Suppression:
    address: str
    failures: int
    last_code: int | None
    last_error: str | None
    suppressed_at: datetime | None


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

    def candidate_ids(self, subscriber: str, day: date) -> list[str]:
        """Ids of the papers never sent to `subscriber`, first seen since their last digest.

        Papers held by an earlier digest that certainly never arrived (see `_release_unsent`)
        count as not sent, so a preview sees what the next send will pick. Ids come back
        sorted, so subscribers with the same candidates get equal lists.
        """
        with self._tx() as db:
            rows = db.execute(_CANDIDATE_IDS, {"subscriber": subscriber, "day": day.isoformat()}).scalars()
            return sorted(rows)

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
        """Write the digest as `planned` with its papers, before any attempt to send it.

        In the same transaction, earlier digests that never arrived give their papers back
        (see `_release_unsent`).
        """
        ids = tuple(paper_ids)
        now = _now()
        with self._tx() as db:
            self._release_unsent(db, subscriber, day)
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
            if ids:
                db.execute(
                    digest_papers.insert(),
                    [
                        {"digest_id": digest_id, "paper_id": paper_id, "subscriber": subscriber, "position": position}
                        for position, paper_id in enumerate(ids)
                    ],
                )
        return DigestRecord(digest_id, subscriber, day, "planned", message_id, ids)

    def statuses_on(self, day: date) -> dict[str, str]:
        """Ledger state of every subscriber with a digest for `day` (one query for a run)."""
        with self._tx() as db:
            rows = db.execute(select(digests.c.subscriber, digests.c.status).where(digests.c.digest_day == day))
            return {subscriber: status for subscriber, status in rows}

    @staticmethod
    def _release_unsent(db: Connection, subscriber: str, before: date) -> int:
        """Give back the papers of earlier digests that certainly never arrived.

        A digest left `failed` (the server refused it) or `planned` (never attempted) on an
        earlier day is marked `abandoned` and its papers become candidates again, so a bad
        morning does not lose them for good. A `sending` row is left alone: the server may
        have accepted it just before a crash, and sending its papers again could repeat them.
        """
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
        with self._tx() as db:
            self._mark(db, digest_id, status, error_code=error_code, error=error)

    @staticmethod
    def _mark(
        db: Connection, digest_id: int, status: str, *, error_code: int | None = None, error: str | None = None
    ) -> None:
        values: dict[str, object] = {"status": status, "updated_at": _now()}
        if status == "sending":
            values["attempts"] = digests.c.attempts + 1
        if status in ("sent", "failed"):
            values["error_code"] = error_code
            values["error"] = error
        db.execute(update(digests).where(digests.c.id == digest_id).values(**values))

    def mark_sent(self, digest_id: int, address: str) -> None:
        """`sent`, and forget earlier refusals of an address that is not suppressed."""
        with self._tx() as db:
            self._mark(db, digest_id, "sent")
            db.execute(
                suppressions.delete().where(
                    suppressions.c.address == address.casefold(), suppressions.c.suppressed_at.is_(None)
                )
            )

    def mark_failed(
        self, digest_id: int, *, error_code: int | None, error: str, bounce: bool, address: str, suppress_after: int
    ) -> bool:
        """`failed`; a bounce also counts against the address. True if now suppressed."""
        with self._tx() as db:
            self._mark(db, digest_id, "failed", error_code=error_code, error=error)
            if not bounce:
                return False
            return self._count_bounce(db, address, error_code, error, suppress_after)

    @staticmethod
    def _count_bounce(db: Connection, address: str, code: int | None, error: str, threshold: int) -> bool:
        key = address.casefold()
        now = _now()
        row = db.execute(select(suppressions).where(suppressions.c.address == key)).first()
        failures = (row.failures if row is not None else 0) + 1
        suppressed_at = row.suppressed_at if row is not None else None
        if suppressed_at is None and failures >= threshold:
            suppressed_at = now
        values = {
            "failures": failures, "last_code": code, "last_error": error,
            "suppressed_at": suppressed_at, "updated_at": now,
        }
        if row is None:
            db.execute(suppressions.insert().values(address=key, **values))
        else:
            db.execute(update(suppressions).where(suppressions.c.address == key).values(**values))
        return suppressed_at is not None

    # suppressions ------------------------------------------------------------------------
    def suppressions(self, *, include_pending: bool = False) -> list[Suppression]:
        """Suppressed addresses (and, with `include_pending`, those with refusals so far)."""
        query = select(suppressions).order_by(suppressions.c.address)
        if not include_pending:
            query = query.where(suppressions.c.suppressed_at.is_not(None))
        with self._tx() as db:
            return [
                Suppression(
                    row.address, row.failures, row.last_code, row.last_error,
                    _as_utc(row.suppressed_at) if row.suppressed_at else None,
                )
                for row in db.execute(query)
            ]

    def suppressed_addresses(self) -> set[str]:
        """Case-folded addresses that must not be mailed."""
        with self._tx() as db:
            query = select(suppressions.c.address).where(suppressions.c.suppressed_at.is_not(None))
            return set(db.execute(query).scalars())

    def clear_suppression(self, address: str) -> bool:
        """Forget an address's refusals, so it is mailed again. False if it was not listed."""
        with self._tx() as db:
            result = db.execute(suppressions.delete().where(suppressions.c.address == address.casefold()))
            return bool(result.rowcount)

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
    # In WAL mode, NORMAL commits without waiting for the disk: a killed process loses no
    # committed transaction (the kernel has the WAL); only a power cut or OS crash may roll
    # back the last few, which the README's delivery guarantee states. FULL costs an fsync
    # per ledger write, several per message.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
