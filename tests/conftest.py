"""Shared fixtures: the real sample dumps beside the repository, a clean environment, real
SMTP servers, and the databases the store runs on (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DUMPS = REPO_ROOT.parent / "shared" / "dumps"


@pytest.fixture
def shared_dumps() -> Path:
    """The four real HF captures in ../shared/dumps (CI always has them)."""
    if not SHARED_DUMPS.is_dir():
        pytest.skip(f"real dumps not found at {SHARED_DUMPS} (they live in ../shared/dumps)")
    return SHARED_DUMPS


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NEWSLETTER_* variable or .env from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# Real SMTP servers (tests/smtpd.py) ---------------------------------------------------------
# pytest puts tests/ first on sys.path, so `smtpd` here is tests/smtpd.py, not the stdlib
# module of the same name (deprecated in 3.11, removed in 3.12).
from collections.abc import Iterator  # noqa: E402

from smtp_servers import RecordingHandler, SmtpServer, TlsMaterial, make_tls_material, smtp_server  # noqa: E402


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server on loopback with a recording, fault-injecting handler."""
    with smtp_server(RecordingHandler()) as server:
        yield server


@pytest.fixture
def tls_material(tmp_path: Path) -> TlsMaterial:
    """A throwaway CA (trustme), its PEM file under tmp_path, and a server context it signed."""
    directory = tmp_path / "tls"
    directory.mkdir()
    return make_tls_material(directory)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real retry loop but shrink its backoff to milliseconds."""
    monkeypatch.setattr("newsletter.delivery.smtp.BACKOFF_BASE_SECONDS", 0.001)


# Databases (tests/databases.py) ------------------------------------------------------------
from databases import BACKENDS, PostgresServer, connect_postgres, fresh_database  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The PostgreSQL server tests create their databases on (skips without one; fails in CI)."""
    return connect_postgres()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a test using it runs once on SQLite and once on PostgreSQL."""
    server = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    with fresh_database(request.param, tmp_path, server) as url:
        yield url
