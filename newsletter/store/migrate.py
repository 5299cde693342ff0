"""Schema migrations: brings whatever database the store opens to the current schema.

The revisions are Alembic scripts in `newsletter/migrations/versions`, shipped inside the
package; this module runs them through Alembic's API, so nothing needs an alembic.ini at run
time. Three kinds of database arrive here:

- an empty one: every revision runs, in order;
- one Alembic already tracks (an `alembic_version` table): the revisions after its own run;
- one written before migrations existed (the store's tables, no `alembic_version`): it is
  recognised by the newest change it already has, stamped at that revision, then upgraded.

The whole upgrade is one transaction holding a lock (an advisory lock on PostgreSQL, the write
lock on SQLite), so processes that start together (a scheduler and its workers) migrate once
and the others wait, then find the schema current.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from newsletter.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BASELINE_REVISION = "0001"  # the last release before migrations (0.1.0)

# How a database from before migrations tells which revision it is at: the newest of these
# (revision, table, column) it already has. 0.1.0 made the 0001 tables; main between 0.1.0
# and migrations (da7c801) made the 0002 schema with create_all.
# A later mark only meets a database made by `metadata.create_all` of a newer schema (tests,
# tools): it is at that revision too.
_PRE_MIGRATION_MARKS = (("0002", "digests", "next_attempt_at"), ("0003", "digests", "claimed_by"))
_OLDEST_TABLE = "dumps"  # every schema the store ever made has it

MIGRATION_WAIT_MS = 60_000  # how long SQLite waits for another process's migration
# Any constant will do: it names this application's lock among the database's advisory locks.
_PG_LOCK_ID = 0x6E6C5F6D6967  # "nl_mig"


@dataclass(frozen=True)
class Migration:
    """What opening a database did to its schema."""

    before: str | None  # the revision found; None for an empty database
    after: str
    stamped: str | None = None  # set when a pre-migration database was recognised

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        """What happened, for the operator: "created at 0002", "migrated from 0001 to 0002"…"""
        if self.before is None:
            return f"created at revision {self.after}"
        found = f"{self.before} (written before migrations)" if self.stamped else self.before
        if not self.changed:
            return f"at revision {self.after}, the newest" if not self.stamped else f"recognised as {found}"
        return f"migrated from revision {found} to {self.after}"


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:  # only if versions/ were emptied
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:  # alembic's word for "no such revision"
        return False


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> Migration:
    """Bring the database to the newest revision; a current one costs one query."""
    with engine.connect() as connection:
        found = current_revision(connection)
    head = head_revision()
    if found == head:
        return Migration(before=found, after=head)
    if found is not None and not _known(found):
        raise ConfigError(
            f"the database's schema is at revision {found!r}, which this version of newsletter does not "
            f"know (its newest is {head!r}): a newer version migrated it; install that version again"
        )
    with engine.begin() as connection:
        _lock(connection)
        found = current_revision(connection)  # another process may have migrated meanwhile
        stamped = None if found is not None else _pre_migration_revision(connection)
        config = _config(connection)
        if stamped is not None:
            command.stamp(config, stamped)
        command.upgrade(config, "head")
        return Migration(before=found or stamped, after=current_revision(connection) or head, stamped=stamped)


def _lock(connection: Connection) -> None:
    """Hold off other processes migrating the same database until this transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    elif connection.dialect.name == "sqlite":
        # The driver would start the transaction only at the first write, after the reads that
        # decide what to run; IMMEDIATE takes the write lock now (others wait: busy_timeout).
        # Creating a new database takes seconds on a busy machine, and a service starting while
        # health checks open the same file must wait for it, not fail: wait up to a minute here.
        connection.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _pre_migration_revision(connection: Connection) -> str | None:
    """The revision a database written before migrations is at; None if it is empty."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if _OLDEST_TABLE not in tables:
        return None
    revision = BASELINE_REVISION
    for mark, table, column in _PRE_MIGRATION_MARKS:
        if table in tables and column in {c["name"] for c in inspector.get_columns(table)}:
            revision = mark
    return revision
