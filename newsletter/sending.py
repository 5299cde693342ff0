"""Sending a run of digests: plan, record, deliver, record, with a pool of workers.

    send_digests    every subscriber due a digest today, through the transport's pool
    send_test       one subscriber's digest to any address; no ledger, no suppression

The run is a bounded producer/consumer pipeline. The producer plans and renders one
subscriber at a time and writes the ledger row (`planned`, with its papers) before handing the
message to a queue of at most 2 x `transport.concurrency` messages; that many workers take
messages off the queue, mark them `sending`, deliver them and mark them `sent` or `failed`. So
rendering overlaps with sending, and memory holds a few messages, however long the list.

Crash safety comes from the ledger order: a row is `sending` before the first byte goes out
and `sent` only after the server's 250. Killed at any moment, a rerun finds every unfinished
row (`planned`, `sending`) and sends it again with the same papers and Message-ID; only a
message the server accepted in the instant before the kill (still `sending`) can arrive twice,
so at most `transport.concurrency` duplicates per crash.

The error budget stops a run that is failing for everyone: at once on a setup error (login,
TLS, sender refused, server unreachable), or when more than NEWSLETTER_MAX_ERROR_RATE of at
least MIN_SAMPLE deliveries failed. Subscribers not attempted keep their ledger row `planned`
(or have none) and get their digest on the next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid

from newsletter.delivery import Transport
from newsletter.errors import DeliveryError
from newsletter.pipeline import Outcome, Plan, PlanCache, compose, plan_digest, semantic_encoder, skipped
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
MIN_SAMPLE = 20  # deliveries finished before the error rate is judged


@dataclass
class ErrorBudget:
    """Decides when a run should stop rather than burn through the list."""

    max_rate: float
    min_sample: int = MIN_SAMPLE
    finished: int = 0
    failed: int = 0
    stopped: str | None = None

    def record(self, error: DeliveryError | None) -> None:
        self.finished += 1
        if error is None:
            return
        self.failed += 1
        if self.stopped:
            return
        if error.setup:
            self.stopped = f"stopped at the first setup error, which every message would meet: {error}"
        elif self.finished >= self.min_sample and self.failed / self.finished > self.max_rate:
            self.stopped = (
                f"stopped early: {self.failed} of {self.finished} deliveries failed "
                f"({self.failed / self.finished:.0%} > NEWSLETTER_MAX_ERROR_RATE "
                f"{self.max_rate:.0%}); last error: {error}"
            )


@dataclass
class SendReport:
    """One outcome per subscriber, in the order given, and why the run stopped early if it did."""

    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def retried(self) -> int:
        """Deliveries that needed more than one attempt (sent or not)."""
        return sum(o.attempts > 1 for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.stopped and self.count("failed") == 0

    def summary(self) -> str:
        line = (
            f"{self.count('sent')} sent ({self.retried} after retries), "
            f"{self.count('failed')} failed, {self.count('skipped')} skipped."
        )
        return f"{line} {self.stopped}" if self.stopped else line


@dataclass(frozen=True)
class _Job:
    position: int
    plan: Plan
    digest_id: int
    message: EmailMessage
    subject: str


def _record(store: Store, plan: Plan) -> int:
    """Today's ledger row for `plan`, written as `planned` (with its papers) if new."""
    if plan.digest_id is not None:
        return plan.digest_id
    email = plan.subscriber.email
    record = store.plan_digest(
        subscriber=email, day=plan.day, message_id=plan.message_id,
        paper_ids=[p.paper.paper_id for p in plan.picks],
    )
    return record.id


async def _deliver(store: Store, job: _Job, settings: Settings, transport: Transport) -> tuple[Outcome, DeliveryError | None]:
    email = job.plan.subscriber.email
    papers = len(job.plan.picks)
    store.mark(job.digest_id, "sending")
    try:
        attempts = await transport.send(job.message)
    except DeliveryError as exc:
        suppressed = store.mark_failed(
            job.digest_id, error_code=exc.code, error=str(exc), bounce=exc.bounce,
            address=email, suppress_after=settings.suppress_after,
        )
        note = f" {email} is now suppressed (NEWSLETTER_SUPPRESS_AFTER={settings.suppress_after})" if suppressed else ""
        log.error("digest for %s failed: %s%s", email, exc, note)
        return Outcome(email, "failed", papers, f"{exc}{note}", job.subject, attempts=exc.attempts), exc
    store.mark_sent(job.digest_id, email)
    log.info("digest for %s sent via %s (%d papers, %d attempts)", email, transport.name, papers, attempts)
    return Outcome(email, "sent", papers, job.plan.message_id, job.subject, attempts=attempts), None


async def _send_all(
    store: Store, subscribers: Iterable[Subscriber], settings: Settings, transport: Transport,
    now: datetime, progress: Progress | None,
) -> SendReport:
    budget = ErrorBudget(settings.max_error_rate)
    workers = max(1, transport.concurrency)
    queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=2 * workers)
    results: list[tuple[int, Outcome]] = []
    cache = PlanCache(store, semantic_encoder(settings))
    suppressed = store.suppressed_addresses()
    unsubscribed = store.unsubscribed_addresses()

    def not_attempted(position: int, email: str) -> None:
        results.append((position, Outcome(email, "skipped", detail=f"not attempted: {budget.stopped}")))

    async def produce() -> None:
        try:
            for position, subscriber in enumerate(subscribers):
                if budget.stopped:
                    not_attempted(position, subscriber.email)
                    continue
                try:
                    plan = plan_digest(
                        store, subscriber, now=now, domain=settings.sender_domain,
                        cache=cache, suppressed=suppressed, unsubscribed=unsubscribed,
                    )
                    if not plan.sendable:
                        results.append((position, skipped(plan)))
                        continue
                    rendered, message = compose(plan, settings, now)
                    digest_id = _record(store, plan)
                except Exception as exc:  # noqa: BLE001 - one subscriber's bug must not stop the rest
                    log.exception("digest for %s could not be built or recorded", subscriber.email)
                    results.append((position, Outcome(subscriber.email, "failed", detail=f"internal error: {exc!r}")))
                    continue
                await queue.put(_Job(position, plan, digest_id, message, rendered.subject))
                await asyncio.sleep(0)  # let the workers start on it while we render the next
        finally:
            for _ in range(workers):
                await queue.put(None)

    async def work() -> None:
        while (job := await queue.get()) is not None:
            email = job.plan.subscriber.email
            if budget.stopped:
                not_attempted(job.position, email)  # its row stays `planned`: next run sends it
                continue
            if progress:
                progress(f"sending to {email} ({budget.finished} done)")
            try:
                outcome, error = await _deliver(store, job, settings, transport)
            except Exception as exc:  # noqa: BLE001 - a bug for one message, not for the run
                log.exception("digest for %s could not be delivered or recorded", email)
                outcome, error = Outcome(email, "failed", detail=f"internal error: {exc!r}"), None
            budget.record(error)
            results.append((job.position, outcome))

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            for _ in range(workers):
                group.create_task(work())
    finally:
        await transport.close()
    if budget.stopped:
        log.error("%s", budget.stopped)
    results.sort(key=lambda item: item[0])
    return SendReport([outcome for _, outcome in results], budget.stopped)


def send_digests(
    store: Store,
    subscribers: Iterable[Subscriber],
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Deliver today's digest to each subscriber that is due one."""
    return asyncio.run(_send_all(store, subscribers, settings, transport, now or datetime.now(UTC), progress))


def send_test(
    store: Store,
    subscriber: Subscriber,
    to_address: str,
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Send `subscriber`'s digest for today to `to_address`, touching no ledger row.

    The papers are today's digest if one is recorded, else what a send would pick now (an
    empty note if nothing clears the floor, so the operator always sees a message). The copy
    has its own Message-ID and a "[test]" subject, so it is never mistaken for the real one.
    """
    now = now or datetime.now(UTC)
    plan = plan_digest(
        store, subscriber.model_copy(update={"active": True, "send_empty": True}),
        now=now, domain=settings.sender_domain, include_sent=True,
        cache=PlanCache(store, semantic_encoder(settings)),
    )
    if not plan.sendable:  # e.g. no new papers at all: still show the operator a message
        plan = replace(plan, reason="")
    rendered, message = compose(plan, settings, now)
    del message["To"], message["Subject"], message["Message-ID"]
    message["To"] = to_address
    message["Subject"] = f"[test] {rendered.subject}"
    message["Message-ID"] = make_msgid("test", domain=settings.sender_domain)

    async def run() -> int:
        try:
            return await transport.send(message)
        finally:
            await transport.close()

    attempts = asyncio.run(run())
    return Outcome(to_address, "sent", len(plan.picks), str(message["Message-ID"]), str(message["Subject"]), attempts)
