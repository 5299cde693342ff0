"""What `newsletter status` and `newsletter history` show, gathered from the store.

    gather_status(store, settings, subscribers, now)   the service's day as a `Status`
    health(store, settings, now)                       is the service's heartbeat fresh?
    next_send_time(timezone, send_at, now)             the next time a send slot comes round
    history_item(report)                               one digest of `history` as JSON data

Times are passed in (`now`), values come back; the CLI prints them as lines or JSON.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.models import DeliveryState
from newsletter.settings import Settings, parse_send_at
from newsletter.store import DigestReport, DumpCounts, Store
from newsletter.subscribers import SubscriberList

# The heartbeat is written by the ingest poll, which waits behind a send on the service's one
# worker: fresh means within HEARTBEAT_POLLS polls, and never less than HEARTBEAT_MIN_SECONDS,
# so a long send does not read as a dead service.
HEARTBEAT_POLLS = 3
HEARTBEAT_MIN_SECONDS = 300
FAILURE_DAYS = 7  # "recent failures": this many days back
FAILURE_LIMIT = 20


def next_send_time(timezone: str, send_at: str, now: datetime) -> datetime:
    """The first time after `now` that the clock in `timezone` shows `send_at`."""
    zone = ZoneInfo(timezone)
    hour, minute = parse_send_at(send_at)
    local_day = now.astimezone(zone).date()
    for offset in range(3):  # today, tomorrow (or the day after, across a DST gap)
        candidate = datetime.combine(local_day + timedelta(days=offset), time(hour, minute), tzinfo=zone)
        if candidate > now:
            # Through UTC and back: a time in a DST gap becomes the real instant it names.
            return candidate.astimezone(UTC).astimezone(zone)
    raise AssertionError("a time of day comes round within two days")


@dataclass(frozen=True)
class Health:
    heartbeat_at: datetime | None
    now: datetime
    limit_seconds: int

    @property
    def age_seconds(self) -> int | None:
        return None if self.heartbeat_at is None else int((self.now - self.heartbeat_at).total_seconds())

    @property
    def fresh(self) -> bool:
        return self.age_seconds is not None and self.age_seconds <= self.limit_seconds

    def line(self) -> str:
        if self.heartbeat_at is None:
            return "the service has never run on this database (no heartbeat); start it with `newsletter run`"
        age = self.age_seconds
        if self.fresh:
            return f"the service is running: last heartbeat {age} s ago"
        return (
            f"the service's last heartbeat was {age} s ago (at {self.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC), "
            f"more than {self.limit_seconds} s: it is stopped or stuck; check `newsletter run` and its log"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "heartbeat_at": _iso(self.heartbeat_at),
            "age_seconds": self.age_seconds,
            "fresh_within_seconds": self.limit_seconds,
            "fresh": self.fresh,
        }


def health(store: Store, settings: Settings, now: datetime) -> Health:
    limit = max(HEARTBEAT_POLLS * settings.poll_seconds, HEARTBEAT_MIN_SECONDS)
    return Health(store.heartbeat(), now, limit)


@dataclass(frozen=True)
class Slot:
    timezone: str
    send_at: str
    subscribers: int
    last_send: datetime | None
    next_send: datetime

    @property
    def name(self) -> str:
        return f"{self.timezone} {self.send_at}"


@dataclass(frozen=True)
class Status:
    now: datetime
    day: date  # today in NEWSLETTER_TIMEZONE: the day `today` counts
    dumps: DumpCounts
    papers: int
    subscribers: dict[str, int] | None  # None when the subscribers file cannot be read
    subscribers_problem: str | None
    slots: list[Slot]
    today: dict[str, int]
    deferred: list[DigestReport]
    failures: list[DigestReport]
    health: Health

    def to_json(self) -> dict[str, Any]:
        return {
            "time": _iso(self.now),
            "service": self.health.to_json(),
            "dumps": {
                "seen": self.dumps.seen,
                "ingested": self.dumps.ingested,
                "set_aside": self.dumps.set_aside,
                "last_ingested_at": _iso(self.dumps.last_ingested_at),
            },
            "papers": {"stored": self.papers},
            "subscribers": self.subscribers,
            "slots": [
                {
                    "timezone": slot.timezone,
                    "send_at": slot.send_at,
                    "subscribers": slot.subscribers,
                    "last_send": _iso(slot.last_send),
                    "next_send": _iso(slot.next_send),
                }
                for slot in self.slots
            ],
            "day": self.day.isoformat(),
            "today": self.today,
            "deferred": [
                {
                    "subscriber": d.subscriber,
                    "day": d.day.isoformat(),
                    "attempts": d.attempts,
                    "next_attempt_at": _iso(d.next_attempt_at),
                    "reason": d.error,
                }
                for d in self.deferred
            ],
            "failures": [
                {
                    "subscriber": f.subscriber,
                    "day": f.day.isoformat(),
                    "attempts": f.attempts,
                    "code": f.error_code,
                    "reason": f.error,
                    "at": _iso(f.updated_at),
                }
                for f in self.failures
            ],
        }


def _with_files_set_aside(counts: DumpCounts, dumps_dir: Path) -> DumpCounts:
    """The store's counts plus the files waiting in the dumps folder's rejected/ (a file moved
    there is not recorded in the store, so that putting it back ingests it)."""
    from dataclasses import replace

    from newsletter.ingest import ERROR_SUFFIX, REJECTED_DIR

    folder = dumps_dir / REJECTED_DIR
    waiting = len(list(folder.glob(f"*{ERROR_SUFFIX}"))) if folder.is_dir() else 0
    return replace(counts, set_aside=counts.set_aside + waiting) if waiting else counts


def gather_status(
    store: Store,
    settings: Settings,
    subscribers: SubscriberList | None,
    now: datetime,
    *,
    subscribers_problem: str | None = None,
) -> Status:
    """Everything `status` shows, read at `now`."""
    suppressed = store.suppressed_addresses()
    unsubscribed = store.unsubscribed_addresses()
    counts: dict[str, int] | None = None
    slots: list[Slot] = []
    if subscribers is not None:
        mailed = [
            s for s in subscribers.subscribers
            if s.active and s.email.casefold() not in suppressed and s.email.casefold() not in unsubscribed
        ]
        counts = {
            "active": len(mailed),
            "paused": sum(1 for s in subscribers.subscribers if not s.active),
            "invalid": len(subscribers.problems),
            "suppressed": len(suppressed),
            "unsubscribed": len(unsubscribed),
        }
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for s in mailed:
            groups[(s.timezone, s.send_at)].append(s.email)
        slots = [
            Slot(tz, at, len(emails), store.last_sent_at(emails), next_send_time(tz, at, now))
            for (tz, at), emails in sorted(groups.items())
        ]
    day = now.astimezone(ZoneInfo(settings.timezone)).date()
    return Status(
        now=now,
        day=day,
        dumps=_with_files_set_aside(store.dump_counts(), settings.dumps_dir),
        papers=store.paper_count(),
        subscribers=counts,
        subscribers_problem=subscribers_problem,
        slots=slots,
        today=store.states_on(day),
        deferred=store.deferred_digests(),
        failures=store.recent_failures(day - timedelta(days=FAILURE_DAYS), FAILURE_LIMIT),
        health=health(store, settings, now),
    )


def history_item(report: DigestReport) -> dict[str, Any]:
    return {
        "day": report.day.isoformat(),
        "subscriber": report.subscriber,
        "state": report.state,
        "attempts": report.attempts,
        "message_id": report.message_id,
        "sent_at": _iso(report.sent_at),
        "next_attempt_at": _iso(report.next_attempt_at),
        "error": report.error,
        "papers": [{"id": paper_id, "title": title} for paper_id, title in report.papers],
    }


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 paper`, `2 papers`, `0 papers`."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def states_line(counts: dict[str, int]) -> str:
    """`2 sent, 1 deferred, 0 failed` in DeliveryState order, states with none left out
    except sent, deferred and failed, which always show."""
    always = {DeliveryState.SENT.value, DeliveryState.DEFERRED.value, DeliveryState.FAILED.value}
    return ", ".join(
        f"{counts.get(state.value, 0)} {state.value}"
        for state in DeliveryState
        if counts.get(state.value, 0) or state.value in always
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
