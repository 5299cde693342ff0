"""`newsletter status` and `newsletter history`: a known day in a real SQLite file, read back
through the store and the command line; the JSON and the history lines are pinned."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter import reporting
from newsletter.ingest import ingest_dumps
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import load_subscribers
from test_cli import REPO_ROOT, newsletter

NOW = datetime(2026, 4, 16, 9, 0, tzinfo=UTC)
SUBSCRIBERS = """\
subscribers:
  - email: ada@example.org
    keywords: [theorem proving, Lean]
  - email: grace@example.org
    keywords: [test-time compute]
    timezone: Europe/Berlin
    send_at: "07:30"
  - email: carol@example.org
    keywords: [robots]
  - email: old@example.org
    keywords: [robots]
  - email: edsger@example.org
    keywords: [robots]
    active: false
  - email: broken@
    keywords: [x]
"""


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_day(tmp_path: Path, day: date) -> Path:
    """A database with one day's story: 3 dumps ingested and 1 set aside; ada's digest sent,
    grace's deferred by a greylisting server, carol's refused (and carol suppressed), old@
    unsubscribed; a heartbeat 30 s before 09:00 UTC on `day`. Times are fixed."""
    (tmp_path / "subscribers.yaml").write_text(SUBSCRIBERS)
    database = tmp_path / "newsletter.db"
    store = Store(f"sqlite:///{database}")
    ingest_dumps(store, REPO_ROOT / "examples" / "dumps")
    bad = tmp_path / "incoming"
    bad.mkdir()
    (bad / "notes.csv").write_text("a,b,c\n1,2,3\n")
    ingest_dumps(store, bad / "notes.csv")  # a file named by itself is recorded, not moved
    with sqlite3.connect(database) as db:
        ids = [row[0] for row in db.execute("SELECT paper_id FROM papers ORDER BY paper_id LIMIT 3")]

    ada = store.plan_digest(subscriber="ada@example.org", day=day, message_id="<d1@news.example>", paper_ids=ids[:2])
    store.mark(ada.id, "sending")
    store.mark_sent(ada.id, "ada@example.org")
    grace = store.plan_digest(subscriber="grace@example.org", day=day, message_id="<d2@news.example>", paper_ids=ids[2:])
    store.mark(grace.id, "sending")
    store.mark(grace.id, "sending")
    carol = store.plan_digest(subscriber="carol@example.org", day=day, message_id="<d3@news.example>", paper_ids=[])
    store.mark(carol.id, "sending")
    store.mark_failed(
        carol.id, error_code=550, error="550 5.1.1 no such user", bounce=True,
        address="carol@example.org", suppress_after=1,
    )
    morning = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    store.beat(morning + timedelta(hours=9) - timedelta(seconds=30))
    store.close()
    # What the send path writes for these states (deferral, sent_at) and fixed times, so that
    # the output can be pinned.
    with sqlite3.connect(database) as db:
        at = lambda hours, minutes=0: _stamp(morning + timedelta(hours=hours, minutes=minutes))  # noqa: E731
        db.execute("UPDATE dumps SET ingested_at = ?", (at(6),))
        db.execute("UPDATE digests SET created_at = ?, updated_at = ?", (at(7), at(7, 1)))
        db.execute("UPDATE digests SET sent_at = ? WHERE message_id = '<d1@news.example>'", (at(7),))
        db.execute(
            "UPDATE digests SET status = 'deferred', next_attempt_at = ?, error_code = 451, "
            "error = '451 4.7.1 greylisted, try again later' WHERE message_id = '<d2@news.example>'",
            (at(9, 20),),
        )
        db.execute(
            "INSERT INTO unsubscribes (address, unsubscribed_at, source) VALUES ('old@example.org', ?, 'link')",
            (at(5),),
        )
    return database


def _titles(database: Path) -> dict[str, str]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT paper_id, title FROM papers"))


EXPECTED_STATUS = {
    "time": "2026-04-16T09:00:00+00:00",
    "service": {
        "heartbeat_at": "2026-04-16T08:59:30+00:00",
        "age_seconds": 30,
        "fresh_within_seconds": 300,
        "fresh": True,
    },
    "dumps": {"seen": 4, "ingested": 3, "set_aside": 1, "last_ingested_at": "2026-04-16T06:00:00+00:00"},
    "papers": {"stored": 27},
    "subscribers": {"active": 2, "paused": 1, "invalid": 1, "suppressed": 1, "unsubscribed": 1},
    "slots": [
        {
            "timezone": "Europe/Berlin", "send_at": "07:30", "subscribers": 1,
            "last_send": None, "next_send": "2026-04-17T07:30:00+02:00",
        },
        {
            "timezone": "UTC", "send_at": "07:00", "subscribers": 1,
            "last_send": "2026-04-16T07:00:00+00:00", "next_send": "2026-04-17T07:00:00+00:00",
        },
    ],
    "day": "2026-04-16",
    "today": {"planned": 0, "sending": 0, "sent": 1, "deferred": 1, "failed": 1, "abandoned": 0},
    "deferred": [
        {
            "subscriber": "grace@example.org", "day": "2026-04-16", "attempts": 2,
            "next_attempt_at": "2026-04-16T09:20:00+00:00", "reason": "451 4.7.1 greylisted, try again later",
        }
    ],
    "failures": [
        {
            "subscriber": "carol@example.org", "day": "2026-04-16", "attempts": 1, "code": 550,
            "reason": "550 5.1.1 no such user", "at": "2026-04-16T07:01:00+00:00",
        }
    ],
}


def test_status_is_pinned(tmp_path: Path) -> None:
    database = seed_day(tmp_path, NOW.date())
    settings = load_settings(database_url=f"sqlite:///{database}")
    store = Store(settings.database_url)
    subscribers = load_subscribers(tmp_path / "subscribers.yaml", max_papers=10, send_at="07:00", timezone="UTC")

    status = reporting.gather_status(store, settings, subscribers, NOW)

    assert status.to_json() == EXPECTED_STATUS


def test_status_json_from_the_command_line(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    seed_day(tmp_path, today)

    result = newsletter("status", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["today"] == {"planned": 0, "sending": 0, "sent": 1, "deferred": 1, "failed": 1, "abandoned": 0}
    assert document["day"] == today.isoformat()
    assert document["subscribers"] == EXPECTED_STATUS["subscribers"]
    assert document["dumps"]["seen"] == 4 and document["papers"] == {"stored": 27}
    assert [d["subscriber"] for d in document["deferred"]] == ["grace@example.org"]
    assert [f["reason"] for f in document["failures"]] == ["550 5.1.1 no such user"]
    assert set(document) == set(EXPECTED_STATUS)


def test_status_in_words(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    seed_day(tmp_path, today)

    result = newsletter("status", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Dumps: 4 seen (3 ingested, 1 set aside); last ingested {today} 06:00 UTC"
    assert lines[1] == "Papers: 27 papers stored"
    assert lines[2] == "Subscribers: 2 active, 1 paused, 1 invalid, 1 suppressed, 1 unsubscribed"
    assert lines[3].startswith("Send slot Europe/Berlin 07:30 (1 subscriber): last sent never, next ")
    assert lines[4].startswith(f"Send slot UTC 07:00 (1 subscriber): last sent {today} 07:00 UTC, next ")
    assert lines[5] == f"Today ({today}): 1 sent, 1 deferred, 1 failed"
    assert lines[6] == (
        f"Deferred: grace@example.org ({today}, 2 attempts), next attempt {today} 09:20 UTC: "
        "451 4.7.1 greylisted, try again later"
    )
    assert lines[7] == f"Failed: carol@example.org ({today}) 550: 550 5.1.1 no such user"
    assert lines[8].startswith("Service: the service")


def test_history_is_pinned(tmp_path: Path) -> None:
    database = seed_day(tmp_path, NOW.date())
    titles = _titles(database)
    with sqlite3.connect(database) as db:
        ids = [row[0] for row in db.execute("SELECT paper_id FROM papers ORDER BY paper_id LIMIT 3")]

    result = newsletter("history", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2026-04-16 ada@example.org: sent, 1 attempt, sent 2026-04-16 07:00 UTC, 2 papers, Message-ID <d1@news.example>",
        f"  1. {titles[ids[0]]} ({ids[0]})",
        f"  2. {titles[ids[1]]} ({ids[1]})",
        "2026-04-16 carol@example.org: failed, 1 attempt, 0 papers, Message-ID <d3@news.example>",
        "  reason: 550 5.1.1 no such user",
        "2026-04-16 grace@example.org: deferred, 2 attempts, 1 paper, Message-ID <d2@news.example>",
        "  next attempt 2026-04-16 09:20 UTC",
        "  reason: 451 4.7.1 greylisted, try again later",
        f"  1. {titles[ids[2]]} ({ids[2]})",
    ]


def test_history_of_one_subscriber_as_json(tmp_path: Path) -> None:
    database = seed_day(tmp_path, NOW.date())
    titles = _titles(database)
    with sqlite3.connect(database) as db:
        ids = [row[0] for row in db.execute("SELECT paper_id FROM papers ORDER BY paper_id LIMIT 2")]

    result = newsletter("history", "--subscriber", "ADA@example.org", "--day", "2026-04-16", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "day": "2026-04-16",
            "subscriber": "ada@example.org",
            "state": "sent",
            "attempts": 1,
            "message_id": "<d1@news.example>",
            "sent_at": "2026-04-16T07:00:00+00:00",
            "next_attempt_at": None,
            "error": None,
            "papers": [{"id": paper_id, "title": titles[paper_id]} for paper_id in ids],
        }
    ]


def test_history_of_another_day_is_empty(tmp_path: Path) -> None:
    seed_day(tmp_path, NOW.date())
    result = newsletter("history", "--day", "2026-04-15", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == "No digests recorded on 2026-04-15.\n"


def test_history_rejects_a_day_that_is_not_a_date(tmp_path: Path) -> None:
    result = newsletter("history", "--day", "yesterday", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: --day 'yesterday' is not a date as YYYY-MM-DD, e.g. 2026-04-16"


# --health ---------------------------------------------------------------------------------
def test_health_is_fresh_after_a_recent_heartbeat(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'newsletter.db'}")
    store.beat(datetime.now(UTC))
    store.close()

    result = newsletter("status", "--health", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Healthy: the service is running: last heartbeat [0-9] s ago\n", result.stdout)


def test_health_fails_on_a_stale_heartbeat(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'newsletter.db'}")
    beat = datetime.now(UTC) - timedelta(hours=1)
    store.beat(beat)
    store.close()

    result = newsletter("status", "--health", cwd=tmp_path, NEWSLETTER_POLL_SECONDS="200")

    assert result.returncode == 1
    assert re.fullmatch(
        rf"Error: the service's last heartbeat was 360[0-9] s ago \(at {beat:%Y-%m-%d %H:%M:%S} UTC\), "
        r"more than 600 s: it is stopped or stuck; check `newsletter run` and its log\n",
        result.stderr,
    ), result.stderr


def test_health_fails_without_a_heartbeat(tmp_path: Path) -> None:
    result = newsletter("status", "--health", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: the service has never run on this database (no heartbeat); start it with `newsletter run`\n"
    )


def test_freshness_is_three_polls_and_at_least_five_minutes() -> None:
    beat = datetime(2026, 4, 16, 9, 0, tzinfo=UTC)
    assert reporting.Health(beat, beat + timedelta(seconds=300), 300).fresh
    assert not reporting.Health(beat, beat + timedelta(seconds=301), 300).fresh
    assert not reporting.Health(None, beat, 300).fresh


@pytest.mark.parametrize(
    ("timezone", "send_at", "now", "expected"),
    [
        ("UTC", "07:00", datetime(2026, 4, 16, 6, 59, tzinfo=UTC), datetime(2026, 4, 16, 7, 0, tzinfo=UTC)),
        ("UTC", "07:00", datetime(2026, 4, 16, 7, 0, tzinfo=UTC), datetime(2026, 4, 17, 7, 0, tzinfo=UTC)),
        # 02:30 does not exist in Berlin the night clocks go forward: it is 03:30 CEST (01:30 UTC).
        ("Europe/Berlin", "02:30", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("America/New_York", "08:00", datetime(2026, 4, 16, 11, 0, tzinfo=UTC), datetime(2026, 4, 16, 12, 0, tzinfo=UTC)),
    ],
)
def test_next_send_time(timezone: str, send_at: str, now: datetime, expected: datetime) -> None:
    assert reporting.next_send_time(timezone, send_at, now) == expected
