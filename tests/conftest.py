"""Shared fixtures: the real sample dumps beside the repository, and a clean environment."""

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
