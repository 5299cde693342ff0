"""`newsletter run` left alone: a server that is down at the send time and then greylists gets
every digest once, by deferred retries, with no restart; a deferral past its lifetime fails.

The service runs as a subprocess with a one-second poll and retry backoff of 1-2 s, and a send
slot that passed a minute ago in a time zone where it is about noon (so "today" never crosses
midnight during the test). The SMTP server is a real aiosmtpd on a loopback port.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smtp_servers import RecordingHandler, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
READERS = ("ada@example.org", "grace@example.org", "alan@example.org")


def noon_zone_and_passed_slot(now: datetime) -> tuple[str, str]:
    """A fixed-offset zone where it is about noon now, and a send time a minute ago there."""
    offset = max(-12, min(14, 12 - now.hour))
    zone = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    local = now + timedelta(hours=offset) - timedelta(minutes=1)
    return zone, f"{local:%H:%M}"


def write_subscribers(folder: Path, zone: str, send_at: str) -> None:
    lines = ["subscribers:"]
    for address in READERS:
        lines += [f"  - email: {address}", "    keywords: [reasoning, language models]",
                  f'    timezone: "{zone}"', f'    send_at: "{send_at}"', "    send_empty: true"]
    (folder / "subscribers.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


class Greylisting(RecordingHandler):
    """451 for each address until `hold` seconds after its first try (postgrey's way)."""

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold
        self.first_seen: dict[str, float] = {}
        self.greylisted = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        first = self.first_seen.setdefault(address, time.monotonic())
        if time.monotonic() - first < self.hold:
            self.greylisted += 1
            return "451 4.7.1 greylisted, try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def start_service(folder: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"), NEWSLETTER_POLL_SECONDS="1",
        NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port), NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SMTP_TIMEOUT="5", NEWSLETTER_RETRY_MIN_SECONDS="1", NEWSLETTER_RETRY_MAX_SECONDS="2",
        NEWSLETTER_FROM_ADDRESS="digest@news.example",
    )
    env.update(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "run"], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(service: subprocess.Popen[str]) -> str:
    service.send_signal(signal.SIGTERM)
    try:
        output, _ = service.communicate(timeout=30)
    finally:
        service.kill()
    return output


def ledger(folder: Path) -> dict[str, tuple[str, str | None, int]]:
    """The ledger as the service left it; empty while the service is still creating it."""
    try:
        with sqlite3.connect(folder / "newsletter.db") as db:
            rows = db.execute("select subscriber, status, error, attempts from digests").fetchall()
    except sqlite3.OperationalError:  # the file is there, its tables are not yet
        return {}
    return {subscriber: (status, error, attempts) for subscriber, status, error, attempts in rows}


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except sqlite3.OperationalError:  # the file exists, its tables are still being created
            pass
        time.sleep(0.2)
    return False


def test_a_server_down_then_greylisting_gets_every_digest_once_without_a_restart(tmp_path: Path) -> None:
    zone, send_at = noon_zone_and_passed_slot(datetime.now(UTC))
    write_subscribers(tmp_path, zone, send_at)
    port = free_port()
    service = start_service(tmp_path, port)
    handler = Greylisting(hold=2.0)
    try:
        # Down at the send time: the catch-up finds nobody listening and defers everyone.
        assert wait_for(lambda: (tmp_path / "newsletter.db").exists() and
                        {s for s, _, _ in ledger(tmp_path).values()} == {"deferred"}
                        and len(ledger(tmp_path)) == 3, 60), "the digests were not deferred"
        rows = ledger(tmp_path)
        assert all("cannot be reached" in (error or "") or "refused" in (error or "") for _, error, _ in rows.values())
        # Up again, greylisting: 451 first, accepted a couple of seconds later.
        with ServerOn(port, handler):
            assert wait_for(lambda: len(handler.received) == 3, 60), "not every digest arrived"
            time.sleep(3)  # more retry rounds and polls: nobody may get a second copy
        output = stop(service)
    finally:
        service.kill()
    assert handler.greylisted >= 3  # each address was greylisted before it got through
    assert sorted(r.rcpt_tos[0] for r in handler.received) == sorted(READERS), output
    assert {status for status, _, _ in ledger(tmp_path).values()} == {"sent"}, output
    assert service.returncode == 0, output


def test_a_deferral_past_its_lifetime_is_marked_failed_as_expired(tmp_path: Path) -> None:
    zone, send_at = noon_zone_and_passed_slot(datetime.now(UTC))
    write_subscribers(tmp_path, zone, send_at)
    service = start_service(tmp_path, free_port(), NEWSLETTER_RETRY_LIFETIME_HOURS="0.001")  # 3.6 s
    try:
        assert wait_for(lambda: (tmp_path / "newsletter.db").exists() and len(ledger(tmp_path)) == 3
                        and {s for s, _, _ in ledger(tmp_path).values()} == {"failed"}, 60)
        output = stop(service)
    finally:
        service.kill()
    assert all((error or "").startswith("expired: ") for _, error, _ in ledger(tmp_path).values()), output
    assert service.returncode == 0, output


class ServerOn:
    """An aiosmtpd server on a given port (the one the service was told), for a block."""

    def __init__(self, port: int, handler: RecordingHandler) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> None:
        self.controller.start()

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()



def test_a_stop_during_a_job_lets_the_job_finish_then_stops(tmp_path: Path) -> None:
    """SIGTERM while the first ingest runs (a dump of 3,000 papers, several seconds): the dump is
    stored whole, then the service stops. (The stop used to wait for the job inside APScheduler's
    shutdown, which holds the lock the job needs to reconcile the send times: it never stopped.)"""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    rng = random.Random(5)
    words = [f"{rng.choice('bcdfgklmnprstvz')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{n}" for n in range(600)]
    papers = [
        {"paper": {"id": f"2611.{n:05d}", "title": " ".join(rng.sample(words, 8)).capitalize(),
                   "summary": " ".join(rng.sample(words, 60)) + ".", "authors": [{"name": "A. Author"}],
                   "upvotes": n % 50}, "publishedAt": "2026-11-29T00:00:00.000Z"}
        for n in range(3000)
    ]
    dump = dumps / "daily-2026-11-29.json"
    dump.write_text(json.dumps(papers), encoding="utf-8")
    an_hour_ago = time.time() - 3600
    os.utime(dump, (an_hour_ago, an_hour_ago))  # settled: the first ingest takes it
    write_subscribers(tmp_path, "UTC", "23:59")
    service = start_service(tmp_path, free_port(), NEWSLETTER_DUMPS_DIR=str(dumps), NEWSLETTER_CATCH_UP_HOURS="0")
    try:
        # The first ingest job records the heartbeat as it starts.
        assert wait_for(lambda: _newsletter(tmp_path, "status", "--health").returncode == 0, 60), service
        output = stop(service)
    finally:
        service.kill()
    assert service.returncode == 0, output
    assert "newsletter service stopped" in output
    with sqlite3.connect(tmp_path / "newsletter.db") as db:
        assert db.execute("select count(*) from papers").fetchone()[0] == 3000, output


def _newsletter(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)
