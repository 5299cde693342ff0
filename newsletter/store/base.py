"""How the store opens a database and runs a transaction; shared by the store's parts.

Opening a store also migrates its database to the current schema (`migrate.upgrade`), so
every command, the scheduler and `check` meet the schema the code expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from newsletter.errors import ConfigError
from newsletter.store import migrate
from newsletter.store.schema import postgres_session, sqlite_pragmas

DIALECT_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
# The driver a URL without one gets: SQLAlchemy's own default for postgresql:// is psycopg2,
# which the `postgres` extra does not install.
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
POSTGRES_EXTRA = "pip install 'newsletter[postgres]'"


def safe_url(url: str) -> str:
    """The database URL with any password masked, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def make_engine(url: str) -> Engine:
    """An engine for `url`, set up the way the store needs (SQLite pragmas, its folder).

    `postgresql://` and `postgres://` (the form hosting services hand out) mean psycopg 3.
    """
    try:
        parsed = make_url(url)
        if parsed.drivername in DEFAULT_DRIVERS:
            parsed = parsed.set(drivername=DEFAULT_DRIVERS[parsed.drivername])
        engine = create_engine(parsed)
    except ImportError as exc:  # the dialect is known, its driver is not installed
        raise ConfigError(_missing_driver(url, exc)) from None
    except (SQLAlchemyError, ValueError) as exc:
        raise ConfigError(f"NEWSLETTER_DATABASE_URL {safe_url(url)!r} is not usable: {exc}") from None
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", postgres_session)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_pragmas)
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    return engine


def _missing_driver(url: str, exc: ImportError) -> str:
    backend = make_url(url).get_backend_name()
    if exc.name is None:  # the driver is there but cannot load (psycopg: "no pq wrapper available")
        return f"NEWSLETTER_DATABASE_URL {safe_url(url)!r}: the database driver cannot load ({exc})"
    if backend == "postgresql" and exc.name == "psycopg":
        install = POSTGRES_EXTRA
    elif backend == "postgresql":
        install = f"install {exc.name!r}, or use postgresql+psycopg:// and {POSTGRES_EXTRA}"
    else:
        install = f"install the Python package {exc.name!r}"
    return (
        f"NEWSLETTER_DATABASE_URL {safe_url(url)!r} needs the {DIALECT_NAMES.get(backend, backend)} "
        f"driver {exc.name!r}, which is not installed: {install}"
    )


class StoreBase:
    """An open database with the schema in place (migrated to the newest revision)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        try:
            self.migration = migrate.upgrade(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            reason = " ".join(str(exc.orig).split())  # drivers write several lines
            raise ConfigError(f"cannot open the database {safe_url(url)!r}: {reason}") from None

    def server_version(self) -> str:
        """The database server and version, e.g. "PostgreSQL 15.4" or "SQLite 3.40.1"."""
        dialect = self.engine.dialect
        if dialect.server_version_info is None:  # set by the first connection
            with self.engine.connect():
                pass
        version = ".".join(str(part) for part in dialect.server_version_info or ())
        return f"{DIALECT_NAMES.get(dialect.name, dialect.name)} {version}".strip()

    def schema_revision(self) -> str | None:
        """The migration revision the database is at (`migrate.head_revision()` once open)."""
        with self.engine.connect() as connection:
            return migrate.current_revision(connection)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # only when the dialect cannot report it; SQLite and PostgreSQL do
        raise RuntimeError("the database did not return the new row's id")
    return int(key[0])

