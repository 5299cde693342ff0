"""The store's schema: every table, in one place, and how a database is opened.

Every change to these tables needs its migration in `newsletter/migrations/versions` (README,
"Development"); `tests/test_migrations.py` fails until the migrated schema matches this one.

Tables
- `dumps`: every file ingested or rejected, by content hash, so an unchanged file is skipped.
- `papers`: one row per paper identity (arXiv id, else normalised-title hash); a paper seen
  in two dumps is merged, keeping the richer metadata; `first_seen_at` drives selection.
- `dump_papers`: which dump listed which paper.
- `digests`: the delivery ledger, one row per (subscriber, digest day) with its state (a
  `models.DeliveryState`), message id, attempts, SMTP error and, when deferred, the time of the
  next attempt; the process that claimed it to send it, and until when (`store.claims`).
- `digest_papers`: which papers went into which digest; unique per (subscriber, paper), so the
  database itself refuses to record a paper twice for one subscriber.
- `suppressions`: addresses whose deliveries were refused permanently (5xx for the recipient or
  the message), with a count of such refusals in a row; at the threshold the address is
  suppressed (never mailed) until the operator clears it.
- `paper_embeddings` / `keyword_embeddings`: sentence embeddings per model (float32 bytes),
  computed once per paper (at ingest) and once per keyword, for the hybrid ranker.
- `unsubscribes`: addresses that unsubscribed themselves (a link or the CLI); they win over
  `active: true` in the subscribers file.
- `votes`: a subscriber's current "more/less like this" vote per paper (+1 / -1), with its time.
- `service_state`: small named values the service keeps (its heartbeat, the last send per slot).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

EMBEDDING_DTYPE = np.dtype("<f4")

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
    Column("status", String(16), nullable=False),  # a models.DeliveryState
    Column("message_id", String(255), nullable=False),
    Column("paper_count", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error_code", Integer),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # A deferred digest's next try; null in every other state.
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    # Who took the digest to send it (host:pid[:task]) and, when workers share the day, until
    # when a `sending` row stays theirs; null until: any later run may take it (one process).
    Column("claimed_by", String(255)),
    Column("claimed_until", DateTime(timezone=True)),
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


paper_embeddings = Table(
    "paper_embeddings",
    metadata,
    Column("paper_id", ForeignKey("papers.paper_id"), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created_at", DateTime(timezone=True), nullable=False),
)

keyword_embeddings = Table(
    "keyword_embeddings",
    metadata,
    Column("model", String(255), primary_key=True),
    Column("keyword", String(512), primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created_at", DateTime(timezone=True), nullable=False),
)

unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("address", String(320), primary_key=True),  # case-folded
    Column("unsubscribed_at", DateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),  # link | one-click | cli
)

votes = Table(
    "votes",
    metadata,
    Column("subscriber", String(320), primary_key=True),  # case-folded
    Column("paper_id", String(80), primary_key=True),
    Column("vote", SmallInteger, nullable=False),  # +1 more like this, -1 less like this
    Column("voted_at", DateTime(timezone=True), nullable=False),
)

service_state = Table(
    "service_state",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
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



def postgres_session(dbapi_connection: object, _record: object) -> None:
    # Timestamps come back in the session's time zone, which is the server's unless set: UTC
    # here, so every value the store reads is UTC whatever the server is configured with.
    # Outside a transaction, or the pool's rollback would undo the SET.
    autocommit = dbapi_connection.autocommit  # type: ignore[attr-defined]
    dbapi_connection.autocommit = True  # type: ignore[attr-defined]
    with dbapi_connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.autocommit = autocommit  # type: ignore[attr-defined]
