"""Alembic's entry point: runs the revisions in `versions/` against the store's schema.

Two callers. The store (`newsletter.store.migrate`) passes an open connection in
`config.attributes["connection"]`, already inside the transaction that holds the migration lock.
A developer running the `alembic` command (configured in pyproject.toml's `[tool.alembic]`) gets
the database of NEWSLETTER_DATABASE_URL, opened the way the store opens it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from newsletter.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters most things by copying the table: let autogenerate write batch blocks.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_settings() -> None:
    from newsletter.settings import load_settings
    from newsletter.store.base import make_engine

    engine = make_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")

_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _run_from_settings()
