"""Celery workers share the day: the shard task, the worker process and the side that waits.

With NEWSLETTER_BROKER_URL set (Redis or RabbitMQ), `dispatch.run_day` (so `newsletter send`,
the scheduler's send slots and its retry rounds) splits the subscribers into shards of
NEWSLETTER_SHARD_SIZE, enqueues one `send_shard` task per shard and waits for them
(`run_shards`). A `newsletter worker` process (`run_worker`) takes shards one at a time and runs
the same spine over each (`Runtime.run_here` -> `day.run_day`): its own settings, its own
subscribers file, its own SMTP connections, the shared database.

What makes this safe is the ledger, not the broker. Tasks are acknowledged late
(`task_acks_late`, and `task_reject_on_worker_lost`), so a worker killed mid-shard leaves its
task to be delivered again: by RabbitMQ as soon as the connection drops, by Redis after its
`visibility_timeout` (NEWSLETTER_SHARD_TIMEOUT). A task can therefore run twice, even at once;
every digest is claimed in the ledger before it is sent (`store.claims`), with a lease of
NEWSLETTER_SHARD_TIMEOUT, so only one run sends it. A run that finds digests claimed by another
retries those later (the claimer finishes them, or its lease runs out because it died), so
the shard's task ends only when each of its digests is settled. The duplicates a killed worker
can cause are those of one process: at most one per SMTP connection it had open.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from newsletter.day import HELD, DayReport, default_owner
from newsletter.errors import ConfigError
from newsletter.models import Outcome, OutcomeStatus
from newsletter.outcomes import OutcomeLog
from newsletter.settings import Settings
from newsletter.subscribers import Subscriber

if TYPE_CHECKING:
    from newsletter.runtime import Runtime

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
TASK = "newsletter.send_shard"
POLL_SECONDS = 0.5  # how often the waiting side looks at the shards' results
NO_WORKER_WARNING_SECONDS = 30.0
MAX_HELD_WAIT_SECONDS = 60  # the longest a shard waits before looking again at digests held by others
NOT_IN_FILE = "not in the worker's subscribers file (NEWSLETTER_SUBSCRIBERS_FILE)"

app = Celery("newsletter", set_as_current=False)


def configure(settings: Settings, celery: Celery = app) -> Celery:
    """Set `celery` up from the settings (the broker, the result store, the delivery rules)."""
    broker = settings.broker
    if broker is None:
        raise ConfigError("NEWSLETTER_BROKER_URL is not set: workers need a Redis or RabbitMQ broker")
    redis = broker.startswith(("redis://", "rediss://"))
    celery.conf.update(
        broker_url=broker,
        # Results go back through Redis itself, or through RabbitMQ to the one process waiting.
        result_backend=broker if redis else "rpc://",
        result_expires=max(86_400, 2 * settings.shard_timeout),
        task_default_queue=settings.broker_queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task is acknowledged when it is done, not when it is taken: a worker that dies
        # leaves it to another (field-notes, "Celery"); the ledger makes running it twice safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,  # one shard at a time: no worker hoards the day
        broker_transport_options={
            # Redis gives an unacknowledged task to another worker after this long, so it must
            # be the longest a shard may take; RabbitMQ redelivers when the connection drops.
            "visibility_timeout": settings.shard_timeout,
            "unacked_restore_interval": max(1, min(10, settings.shard_timeout // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_timeout=5,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 2},
        worker_hijack_root_logger=False,  # the CLI configured logging (plain or JSON)
        worker_redirect_stdouts=False,
    )
    return celery


def shown_broker(settings: Settings) -> str:
    return maybe_sanitize_url(settings.broker or "")


# the report, as JSON between processes ------------------------------------------------------
def report_to_json(report: DayReport) -> dict[str, Any]:
    return {
        "outcomes": [asdict(o) for o in report.outcomes],
        "stopped": report.stopped,
        "held": report.held,
    }


def report_from_json(data: dict[str, Any]) -> DayReport:
    outcomes = [Outcome(**{**o, "status": OutcomeStatus(o["status"])}) for o in data["outcomes"]]
    return DayReport(OutcomeLog(outcomes), data.get("stopped"), held=int(data.get("held", 0)))


# the worker side ------------------------------------------------------------------------------
_runtime: Runtime | None = None
_subscribers: tuple[tuple[Path, float, int], dict[str, Subscriber]] | None = None


def _worker_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the worker's runtime is built by run_worker before it takes tasks")
    return _runtime


def _subscribers_by_email(runtime: Runtime) -> dict[str, Subscriber]:
    """The worker's subscribers file, read again only when it changed."""
    global _subscribers
    path = runtime.settings.subscribers_file
    try:
        stat = path.stat()
        key = (path, stat.st_mtime, stat.st_size)
    except OSError:
        key = (path, 0.0, -1)
    if _subscribers is None or _subscribers[0] != key:
        loaded = runtime.subscribers()
        for problem in loaded.problems:
            log.warning("subscriber skipped: %s", problem)
        _subscribers = (key, {s.email.casefold(): s for s in loaded.subscribers})
    return _subscribers[1]


def run_shard(runtime: Runtime, emails: Sequence[str], now: datetime, *, by_hand: bool, owner: str) -> DayReport:
    """The spine over the shard's subscribers, claiming each digest for `owner` with a lease."""
    known = _subscribers_by_email(runtime)
    chosen = [known[e.casefold()] for e in emails if e.casefold() in known]
    missing = [Outcome(e, OutcomeStatus.FAILED, detail=NOT_IN_FILE) for e in emails if e.casefold() not in known]
    report = runtime.run_here(
        chosen, now, by_hand=by_hand, claim_owner=owner, claim_seconds=runtime.settings.shard_timeout
    )
    report.outcomes.extend(missing)
    return report


def _retry_delay(settings: Settings) -> int:
    return max(1, min(MAX_HELD_WAIT_SECONDS, settings.shard_timeout // 10))


@app.task(bind=True, name=TASK, max_retries=None)
def send_shard(
    self: Task, emails: list[str], now: str, by_hand: bool = False, done: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run the day for `emails` at `now` (ISO 8601); `done`: outcomes of earlier rounds of this
    shard, when digests held by another run were left for later."""
    runtime = _worker_runtime()
    owner = f"{default_owner()}:{self.request.id}"
    report = run_shard(runtime, emails, datetime.fromisoformat(now), by_hand=by_hand, owner=owner)
    earlier = report_from_json(done) if done else DayReport()
    held = [o.subscriber for o in report.outcomes if o.status == OutcomeStatus.SKIPPED and o.detail == HELD]
    settled = [o for o in report.outcomes if not (o.status == OutcomeStatus.SKIPPED and o.detail == HELD)]
    merged = DayReport(OutcomeLog([*earlier.outcomes, *settled]), report.stopped or earlier.stopped)
    if held:
        delay = _retry_delay(runtime.settings)
        rounds = math.ceil(2 * runtime.settings.shard_timeout / delay) + 1
        if self.request.retries < rounds:
            log.info("%d digests of this shard are claimed by another run; looking again in %d s", len(held), delay)
            raise self.retry(args=(held, now, by_hand), kwargs={"done": report_to_json(merged)}, countdown=delay)
        merged.outcomes += [o for o in report.outcomes if o.subscriber in held]
        merged.held = len(held)
    return report_to_json(merged)


def run_worker(settings: Settings, *, loglevel: str = "INFO") -> None:
    """Run a Celery worker in this process until SIGTERM/SIGINT (it finishes its shard first).

    One shard at a time (the solo pool): a worker is one process; run several for more. The
    store is opened (and migrated) before the first task, so a bad database URL is one error.
    """
    global _runtime
    from newsletter.runtime import Runtime

    configure(settings)
    logging.getLogger("celery").setLevel(loglevel)  # tasks received, done, retried
    _runtime = Runtime(settings)
    log.info("worker taking shards from %s", shown_broker(settings))
    try:
        app.worker_main([
            "worker", "--pool=solo", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle",
            f"--hostname=newsletter-{os.getpid()}@%h", f"--queues={settings.broker_queue}",
        ])
    finally:
        _runtime.close()


# the waiting side ---------------------------------------------------------------------------
def shards(emails: Sequence[str], size: int) -> list[list[str]]:
    return [list(emails[start : start + size]) for start in range(0, len(emails), size)]


def run_shards(
    runtime: Runtime, subscribers: Sequence[Subscriber], now: datetime | None, *, by_hand: bool,
    progress: Progress | None = None,
) -> DayReport:
    """Enqueue the subscribers' shards, wait for the workers to run them, merge their reports."""
    settings = runtime.settings
    configure(settings)
    now = now or datetime.now(UTC)
    parts = shards([s.email for s in subscribers], settings.shard_size)
    try:
        with app.connection_for_write() as connection:  # before any result is awaited
            connection.ensure_connection(max_retries=1)
        results = [
            send_shard.apply_async(args=(part, now.isoformat(), by_hand)) for part in parts  # type: ignore[attr-defined]
        ]
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the broker {shown_broker(settings)}: {exc}; check NEWSLETTER_BROKER_URL "
            "and that Redis or RabbitMQ is running"
        ) from None
    log.info("enqueued %d shards of up to %d subscribers", len(parts), settings.shard_size)
    started = time.monotonic()
    deadline = started + settings.shard_timeout * (len(parts) + 1)
    warned = False
    pending = set(range(len(results)))
    try:
        while pending:
            pending = {i for i in pending if not results[i].ready()}
            if not pending:
                break
            waited = time.monotonic() - started
            if progress:
                progress(f"workers: {len(parts) - len(pending)} of {len(parts)} shards done")
            if not warned and waited > NO_WORKER_WARNING_SECONDS and len(pending) == len(parts) and all(
                results[i].state == "PENDING" for i in pending
            ):
                log.warning("no worker has taken a shard after %.0f s: is `newsletter worker` running on %s?",
                            waited, shown_broker(settings))
                warned = True
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
    except OperationalError as exc:
        raise ConfigError(f"lost the broker {shown_broker(settings)} while waiting: {exc}") from None
    merged = DayReport()
    problems = []
    for index, result in enumerate(results):
        if index in pending:
            problems.append(f"shard {index + 1} not finished after {settings.shard_timeout * (len(parts) + 1)} s")
            continue
        if result.failed():
            problems.append(f"shard {index + 1} failed on its worker: {result.result!r}")
            continue
        part = report_from_json(result.result)
        merged.outcomes += part.outcomes
        merged.held += part.held
        if part.stopped and part.stopped not in problems:
            problems.append(part.stopped)
    for result in results:
        if result.ready():
            result.forget()
    merged.stopped = "; ".join(problems) or None
    merged.waiting, merged.next_try = runtime.store.deferred_waiting(datetime.now(UTC))
    return merged
