"""The scheduler: grouping by send time, catch-up of a missed send, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from newsletter.scheduler import is_due_today, send_groups
from newsletter.subscribers import Subscriber

REPO_ROOT = Path(__file__).resolve().parents[1]


def _subscriber(email: str, send_at: str = "07:00", timezone: str = "UTC", active: bool = True) -> Subscriber:
    return Subscriber(email=email, keywords=("x",), max_papers=5, timezone=timezone, send_at=send_at, active=active)


def test_active_subscribers_are_grouped_by_zone_and_time() -> None:
    groups = send_groups([
        _subscriber("a@example.org"),
        _subscriber("b@example.org"),
        _subscriber("c@example.org", "08:00", "Europe/Berlin"),
        _subscriber("d@example.org", active=False),
    ])
    assert {key: [s.email for s in members] for key, members in groups.items()} == {
        ("UTC", "07:00"): ["a@example.org", "b@example.org"],
        ("Europe/Berlin", "08:00"): ["c@example.org"],
    }


def test_due_today_is_judged_in_the_subscribers_zone() -> None:
    now = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)  # 07:30 in Berlin, 01:30 in New York
    assert is_due_today(("Europe/Berlin", "07:00"), now)
    assert not is_due_today(("America/New_York", "07:00"), now)
    assert not is_due_today(("UTC", "07:00"), now)


def test_run_catches_up_a_missed_send_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    keywords: [theorem proving, Lean]\n"
        '    send_at: "00:00"\n'  # always in the past today: the start must catch it up
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"), NEWSLETTER_POLL_SECONDS="1")
    service = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-v", "run"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((tmp_path / "outbox").glob("*.eml")):
            time.sleep(0.2)
        time.sleep(1.5)  # let the poll job run again: it must not send a second digest
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
    finally:
        service.kill()
    assert service.returncode == 0, output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1, output
    assert "catching up send UTC 00:00" in output
    assert "received SIGTERM" in output and "newsletter service stopped" in output
