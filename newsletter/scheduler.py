"""`newsletter run`: the APScheduler 3 service. An adapter; the work is `dispatch.run_day`.

Jobs
- `ingest`: every NEWSLETTER_POLL_SECONDS, ingest new dumps and re-read the subscribers file,
  adding or removing send jobs as send times change; it also beats the heartbeat.
- `send <tz> <HH:MM>`: one cron job per distinct (time zone, send_at) among active subscribers;
  it ingests what is new, then runs the day for that group.
- `retry`: every poll, sends the deferred digests that are due (exponential backoff, see
  `planning.Retry`), so a short outage or a greylisting server costs minutes, not the day.

A send slot missed while the service was down is caught up once at start, if its time passed
less than NEWSLETTER_CATCH_UP_HOURS ago and it has not run today (the store remembers each
slot's last run, so a restart right after a send claims no catch-up). Sending is idempotent
per (subscriber, day) through the ledger anyway. SIGINT/SIGTERM stop the scheduler after
in-flight jobs finish.
"""

from __future__ import annotations

import logging
import signal
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ADDED, EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.ingest import WATCH_SETTLE_SECONDS
from newsletter.day import DayReport
from newsletter.errors import NewsletterError
from newsletter.models import OutcomeStatus
from newsletter import dispatch
from newsletter.runtime import Runtime
from newsletter.logs import fields
from newsletter.settings import Settings, parse_send_at
from newsletter.roster import Roster
from newsletter.subscribers import Subscriber

log = logging.getLogger(__name__)

SendGroup = tuple[str, str]  # (timezone, "HH:MM")
INGEST_JOB = "ingest"
RETRY_JOB = "retry"
MISFIRE_GRACE_SECONDS = 3600


def send_groups(subscribers: Sequence[Subscriber]) -> dict[SendGroup, Sequence[Subscriber]]:
    """Active subscribers grouped by when their digest is due (of a roster, rosters sharing
    its spool: the service holds no subscriber objects between runs)."""
    places: dict[SendGroup, list[int]] = defaultdict(list)
    for position, subscriber in enumerate(subscribers):
        if subscriber.active:
            places[(subscriber.timezone, subscriber.send_at)].append(position)
    if isinstance(subscribers, Roster):
        return {group: subscribers.pick(positions) for group, positions in places.items()}
    return {group: [subscribers[p] for p in positions] for group, positions in places.items()}


def slot_time(group: SendGroup, now: datetime) -> datetime:
    """Today's send time of the group, in its time zone."""
    timezone, send_at = group
    local = now.astimezone(ZoneInfo(timezone))
    hour, minute = parse_send_at(send_at)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0)


def is_due_today(group: SendGroup, now: datetime) -> bool:
    """True when the group's send time has already passed today in its time zone."""
    return now >= slot_time(group, now)


def needs_catch_up(group: SendGroup, now: datetime, last_run: datetime | None, window_hours: float) -> bool:
    """A slot whose time passed today less than `window_hours` ago and that has not run since."""
    due = slot_time(group, now)
    if now < due or now - due > timedelta(hours=window_hours):
        return False
    return last_run is None or last_run < due


def _counts(report: DayReport) -> dict[str, object]:
    """What a log line says of a run: digests by outcome, what still waits, why it stopped."""
    counts: dict[str, object] = {status.value: report.count(status) for status in OutcomeStatus if status != OutcomeStatus.PREVIEWED}
    if report.waiting:
        counts["waiting"] = report.waiting
        counts["next_try"] = report.next_try.isoformat() if report.next_try else None
    if report.stopped:
        counts["stopped"] = report.stopped
    return counts


def job_id(group: SendGroup) -> str:
    return f"send {group[0]} {group[1]}"


class Service:
    """Holds the runtime (store, sender, settings) for the scheduler's jobs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.store = self.runtime.store
        # One worker: ingest, sends and retries never overlap, so two jobs for the same group
        # (a catch-up and its cron tick) cannot race to plan the same subscriber's digest.
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.scheduler = BlockingScheduler(
            executors={"default": self.executor},
            timezone=ZoneInfo(settings.timezone),
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )

    def _subscribers(self) -> Roster:
        loaded = self.runtime.subscribers()
        for problem in loaded.problems:
            log.warning("subscriber skipped: %s", problem)
        return loaded.subscribers

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
            self.runtime.ingest(settle_seconds=WATCH_SETTLE_SECONDS)  # logs each dump ingested or set aside
            if self.scheduler.running:  # else: stopping, nothing more is scheduled
                self.reconcile(self._subscribers())
        except NewsletterError as exc:
            log.error("ingest: %s", exc)

    def reconcile(self, subscribers: Sequence[Subscriber]) -> dict[SendGroup, Sequence[Subscriber]]:
        """Make the send jobs match the subscribers file."""
        groups = send_groups(subscribers)
        wanted = {job_id(group): group for group in groups}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("send ") and job.id not in wanted:
                job.remove()
        for identifier, group in wanted.items():
            if self.scheduler.get_job(identifier) is None:
                hour, minute = parse_send_at(group[1])
                job = self.scheduler.add_job(
                    self.send_group, CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(group[0])),
                    args=[group], id=identifier, name=identifier,
                )
                log.info("scheduled %s: next send %s", identifier, getattr(job, "next_run_time", None) or "when started")
        return groups

    def send_group(self, group: SendGroup) -> None:
        started = datetime.now(UTC)
        try:
            self.runtime.ingest(settle_seconds=WATCH_SETTLE_SECONDS)
            chosen = send_groups(self._subscribers()).get(group, [])
            report = dispatch.run_day(self.runtime, chosen, by_hand=False)
        except NewsletterError as exc:
            log.error("%s: %s", job_id(group), exc)
            return
        finally:
            self.store.set_state(f"slot {group[0]} {group[1]}", started.isoformat())
        log_result = log.error if not report.ok else log.info
        log_result("slot sent", extra=fields(slot=f"{group[0]} {group[1]}", **_counts(report)))

    def retry_round(self) -> None:
        """Send the deferred digests that are due, for subscribers still in the file."""
        try:
            due = self.store.deferred_due(datetime.now(UTC))
            if not due:
                return
            chosen = self._subscribers().where(lambda s: s.email in due)
            if not chosen:
                return
            log.info("retry round", extra=fields(due=len(due)))
            report = dispatch.run_day(self.runtime, chosen, by_hand=False)
        except NewsletterError as exc:
            log.error("retry round: %s", exc)
            return
        log_result = log.error if not report.ok else log.info
        log_result("retry round done", extra=fields(**_counts(report)))

    def start(self) -> None:
        groups = self.reconcile(self._subscribers())
        now = datetime.now(UTC)
        window = self.settings.catch_up_hours
        for group in groups:
            last = self.store.get_state(f"slot {group[0]} {group[1]}")
            last_run = datetime.fromisoformat(last) if last else None
            if needs_catch_up(group, now, last_run, window):
                log.info("catching up %s (its time passed while the service was down)", job_id(group))
                self.scheduler.add_job(self.send_group, args=[group], id=f"catch-up {job_id(group)}")
        self.scheduler.add_job(
            self.ingest, IntervalTrigger(seconds=self.settings.poll_seconds),
            id=INGEST_JOB, name=INGEST_JOB, next_run_time=datetime.now(UTC),
        )
        retry_every = max(1, min(self.settings.poll_seconds, int(self.settings.retry_min_seconds)))
        self.scheduler.add_job(
            self.retry_round, IntervalTrigger(seconds=retry_every), id=RETRY_JOB, name=RETRY_JOB,
        )

        stopping: list[int] = []

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.warning("received %s: finishing in-flight work, then stopping",
                        signal.Signals(signum).name)
            stopping.append(signum)
            if self.scheduler.running:  # else: asked before it started; it will not start
                # Not shutdown(wait=True): APScheduler holds its job store lock while it waits
                # for the running job, and a job that asks the scheduler for its jobs (ingest
                # reconciles the send times) would wait for that lock forever. The in-flight
                # job is waited for below, once the scheduler has stopped.
                self.scheduler.shutdown(wait=False)

        self.scheduler.add_listener(self.log_next_send, EVENT_JOB_ADDED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        web = None
        if getattr(self.settings, "serve", False):
            from newsletter.web.server import serve_in_thread

            web = serve_in_thread(self.settings, self.store, host=self.settings.serve_host, port=self.settings.serve_port)
            log.info("serving the digest's links on %s:%d", self.settings.serve_host, self.settings.serve_port)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("newsletter service started: %d send times; Ctrl-C to stop", len(groups))
        try:
            if not stopping:
                self.scheduler.start()
        finally:
            self.executor.shutdown(wait=True)  # the job in flight finishes: nothing half done
            if web is not None:
                web.stop()
            self.runtime.close()
        log.info("newsletter service stopped")


def run_service(settings: Settings) -> None:
    Service(settings).start()
