"""`newsletter run`: the APScheduler 3 service. An adapter; the work is in `pipeline`.

Jobs
- `ingest`: every NEWSLETTER_POLL_SECONDS, ingest new dumps and re-read the subscribers file,
  adding or removing send jobs as send times change.
- `send <tz> <HH:MM>`: one cron job per distinct (time zone, send_at) among active subscribers;
  it ingests what is new, then sends that group's digests.

A send time missed while the service was down is caught up once at start: sending is idempotent
per (subscriber, day) through the ledger, so running a group whose time has passed today sends
only what has not been sent. SIGINT/SIGTERM stop the scheduler after in-flight jobs finish.
"""

from __future__ import annotations

import logging
import signal
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ADDED, EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.ingest import ingest_dumps
from newsletter import pipeline, sending
from newsletter.delivery import make_transport
from newsletter.errors import NewsletterError
from newsletter.logs import fields
from newsletter.settings import Settings, parse_send_at
from newsletter.store import Store
from newsletter.subscribers import Subscriber, load_subscribers

log = logging.getLogger(__name__)

SendGroup = tuple[str, str]  # (timezone, "HH:MM")
INGEST_JOB = "ingest"
MISFIRE_GRACE_SECONDS = 3600


def send_groups(subscribers: Iterable[Subscriber]) -> dict[SendGroup, list[Subscriber]]:
    """Active subscribers grouped by when their digest is due."""
    groups: dict[SendGroup, list[Subscriber]] = defaultdict(list)
    for subscriber in subscribers:
        if subscriber.active:
            groups[(subscriber.timezone, subscriber.send_at)].append(subscriber)
    return dict(groups)


def is_due_today(group: SendGroup, now: datetime) -> bool:
    """True when the group's send time has already passed today in its time zone."""
    timezone, send_at = group
    local = now.astimezone(ZoneInfo(timezone))
    hour, minute = parse_send_at(send_at)
    return (local.hour, local.minute) >= (hour, minute)


def job_id(group: SendGroup) -> str:
    return f"send {group[0]} {group[1]}"


class Service:
    """Holds the store and settings for the scheduler's jobs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.database_url)
        # One worker: ingest and sends never overlap, so two jobs for the same group (a
        # catch-up and its cron tick) cannot race to plan the same subscriber's digest.
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            timezone=ZoneInfo(settings.timezone),
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )

    def _subscribers(self) -> list[Subscriber]:
        s = self.settings
        loaded = load_subscribers(
            s.subscribers_file, max_papers=s.max_papers, send_at=s.send_at, timezone=s.timezone
        )
        for problem in loaded.problems:
            log.warning("subscriber skipped: %s", problem)
        return list(loaded.subscribers)

    def beat(self) -> None:
        """Tell `newsletter status --health` that the service is alive."""
        try:
            self.store.beat(datetime.now(UTC))
        except NewsletterError as exc:
            log.error("heartbeat not recorded: %s", exc)

    def log_next_send(self, event: JobEvent) -> None:
        """After a send job is added or has run: when that slot sends next."""
        if not event.job_id.startswith("send "):
            return
        job = self.scheduler.get_job(event.job_id)
        if job is not None and job.next_run_time is not None:
            slot = event.job_id.removeprefix("send ")
            log.info("next send", extra=fields(slot=slot, at=job.next_run_time.isoformat()))

    def ingest(self) -> None:
        self.beat()
        try:
            report = ingest_dumps(self.store, self.settings.dumps_dir)
            if report.ingested or report.rejected:
                log.info("ingest: %d files, %d new papers, %d set aside",
                         len(report.ingested), report.new_papers, len(report.rejected))
            self.reconcile(self._subscribers())
        except NewsletterError as exc:
            log.error("ingest: %s", exc)

    def reconcile(self, subscribers: list[Subscriber]) -> dict[SendGroup, list[Subscriber]]:
        """Make the send jobs match the subscribers file."""
        groups = send_groups(subscribers)
        wanted = {job_id(group): group for group in groups}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("send ") and job.id not in wanted:
                job.remove()
        for identifier, group in wanted.items():
            if self.scheduler.get_job(identifier) is None:
                hour, minute = parse_send_at(group[1])
                self.scheduler.add_job(
                    self.send_group, CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(group[0])),
                    args=[group], id=identifier, name=identifier,
                )
                log.info("scheduled %s", identifier)
        return groups

    def send_group(self, group: SendGroup) -> None:
        try:
            ingest_dumps(self.store, self.settings.dumps_dir)
            chosen = send_groups(self._subscribers()).get(group, [])
            report = sending.send_digests(
                self.store, chosen, self.settings, make_transport(self.settings)
            )
        except NewsletterError as exc:
            log.error("%s: %s", job_id(group), exc)
            return
        log_result = log.error if not report.ok else log.info
        log_result("%s: %s", job_id(group), report.summary())

    def start(self) -> None:
        groups = self.reconcile(self._subscribers())
        now = datetime.now(UTC)
        for group in groups:
            if is_due_today(group, now):
                log.info("catching up %s (its time passed while the service was down)", job_id(group))
                self.scheduler.add_job(self.send_group, args=[group], id=f"catch-up {job_id(group)}")
        self.scheduler.add_job(
            self.ingest, IntervalTrigger(seconds=self.settings.poll_seconds),
            id=INGEST_JOB, name=INGEST_JOB, next_run_time=datetime.now(UTC),
        )

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.warning("received %s: finishing in-flight work, then stopping",
                        signal.Signals(signum).name)
            self.scheduler.shutdown(wait=True)

        self.scheduler.add_listener(self.log_next_send, EVENT_JOB_ADDED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.warning("newsletter service started; %d send times; Ctrl-C to stop", len(groups))
        self.scheduler.start()
        self.store.close()
        log.warning("newsletter service stopped")


def run_service(settings: Settings) -> None:
    Service(settings).start()
