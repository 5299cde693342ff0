"""The command line as an operator meets it: exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    "preview", "send", "run", "ingest", "rank", "parse", "check", "suppressed", "serve", "unsubscribe",
    "resubscribe", "resend", "status", "history", "migrate", "worker",
)


def newsletter(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(env, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=cwd, env=environment,
        capture_output=True, text=True, timeout=120,
    )


def _subscribers(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    keywords: [theorem proving, Lean]\n"
        "  - email: broken@\n"
        "    keywords: [x]\n"
        "  - email: grace@example.org\n"
        "    keywords: [test-time compute]\n"
    )
    return path


def test_every_command_is_documented(tmp_path: Path) -> None:
    result = newsletter("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
        help_text = newsletter(command, "--help", cwd=tmp_path)
        assert help_text.returncode == 0 and "Usage:" in help_text.stdout


def test_bad_settings_give_one_line_and_exit_1(tmp_path: Path) -> None:
    result = newsletter("check", cwd=tmp_path, NEWSLETTER_TIMEZONE="Mars/Olympus")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: invalid settings: NEWSLETTER_TIMEZONE: 'Mars/Olympus' is not a known time zone; "
        'use an IANA name such as "Europe/Berlin"'
    )
    assert "Traceback" not in result.stderr


def test_check_reports_every_problem(tmp_path: Path) -> None:
    _subscribers(tmp_path)
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "notes.csv").write_text("a,b,c\n1,2,3\n")
    result = newsletter("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "subscribers.yaml:4: entry 2 (broken@): email is not a valid address" in result.stderr
    assert "dumps/notes.csv:1: not a recognised dump" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_passes_on_the_example_setup(tmp_path: Path) -> None:
    result = newsletter(
        "check", cwd=tmp_path,
        NEWSLETTER_SUBSCRIBERS_FILE=str(REPO_ROOT / "subscribers.example.yaml"),
        NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"),
    )
    assert result.returncode == 0, result.stderr
    assert "All good." in result.stdout
    assert "Ranking: lexical" in result.stdout or "Ranking: hybrid (model all-MiniLM-L6-v2 loaded" in result.stdout


def test_check_says_how_digests_are_ranked(tmp_path: Path) -> None:
    env = {
        "NEWSLETTER_SUBSCRIBERS_FILE": str(REPO_ROOT / "subscribers.example.yaml"),
        "NEWSLETTER_DUMPS_DIR": str(REPO_ROOT / "examples" / "dumps"),
    }
    result = newsletter("check", cwd=tmp_path, NEWSLETTER_SEMANTIC_MODEL="off", **env)
    assert result.returncode == 0, result.stderr
    assert "Ranking: lexical (NEWSLETTER_SEMANTIC_MODEL is off)" in result.stdout or (
        "Ranking: lexical (the semantic extra is not installed)" in result.stdout
    )


def test_check_fails_on_a_semantic_model_that_cannot_load(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the semantic extra is not installed")
    (tmp_path / "not-a-model").mkdir()
    result = newsletter(
        "check", cwd=tmp_path, NEWSLETTER_SEMANTIC_MODEL=str(tmp_path / "not-a-model"), HF_HUB_OFFLINE="1",
        NEWSLETTER_SUBSCRIBERS_FILE=str(REPO_ROOT / "subscribers.example.yaml"),
        NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"),
    )
    assert result.returncode == 1
    assert "Ranking:" in result.stderr and "cannot be loaded" in result.stderr
    assert "Traceback" not in result.stderr


def test_rank_json_on_the_real_dumps(tmp_path: Path, shared_dumps: Path) -> None:
    result = newsletter(
        "rank", "--dumps", str(shared_dumps), "--keyword", "theorem proving", "--keyword", "Lean",
        "--top", "5", "--json", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert items and {"id", "title", "score", "matched", "picked"} <= set(items[0])
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    picked = [item for item in items if item["picked"]]
    assert 1 <= len(picked) <= 5 and picked == items[: len(picked)]
    assert all(item["matched"] for item in items)
    assert any("theorem" in item["title"].lower() for item in picked)
    assert not list(tmp_path.iterdir())  # touches no state


def test_preview_then_send_through_the_outbox(tmp_path: Path, shared_dumps: Path) -> None:
    _subscribers(tmp_path)
    env = {"NEWSLETTER_DUMPS_DIR": str(shared_dumps)}
    preview = newsletter("preview", cwd=tmp_path, **env)
    assert preview.returncode == 0, preview.stderr
    assert "Skipped: subscribers.yaml:4: entry 2 (broken@)" in preview.stderr
    assert "Dumps: 4 ingested, 0 unchanged, 0 set aside; 229 new papers (229 stored)." in preview.stderr
    previews = sorted(p.name for p in (tmp_path / "preview").iterdir())
    assert len(previews) == 6 and all("ada@example.org" in p or "grace@example.org" in p for p in previews)
    with sqlite3.connect(tmp_path / "newsletter.db") as db:
        assert db.execute("select count(*) from digests").fetchone() == (0,)
    assert not (tmp_path / "outbox").exists()

    first = newsletter("send", cwd=tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert "2 digests sent, 0 deferred, 0 failed, 0 skipped via the outbox folder outbox (NEWSLETTER_SMTP_HOST is not set)." in first.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    second = newsletter("send", cwd=tmp_path, **env)
    assert second.returncode == 0
    assert "0 digests sent, 0 deferred, 0 failed, 2 skipped" in second.stdout and "already sent today" in second.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_a_file_that_is_not_a_dump_is_set_aside(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "readme.md").write_text("# Notes\n\nNothing to see.\n")
    result = newsletter("ingest", cwd=tmp_path)
    assert result.returncode == 1
    assert "Set aside: dumps/readme.md:1: not a recognised dump" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["send", "preview"])
def test_an_unknown_subscriber_is_an_operator_error(tmp_path: Path, command: str) -> None:
    _subscribers(tmp_path)
    (tmp_path / "dumps").mkdir()
    result = newsletter(command, "--subscriber", "nobody@example.org", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "Error: nobody@example.org is not a valid entry in subscribers.yaml"
    )


# operator tools for delivery ----------------------------------------------------------------
def _smtp_env(server, tls, password: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from smtp_servers import USERNAME

    return {
        "NEWSLETTER_SMTP_HOST": server.host,
        "NEWSLETTER_SMTP_PORT": str(server.port),
        "NEWSLETTER_SMTP_SECURITY": "starttls",
        "NEWSLETTER_SMTP_CA_FILE": str(tls.ca_file),
        "NEWSLETTER_SMTP_USERNAME": USERNAME,
        "NEWSLETTER_SMTP_PASSWORD": password,
        "NEWSLETTER_DUMPS_DIR": str(tmp_dumps(server)),
    }


def tmp_dumps(_server: object) -> Path:
    return Path("dumps")


@pytest.mark.parametrize("good_password", [True, False])
def test_check_smtp_walks_through_tls_and_login_and_sends_nothing(tmp_path: Path, tls_material, good_password: bool) -> None:  # type: ignore[no-untyped-def]
    from smtp_servers import PASSWORD, starttls_server

    _subscribers(tmp_path)
    (tmp_path / "dumps").mkdir()
    with starttls_server(tls_material) as server:
        password = PASSWORD if good_password else "wrong"
        result = newsletter("check", "--smtp", cwd=tmp_path, **_smtp_env(server, tls_material, password))
        received = list(server.handler.received)

    assert received == []
    lines = [line for line in result.stdout.splitlines() if line.startswith("SMTP")]
    steps = [line.split()[1:3] for line in lines]
    if good_password:
        assert result.returncode == 1  # the broken@ entry in subscribers.yaml still fails the check
        assert steps == [["ok", "connect"], ["ok", "EHLO"], ["ok", "STARTTLS"], ["ok", "EHLO"], ["ok", "AUTH"], ["ok", "QUIT"]]
        assert "TLSv1." in result.stdout and "verified" in result.stdout
    else:
        assert result.returncode == 1
        assert steps[-1] == ["FAIL", "AUTH"] and "NEWSLETTER_SMTP_PASSWORD" in lines[-1]
    assert password not in result.stdout + result.stderr  # the secret never reaches the output


def test_send_to_writes_one_test_copy_and_no_ledger(tmp_path: Path, shared_dumps: Path) -> None:
    _subscribers(tmp_path)
    result = newsletter(
        "send", "--to", "operator@example.net", "--subscriber", "ada@example.org",
        cwd=tmp_path, NEWSLETTER_DUMPS_DIR=str(shared_dumps),
    )
    assert result.returncode == 0, result.stderr
    assert "Sent ada@example.org's digest" in result.stdout and "[test]" in result.stdout
    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert eml.name.startswith("operator@example.net")
    with sqlite3.connect(tmp_path / "newsletter.db") as db:
        assert db.execute("select count(*) from digests").fetchone() == (0,)
    bad = newsletter("send", "--to", "operator@\nBcc: x@y", cwd=tmp_path, NEWSLETTER_DUMPS_DIR=str(shared_dumps))
    assert bad.returncode == 1 and "is not an email address" in bad.stderr


def test_suppressed_lists_and_clears(tmp_path: Path) -> None:
    from newsletter.store import Store
    from newsletter.store.suppressions import count_bounce

    store = Store(f"sqlite:///{tmp_path / 'newsletter.db'}")
    with store._tx() as db:
        for _ in range(3):
            count_bounce(db, "Gone@Example.org", 550, "550 5.1.1 mailbox unavailable", 3)
    store.close()

    listed = newsletter("suppressed", cwd=tmp_path)
    assert listed.returncode == 0 and "gone@example.org" in listed.stdout and "550 5.1.1" in listed.stdout
    cleared = newsletter("suppressed", "--clear", "gone@example.org", cwd=tmp_path)
    assert cleared.returncode == 0 and "Cleared gone@example.org" in cleared.stdout
    assert "No suppressed addresses." in newsletter("suppressed", cwd=tmp_path).stdout
    again = newsletter("suppressed", "--clear", "gone@example.org", cwd=tmp_path)
    assert again.returncode == 1 and "not on the suppression list" in again.stderr


# --- newsletter parse, and rank over a folder with a bad file (issue 13) ---------------------

WILD = REPO_ROOT / "tests" / "fixtures" / "wild"


def _wild_folder(tmp_path: Path, *names: str) -> Path:
    import shutil

    folder = tmp_path / "captures"
    folder.mkdir()
    for name in names:
        shutil.copyfile(WILD / name, folder / name)
    return folder


def test_parse_json_lists_every_paper_and_every_rejected_file(tmp_path: Path) -> None:
    folder = _wild_folder(tmp_path, "trending_structured.md", "no_cards.md")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = newsletter("parse", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 1  # a file could not be parsed
    document = json.loads(result.stdout)
    assert set(document) == {"papers", "rejected", "skipped"}
    assert [(p["id"], p["title"], p["arxiv_id"]) for p in document["papers"]] == [
        ("arxiv:2604.07001", "Streaming Video World Models with Bounded Memory", "2604.07001"),
        ("arxiv:2309.06180",
         "Efficient Memory Management for Large Language Model Serving with PagedAttention",
         "2309.06180"),
        (document["papers"][2]["id"], "OpenHands Lite: A Small Agent Harness for Repository Tasks", None),
    ]  # fmt: skip
    assert document["papers"][2]["id"].startswith("title:")
    first = document["papers"][0]
    assert (first["upvotes"], first["published"], first["organization"], first["format"]) == (
        212, "2026-04-03", "Acme Robotics", "hf-markdown"
    )
    assert first["source_file"] == str(folder / "trending_structured.md")
    assert document["rejected"] == [
        {
            "file": str(folder / "no_cards.md"),
            "line": 1,
            "reason": "not a recognised dump: no paper card found (expected an HF papers capture "
            "as text, Markdown, HTML or JSON, or an arXiv feed); first line was "
            "'Title: Models - Hugging Face'",
        }
    ]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # touches no state


def test_parse_shows_the_format_and_the_papers(tmp_path: Path) -> None:
    result = newsletter("parse", str(WILD / "arxiv_listing.rss"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "arxiv_listing.rss: arxiv-feed, 2 papers" in result.stdout
    assert "Draft Trees Beat Draft Chains in Speculative Decoding" in result.stdout
    assert "2604.10888" in result.stdout and "Mei Lin, Tomasz Nowak, Priya Raman" in result.stdout
    assert "1 files parsed, 0 set aside; 2 distinct papers." in result.stdout


def test_parse_a_missing_path_is_one_error_line(tmp_path: Path) -> None:
    result = newsletter("parse", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'nowhere'}: no such file or folder"


def test_rank_ranks_what_parses_and_reports_what_it_set_aside(tmp_path: Path) -> None:
    folder = _wild_folder(tmp_path, "no_cards.md", "notebook_export_plain.txt", "arxiv_api.atom")
    result = newsletter(
        "rank", "--dumps", str(folder), "--keyword", "speculative decoding", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    titles = [item["title"] for item in json.loads(result.stdout)]
    assert "Draft Trees Beat Draft Chains in Speculative Decoding" in titles
    assert len(titles) == len(set(titles))  # the same paper from two formats ranks once
    assert f"Set aside: {folder / 'no_cards.md'}:1: not a recognised dump" in result.stderr


# the store ---------------------------------------------------------------------------------
# Runs the real CLI with psycopg unimportable, as on a machine without the postgres extra.
WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None; from newsletter.cli import app; app(prog_name='newsletter')"
)


@pytest.mark.parametrize("command", ["check", "send", "migrate"])
def test_a_postgresql_url_without_the_driver_is_one_error_line_naming_the_extra(tmp_path: Path, command: str) -> None:
    (tmp_path / "dumps").mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(
        COLUMNS="200", NO_COLOR="1",
        NEWSLETTER_DATABASE_URL="postgresql+psycopg://newsletter:s3cret@db.example/newsletter",
        NEWSLETTER_SUBSCRIBERS_FILE=str(REPO_ROOT / "subscribers.example.yaml"),
    )
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, command], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: NEWSLETTER_DATABASE_URL 'postgresql+psycopg://newsletter:***@db.example/newsletter' needs the "
        "PostgreSQL driver 'psycopg', which is not installed: pip install 'newsletter[postgres]'"
    )
    assert "s3cret" not in result.stdout + result.stderr


def test_check_reports_the_database_and_its_schema(tmp_path: Path, database_url: str) -> None:
    from newsletter.store.migrate import head_revision

    env = {
        "NEWSLETTER_SUBSCRIBERS_FILE": str(REPO_ROOT / "subscribers.example.yaml"),
        "NEWSLETTER_DUMPS_DIR": str(REPO_ROOT / "examples" / "dumps"),
        "NEWSLETTER_DATABASE_URL": database_url,
    }
    first = newsletter("check", cwd=tmp_path, **env)
    again = newsletter("check", cwd=tmp_path, **env)

    assert first.returncode == 0, first.stderr
    server = "PostgreSQL 1" if database_url.startswith("postgresql") else "SQLite 3."
    head = head_revision()
    assert f"Database: ok ({server}" in first.stdout
    assert f"at {database_url}, writable; schema created at revision {head}" in first.stdout
    assert f"schema at revision {head}, the newest" in again.stdout


def test_check_fails_on_a_database_it_cannot_reach(tmp_path: Path) -> None:
    from smtp_servers import free_port

    url = f"postgresql+psycopg://newsletter:s3cret@127.0.0.1:{free_port()}/newsletter"
    result = newsletter(
        "check", cwd=tmp_path, NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_SUBSCRIBERS_FILE=str(REPO_ROOT / "subscribers.example.yaml"),
        NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"),
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot use the database {url.replace('s3cret', '***')}: connection failed")
    assert "Connection refused" in line and "Traceback" not in result.stderr and "All good." not in result.stdout
