"""How the store opens a database and runs a transaction; shared by the store's parts.

Opening a store also migrates its database to the current schema (`migrate.upgrade`), so
every command, the scheduler and `check` meet the schema the code expects.

Opening translates every way a database can be unusable into one ConfigError that says what
to do: a folder that cannot be written, a file that is not a database, a URL that names no
database SQLAlchemy knows, a PostgreSQL URL without its driver (the `postgres` extra), a
server that cannot be reached. URLs in messages never show a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from newsletter.errors import ConfigError
from newsletter.store import migrate
from newsletter.store.schema import postgres_session, service_state, sqlite_pragmas

SETTING = "NEWSLETTER_DATABASE_URL"
# SQLite errors that mean the file or its folder cannot be used, not a passing contention.
_UNUSABLE = ("readonly database", "unable to open database", "not a database", "disk i/o error")

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
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unusable(url, exc) from None
    return engine


shown = safe_url  # the name the CLI knows it by


def _unusable(url: str, exc: SQLAlchemyError | OSError) -> ConfigError:
    """The operator's version of an error met while opening or writing the database."""
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        return ConfigError(
            f"cannot create the database {safe_url(url)}: {why}{where}; make its folder writable "
            f"or point {SETTING} somewhere that is"
        )
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    if "not a database" in reason:
        advice = f"{SETTING} points at a file that is not a newsletter database; point it at a new path"
    elif "readonly" in reason or "unable to open" in reason:
        advice = f"make the file and its folder writable by this user, or point {SETTING} elsewhere"
    else:
        advice = f"check {SETTING} and that the database server is reachable"
    return ConfigError(f"cannot use the database {safe_url(url)}: {reason}; {advice}")


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
        except (DBAPIError, OperationalError) as exc:
            self.engine.dispose()
            raise _unusable(url, exc) from None

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
        try:
            with self.engine.begin() as connection:
                yield connection
        except OperationalError as exc:
            # A database that became unusable (made read-only, its disk gone) is the operator's
            # to fix; anything else (a lock held too long) stays as it is.
            if any(marker in str(exc.orig).lower() for marker in _UNUSABLE):
                raise _unusable(self.url, exc) from None
            raise

    def check_writable(self) -> None:
        """Raise ConfigError unless a write to the database would succeed (nothing is kept)."""
        try:
            with self.engine.connect() as connection:
                transaction = connection.begin()
                try:
                    connection.execute(
                        insert(service_state).values(name="check writable", value="", updated_at=now())
                    )
                finally:
                    transaction.rollback()
        except SQLAlchemyError as exc:
            raise _unusable(self.url, exc) from None

    def reachable(self) -> bool:
        """Whether the database answers a query on its schema (for `GET /healthz`)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT count(*) FROM digests WHERE 0 = 1"))
        except SQLAlchemyError:
            return False
        return True

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

