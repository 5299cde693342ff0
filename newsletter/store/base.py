"""How the store opens a database and runs a transaction; shared by the store's parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from newsletter.errors import ConfigError
from newsletter.store.schema import metadata, sqlite_pragmas


class StoreBase:
    """An open database with the schema in place."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url)
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigError(f"NEWSLETTER_DATABASE_URL {url!r} is not usable: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)
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

