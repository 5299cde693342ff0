"""The scheduler: grouping by send time, catch-up of a missed send, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from newsletter.scheduler import is_due_today, needs_catch_up, send_groups
from test_service import noon_zone_and_passed_slot
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


def test_a_missed_slot_is_caught_up_once_within_the_window() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    slot = ("UTC", "07:00")
    assert needs_catch_up(slot, now, None, 6)
    assert not needs_catch_up(slot, now, None, 1)  # missed by more than the window: tomorrow
    assert not needs_catch_up(slot, now, datetime(2026, 11, 23, 7, 0, 2, tzinfo=UTC), 6)  # it ran today
    assert needs_catch_up(slot, now, datetime(2026, 11, 22, 7, 0, tzinfo=UTC), 6)  # it ran yesterday
    assert not needs_catch_up(("UTC", "10:00"), now, None, 6)  # not due yet today


def test_run_catches_up_a_missed_send_and_stops_on_sigterm(tmp_path: Path) -> None:
    zone, send_at = noon_zone_and_passed_slot(datetime.now(UTC))  # passed a minute ago
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    keywords: [theorem proving, Lean]\n"
        f'    timezone: "{zone}"\n'
        f'    send_at: "{send_at}"\n'
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
    assert f"catching up send {zone} {send_at}" in output
    assert "received SIGTERM" in output and "newsletter service stopped" in output

    # Started again right after that send: the slot has run today, so no catch-up is claimed.
    again = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-v", "run"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(2.5)
        again.send_signal(signal.SIGTERM)
        second, _ = again.communicate(timeout=30)
    finally:
        again.kill()
    assert again.returncode == 0, second
    assert "catching up" not in second and "newsletter service started" in second, second
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
