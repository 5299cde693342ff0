"""Crash safety: `newsletter send` killed with SIGKILL partway, then run again.

The process under test is the real CLI in a subprocess, on a SQLite file and on a PostgreSQL
database; the SMTP server is aiosmtpd in this
process, a little slow, so the kill lands while messages are in flight. The guarantee (README,
"Delivery guarantee"): every active subscriber ends up with exactly one digest for the day,
except that a message the server accepted just before the kill, before its ledger row was
marked `sent`, is sent again: at most NEWSLETTER_SMTP_CONNECTIONS duplicates per kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text

from smtp_servers import RecordingHandler, smtp_server

READERS = 300
CONNECTIONS = 4


def _write_subscribers(path: Path) -> list[str]:
    emails = [f"reader{n:03d}@example.org" for n in range(READERS)]
    lines = ["defaults:", "  max_papers: 3", "subscribers:"]
    for email in emails:
        lines += [f"  - email: {email}", "    keywords: [reasoning]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return emails


def _env(port: int, dumps: Path, database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SMTP_CONNECTIONS=str(CONNECTIONS),
        NEWSLETTER_FROM_ADDRESS="digest@news.example",
        NEWSLETTER_DUMPS_DIR=str(dumps),
        NEWSLETTER_DATABASE_URL=database_url,
    )
    return environment


def _send_and_kill(cwd: Path, env: dict[str, str], handler: RecordingHandler, after: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send"], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while len(handler.received) < after:
        assert process.poll() is None, "the send finished before it could be killed"
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def test_sigkill_mid_send_then_rerun_gives_everyone_one_digest(
    tmp_path: Path, shared_dumps: Path, database_url: str
) -> None:
    emails = _write_subscribers(tmp_path / "subscribers.yaml")
    handler = RecordingHandler(delay=0.01)
    with smtp_server(handler) as server:
        env = _env(server.port, shared_dumps, database_url)
        _send_and_kill(tmp_path, env, handler, after=60)
        first_kill = len(handler.received)
        _send_and_kill(tmp_path, env, handler, after=first_kill + 100)
        finished = subprocess.run(
            [sys.executable, "-m", "newsletter", "send"], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=180,
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr
        received = Counter(r.rcpt_tos[0] for r in handler.received)

    assert set(received) == set(emails)  # nobody lost
    duplicates = {email: n for email, n in received.items() if n > 1}
    assert all(n == 2 for n in duplicates.values())
    assert len(duplicates) <= 2 * CONNECTIONS  # two kills, at most the in-flight messages each
    ledger = create_engine(database_url)
    with ledger.connect() as db:
        rows = db.execute(text("select status, count(*) from digests group by status")).all()
        repeated = db.execute(text("select count(*) from digests where attempts > 1")).scalar_one()
    ledger.dispose()
    assert [tuple(row) for row in rows] == [("sent", READERS)]
    assert repeated >= len(duplicates)  # every duplicate is visible in the ledger as a 2nd attempt
    print(f"kills after {first_kill} and {first_kill + 100}+ messages; duplicates: {len(duplicates)}")
