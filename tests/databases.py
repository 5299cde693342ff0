"""The databases the store's tests run on: a SQLite file under tmp_path, or a fresh database
on the PostgreSQL server of the machine.

The server is POSTGRES_TEST_URL (an administrator's URL; default: user postgres on
127.0.0.1:5432, trust authentication, as on the development machines). Each PostgreSQL test
gets a database of its own, created for it and dropped after it, so tests never see each
other's rows and run in any order. Without a reachable server the PostgreSQL variants skip with
the reason; with CI set in the environment they fail instead, so a required run never passes
by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


class PostgresServer:
    """A reachable PostgreSQL server on which tests create and drop their own databases."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin: Engine = create_engine(
            self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
        )

    def url(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    @contextmanager
    def database(self, *, template: str | None = None) -> Iterator[str]:
        """A new, empty database (or a copy of `template`), dropped afterwards; yields its URL."""
        name = f"newsletter_test_{uuid.uuid4().hex[:16]}"
        with self.admin.connect() as db:
            db.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template or "template0"}"'))
        try:
            yield self.url(name)
        finally:
            with self.admin.connect() as db:  # FORCE: a store a test left open does not block it
                db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def connect_postgres() -> PostgresServer:
    """The test server, or skip (fail under CI) saying why there is none."""
    url = os.environ.get("POSTGRES_TEST_URL", DEFAULT_ADMIN_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        server = PostgresServer(url)
        with server.admin.connect() as db:
            db.execute(text("SELECT 1"))
    except ImportError as exc:
        reason = f"the PostgreSQL driver is not installed ({exc.name}); pip install -e '.[test]'"
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, without SQLAlchemy's wrapping
        reason = f"no PostgreSQL server at {shown} (set POSTGRES_TEST_URL): {' '.join(str(cause).split())}"
    else:
        return server
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the PostgreSQL tests: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def fresh_database(backend: str, folder: Path, postgres: PostgresServer | None) -> Iterator[str]:
    """A URL for a fresh, empty database of `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'data' / 'newsletter.db'}"
        return
    assert postgres is not None
    with postgres.database() as url:
        yield url
