"""The command line a newcomer meets (issue 11): --version, -v anywhere, help that keeps its
words, unknown settings, a database `check` really opens, folders that cannot be written."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_cli import COMMANDS, REPO_ROOT, newsletter

EXAMPLE_ENV = {
    "NEWSLETTER_SUBSCRIBERS_FILE": str(REPO_ROOT / "subscribers.example.yaml"),
    "NEWSLETTER_DUMPS_DIR": str(REPO_ROOT / "examples" / "dumps"),
}


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create files in. Root (as in CI) writes through any mode
    bits, so for root it is sysfs, where nobody can create files."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    sysfs = Path("/sys/fs")
    if not sysfs.is_dir() or os.access(sysfs, os.W_OK) and _can_create_in(sysfs):
        pytest.skip("running as root with no read-only folder to test against")
    yield sysfs


def _can_create_in(folder: Path) -> bool:
    try:
        (folder / "newsletter-probe").mkdir()
    except OSError:
        return False
    (folder / "newsletter-probe").rmdir()
    return True


# --version, -v, help ------------------------------------------------------------------------
def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = newsletter("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"newsletter {version('newsletter')}\n"


def test_verbose_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    for args in (["-v", "check"], ["check", "-v"], ["check", "--verbose"]):
        result = newsletter(*args, cwd=tmp_path, **EXAMPLE_ENV)
        assert result.returncode == 0, (args, result.stderr)
        assert "All good." in result.stdout


def test_help_keeps_its_words_and_shows_flags_as_flags(tmp_path: Path) -> None:
    send = newsletter("send", "--help", cwd=tmp_path).stdout
    assert 'as a "[test]" copy' in " ".join(send.split())
    preview = newsletter("preview", "--help", cwd=tmp_path).stdout
    assert "[default: NEWSLETTER_PREVIEW_DIR or ./preview]" in " ".join(preview.split())
    check = newsletter("check", "--help", cwd=tmp_path).stdout
    assert re.search(r"^\s+--smtp\s+Also connect", check, re.MULTILINE), check
    top = newsletter("--help", cwd=tmp_path).stdout
    assert "-v, --verbose" in top and "--version" in top
    for command in COMMANDS:
        text = newsletter(command, "--help", cwd=tmp_path).stdout
        assert "<bool>" not in text, command


def test_every_new_command_is_listed(tmp_path: Path) -> None:
    top = newsletter("--help", cwd=tmp_path).stdout
    assert re.search(r"^\s+status\s", top, re.MULTILINE) and re.search(r"^\s+history\s", top, re.MULTILINE)


# settings -----------------------------------------------------------------------------------
def test_a_misspelled_setting_is_one_error_line(tmp_path: Path) -> None:
    result = newsletter("check", cwd=tmp_path, NEWSLETTER_SMTP_HOSTNAME="mail.example.org")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: unknown setting NEWSLETTER_SMTP_HOSTNAME in the environment: did you mean NEWSLETTER_SMTP_HOST?\n"
    )


def test_a_misspelled_setting_in_dotenv_names_its_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NEWSLETTER_SEND_AT=07:30\nNEWSLETTER_TIME_ZONE=Europe/Berlin\n")
    result = newsletter("send", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "Error: unknown setting NEWSLETTER_TIME_ZONE in .env:2: did you mean NEWSLETTER_TIMEZONE?\n"


# check: the transport and the database --------------------------------------------------------
def test_check_names_the_outbox_transport_and_opens_the_database(tmp_path: Path) -> None:
    result = newsletter("check", cwd=tmp_path, **EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "Settings: ok",
        "Transport: outbox folder outbox (.eml files; nothing is mailed until NEWSLETTER_SMTP_HOST is set)",
    ]
    assert re.fullmatch(
        r"Database: ok \(SQLite 3\.[0-9.]+ at sqlite:///newsletter\.db, writable; schema created at revision \w+\)",
        lines[2],
    ), lines[2]
    assert "Dumps: 3 files in" in result.stdout
    assert (tmp_path / "newsletter.db").is_file()  # created, with its schema


def test_check_names_the_smtp_transport(tmp_path: Path) -> None:
    result = newsletter(
        "check", cwd=tmp_path, **EXAMPLE_ENV, NEWSLETTER_SMTP_HOST="mail.example.org",
        NEWSLETTER_SMTP_USERNAME="mailer", NEWSLETTER_SMTP_PASSWORD="not-shown-anywhere",
    )
    assert result.returncode == 0, result.stderr
    assert "Transport: SMTP mail.example.org:587 (starttls, as mailer)\n" in result.stdout
    assert "not-shown-anywhere" not in result.stdout + result.stderr


def _check_database(tmp_path: Path, url: str) -> tuple[int, str]:
    result = newsletter("check", cwd=tmp_path, **EXAMPLE_ENV, NEWSLETTER_DATABASE_URL=url)
    assert "Traceback" not in result.stderr
    assert "All good." not in result.stdout
    return result.returncode, result.stderr


def test_check_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("just some notes\n" * 100)
    code, stderr = _check_database(tmp_path, "sqlite:///notes.db")
    assert code == 1
    assert stderr == (
        "Error: cannot use the database sqlite:///notes.db: file is not a database; "
        "NEWSLETTER_DATABASE_URL points at a file that is not a newsletter database; point it at a new path\n"
    )


def test_check_rejects_a_folder_it_cannot_write(tmp_path: Path, unwritable_dir: Path) -> None:
    url = f"sqlite:///{unwritable_dir}/state/newsletter.db"
    code, stderr = _check_database(tmp_path, url)
    assert code == 1
    assert re.fullmatch(
        rf"Error: cannot create the database {re.escape(url)}: (Permission denied|Operation not permitted) "
        rf"\({re.escape(str(unwritable_dir))}/state\); make its folder writable or point "
        r"NEWSLETTER_DATABASE_URL somewhere that is\n",
        stderr,
    ), stderr


def test_check_rejects_a_database_file_it_cannot_create(tmp_path: Path, unwritable_dir: Path) -> None:
    url = f"sqlite:///{unwritable_dir}/newsletter.db"
    code, stderr = _check_database(tmp_path, url)
    assert code == 1
    assert stderr == (
        f"Error: cannot use the database {url}: unable to open database file; make the file and its "
        "folder writable by this user, or point NEWSLETTER_DATABASE_URL elsewhere\n"
    )


def test_check_names_the_postgres_extra_for_a_missing_driver(tmp_path: Path) -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg is installed here")
    code, stderr = _check_database(tmp_path, "postgresql://news:s3cret@db.example.org/news")
    assert code == 1
    assert stderr == (
        "Error: NEWSLETTER_DATABASE_URL 'postgresql+psycopg://news:***@db.example.org/news' needs the PostgreSQL "
        "driver 'psycopg', which is not installed: pip install 'newsletter[postgres]'\n"
    )


def test_a_command_on_an_unusable_database_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("just some notes\n" * 100)
    result = newsletter("status", cwd=tmp_path, NEWSLETTER_DATABASE_URL="sqlite:///notes.db")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot use the database sqlite:///notes.db: file is not a database;")
    assert result.stderr.count("\n") == 1


# preview --out --------------------------------------------------------------------------------
def test_preview_into_a_folder_it_cannot_write_is_one_error_line(tmp_path: Path, unwritable_dir: Path) -> None:
    target = unwritable_dir / "preview"
    result = newsletter("preview", "--out", str(target), cwd=tmp_path, **EXAMPLE_ENV)
    assert result.returncode == 1
    assert re.fullmatch(
        rf"Error: cannot write to the folder {re.escape(str(target))} \(--out\): "
        r"(Permission denied|Operation not permitted); choose a folder you can write to\n",
        result.stderr,
    ), result.stderr
    assert not (tmp_path / "newsletter.db").exists()  # stopped before touching anything


def test_preview_into_a_file_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = newsletter("preview", "--out", "taken", cwd=tmp_path, **EXAMPLE_ENV)
    assert result.returncode == 1
    assert result.stderr == "Error: taken (--out) is a file, not a folder; name a folder for the rendered files\n"


# plurals ----------------------------------------------------------------------------------------
def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    source = REPO_ROOT / "examples" / "dumps" / "2026-11-22_hf-daily.md"
    (dumps / source.name).write_bytes(source.read_bytes())
    subscribers = tmp_path / "subscribers.yaml"
    subscribers.write_text("subscribers:\n  - email: ada@example.org\n    keywords: [Lean]\n")

    check = newsletter("check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "Dumps: 1 file in dumps\n" in check.stdout

    newsletter("ingest", cwd=tmp_path)
    again = newsletter("ingest", str(dumps / source.name), cwd=tmp_path)
    assert "Dumps: 0 ingested, 1 unchanged, 0 set aside; 0 new papers (6 stored)." in again.stderr
    status = newsletter("status", cwd=tmp_path)
    assert "Send slot UTC 07:00 (1 subscriber)" in status.stdout


def test_check_shows_an_unsubscribed_entry_as_skipped(tmp_path: Path) -> None:
    gone = newsletter("unsubscribe", "grace@example.org", cwd=tmp_path, **EXAMPLE_ENV)
    assert gone.returncode == 0, gone.stderr
    result = newsletter("check", cwd=tmp_path, **EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    assert "; 1 entry skipped: unsubscribed (grace@example.org)" in result.stdout
