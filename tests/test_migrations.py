"""Schema migrations, on SQLite and PostgreSQL: a database written by the last release upgrades
in place with nothing lost, the revisions build exactly the schema the code declares, and
processes that open a new database together migrate it once.

"The last release" is its real code: tests/fixtures/release_0_1_0/store.py is the store module
of 0.1.0 (git 661a1ce) unchanged, loaded under another name beside today's package.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from newsletter.errors import ConfigError
from newsletter.ingest import ingest_dumps
from newsletter.store import Store, metadata
from newsletter.store.base import make_engine
from newsletter.store.migrate import BASELINE_REVISION, _config, head_revision

REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASE_STORE = Path(__file__).parent / "fixtures" / "release_0_1_0" / "store.py"
RELEASE_COMMIT = "661a1ce"
EXAMPLE_DUMPS = REPO_ROOT / "examples" / "dumps"
ADA, BOB = "ada@example.org", "bob@example.org"
DAY = date(2026, 11, 23)
NEW_TABLES = {"keyword_embeddings", "unsubscribes", "votes", "service_state"}


@cache
def release_store() -> ModuleType:
    name = "newsletter_release_0_1_0_store"
    spec = importlib.util.spec_from_file_location(name, RELEASE_STORE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))
    finally:
        engine.dispose()


def write_with_the_last_release(url: str) -> dict[str, Any]:
    """Papers, dumps, a sent and a refused digest, a suppression and an embedding, written by
    0.1.0's own store; returns what that store reads back."""
    old = release_store().Store(url)
    report = ingest_dumps(old, EXAMPLE_DUMPS)
    assert report.new_papers > 20 and not report.rejected
    ids = sorted(paper.paper_id for paper in old.all_papers())
    sent = old.plan_digest(subscriber=ADA, day=DAY, message_id="<1@news.example>", paper_ids=ids[:3])
    old.mark(sent.id, "sending")
    old.mark_sent(sent.id, ADA)
    refused = old.plan_digest(subscriber=BOB, day=DAY, message_id="<2@news.example>", paper_ids=ids[3:5])
    old.mark(refused.id, "sending")
    assert old.mark_failed(
        refused.id, error_code=550, error="550 5.1.1 no such user", bounce=True, address=BOB, suppress_after=1
    )
    old.save_paper_embeddings("all-MiniLM-L6-v2", {ids[0]: np.arange(4, dtype="<f4")})
    written = {
        "papers": sorted(old.all_papers(), key=lambda p: p.paper_id),
        "ledger": old.ledger(),
        "digest": old.digest_for(ADA, DAY),
        "suppressions": [vars(s) for s in old.suppressions(include_pending=True)],
        "candidates": {who: old.candidate_ids(who, DAY + timedelta(days=1)) for who in (ADA, BOB)},
        "dumps": old.dump_stats(),
        "embedding": old.paper_embeddings("all-MiniLM-L6-v2", ids[:1]),
    }
    old.close()
    return written


def test_a_database_written_by_the_last_release_upgrades_in_place_with_nothing_lost(database_url: str) -> None:
    before = write_with_the_last_release(database_url)
    assert "alembic_version" not in inspect(create_engine(database_url)).get_table_names()

    store = Store(database_url)

    assert (store.migration.stamped, store.migration.after) == (BASELINE_REVISION, head_revision())
    assert store.schema_revision() == head_revision()
    assert sorted(store.all_papers(), key=lambda p: p.paper_id) == before["papers"]
    assert store.dump_stats() == before["dumps"]
    ledger = store.ledger()
    assert [{key: row[key] for key in old} for row, old in zip(ledger, before["ledger"])] == before["ledger"]
    assert all(row["next_attempt_at"] is None and row["sent_at"] is None for row in ledger)
    digest = store.digest_for(ADA, DAY)
    assert digest is not None and vars(digest) == vars(before["digest"])
    assert [vars(s) for s in store.suppressions(include_pending=True)] == before["suppressions"]
    assert {who: store.candidate_ids(who, DAY + timedelta(days=1)) for who in (ADA, BOB)} == before["candidates"]
    [(paper_id, vector)] = store.paper_embeddings("all-MiniLM-L6-v2", list(before["embedding"])).items()
    assert np.array_equal(vector, before["embedding"][paper_id])
    assert NEW_TABLES <= set(inspect(store.engine).get_table_names())
    assert schema_diff(database_url) == []  # the upgraded database is what a new one would be

    # ...and it keeps working: the next day's digest is planned and sent on the new schema.
    papers = store.candidate_ids(ADA, DAY + timedelta(days=1))
    record = store.plan_digest(
        subscriber=ADA, day=DAY + timedelta(days=1), message_id="<3@news.example>", paper_ids=papers[:2]
    )
    store.mark(record.id, "sent")
    assert store.statuses_on(DAY + timedelta(days=1)) == {ADA: "sent"}
    store.close()
    assert Store(database_url).migration.changed is False  # a second open finds nothing to do


def test_the_migrations_build_exactly_the_schema_the_code_declares(database_url: str) -> None:
    """A schema change without its migration fails here (README, "Development")."""
    store = Store(database_url)  # an empty database: every revision runs
    assert (store.migration.before, store.migration.after) == (None, head_revision())
    assert schema_diff(database_url) == []

    with store.engine.begin() as connection:  # every revision also steps back down, and up again
        command.downgrade(_config(connection), "base")
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        command.upgrade(_config(connection), "head")
    assert schema_diff(database_url) == []
    store.close()


def test_a_database_made_by_create_all_before_migrations_is_recognised_at_its_revision(database_url: str) -> None:
    """main between 0.1.0 and migrations made today's tables with create_all: nothing to add."""
    engine = make_engine(database_url)
    metadata.create_all(engine)
    engine.dispose()

    store = Store(database_url)

    assert (store.migration.stamped, store.migration.changed) == (head_revision(), False)
    assert store.schema_revision() == head_revision()
    store.close()


def test_processes_opening_a_new_database_together_migrate_it_once(database_url: str) -> None:
    opener = "import sys; from newsletter.store import Store; print(Store(sys.argv[1]).migration.before)"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", opener, database_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in results]
    found = sorted(out.strip() for out, _ in results)
    assert found.count("None") == 1 and found.count(head_revision()) == 3  # one created it, three found it
    assert schema_diff(database_url) == []


def test_migrate_command_upgrades_a_last_release_database(database_url: str, tmp_path: Path) -> None:
    write_with_the_last_release(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=database_url, COLUMNS="200", NO_COLOR="1")

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsletter", "migrate"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )

    first, second = migrate(), migrate()

    assert first.returncode == 0, first.stderr
    assert f"migrated from revision 0001 (written before migrations) to {head_revision()}." in first.stdout
    assert second.returncode == 0 and f"at revision {head_revision()}, the newest." in second.stdout


def test_the_vendored_release_store_is_the_released_code() -> None:
    shown = subprocess.run(
        ["git", "show", f"{RELEASE_COMMIT}:newsletter/store.py"], cwd=REPO_ROOT, capture_output=True, timeout=30
    )
    if shown.returncode != 0:
        pytest.skip(f"git history with {RELEASE_COMMIT} is not available here")
    assert shown.stdout == RELEASE_STORE.read_bytes()


def test_a_database_migrated_by_a_newer_version_is_refused_with_what_to_do(database_url: str) -> None:
    Store(database_url).close()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(ConfigError, match="revision '9999', which this version of newsletter does not know"):
        Store(database_url)
