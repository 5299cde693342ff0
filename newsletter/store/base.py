"""How the store opens a database and runs a transaction; shared by the store's parts.

Opening translates every way a database can be unusable into one ConfigError that says what
to do: a folder that cannot be written, a file that is not a database, a URL that names no
database SQLAlchemy knows, a PostgreSQL URL without its driver (the `postgres` extra). URLs
in messages never show a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from newsletter.errors import ConfigError
from newsletter.store.schema import metadata, service_state, sqlite_pragmas

SETTING = "NEWSLETTER_DATABASE_URL"
# Plain PostgreSQL URLs use psycopg 3, the driver the `postgres` extra installs (SQLAlchemy's
# own default for them is psycopg2).
POSTGRES_SCHEMES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"}
POSTGRES_HINT = "install the PostgreSQL driver with: pip install 'newsletter[postgres]'"
# SQLite errors that mean the file or its folder cannot be used, not a passing contention.
_UNUSABLE = ("readonly database", "unable to open database", "not a database", "disk i/o error")


def engine_url(url: str) -> str:
    """`url` with plain PostgreSQL schemes mapped to the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    return f"{POSTGRES_SCHEMES.get(scheme, scheme)}{sep}{rest}" if sep else url


def shown(url: str) -> str:
    """The URL as messages show it: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _unusable(url: str, exc: SQLAlchemyError | OSError) -> ConfigError:
    """The operator's version of an error met while opening or writing the database."""
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        return ConfigError(
            f"cannot create the database {shown(url)}: {why}{where}; make its folder writable "
            f"or point {SETTING} somewhere that is"
        )
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    if "not a database" in reason:
        advice = f"{SETTING} points at a file that is not a newsletter database; point it at a new path"
    elif "readonly" in reason or "unable to open" in reason:
        advice = f"make the file and its folder writable by this user, or point {SETTING} elsewhere"
    else:
        advice = f"check {SETTING} and that the database server is reachable"
    return ConfigError(f"cannot use the database {shown(url)}: {reason}; {advice}")


class StoreBase:
    """An open database with the schema in place."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(engine_url(url))
        except ImportError as exc:  # the dialect is known, its driver is not installed
            raise ConfigError(
                f"{SETTING} {shown(url)} needs a database driver that is not installed "
                f"({exc}); {POSTGRES_HINT}" if "postgres" in url.split("://")[0]
                else f"{SETTING} {shown(url)} needs a database driver that is not installed ({exc})"
            ) from None
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigError(
                f"{SETTING} {shown(url)} is not a database URL SQLAlchemy knows ({exc}); "
                "e.g. sqlite:///newsletter.db"
            ) from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)
            database = self.engine.url.database
            if database and database != ":memory:":
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise _unusable(url, exc) from None
        self._create_schema()

    def _create_schema(self) -> None:
        # Two processes opening a new database at once (the service starting while a
        # healthcheck runs `status --health`) can both see a table missing; the second
        # CREATE then fails with "already exists". Each such failure means another process
        # created a table, which happens once per table: one pass more than there are tables
        # is enough to finish.
        attempts = len(metadata.tables) + 1
        for attempt in range(attempts):
            try:
                metadata.create_all(self.engine)
                return
            except OperationalError as exc:
                if "already exists" not in str(exc.orig) or attempt == attempts - 1:
                    raise _unusable(self.url, exc) from None
            except SQLAlchemyError as exc:
                raise _unusable(self.url, exc) from None

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
                connection.execute(text("SELECT count(*) FROM digests WHERE 0"))
        except SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # only when the dialect cannot report it; SQLite and PostgreSQL do
        raise RuntimeError("the database did not return the new row's id")
    return int(key[0])

