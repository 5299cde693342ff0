"""The day: plan, compose, deliver and record every subscriber's digest. One spine.

    run_day(store, subscribers, sender, transport, now, options) -> DayReport

`newsletter send`, the scheduler's send slots and retry rounds all call this one function,
with plain values built at the edge (`newsletter.runtime`). Data walks one way:

    store snapshot ─▶ plan (batch ranker) ─▶ render + compose ─▶ ledger `planned`
        ─▶ `sending` ─▶ transport ─▶ `sent` / `deferred` / `failed`

Planning and composing are CPU work: with `options.workers` they run in a process pool beside
the event loop that talks SMTP (`newsletter.preparing`), in batches of subscribers, a few
batches ahead; otherwise in this process, a small batch at a time. Either way memory holds a
few batches, however long the list.

Crash safety comes from the ledger order. A batch's digests are written `planned` (with their
papers) in one transaction before any of them is handed over (by the preparer, in the worker
that composed them); each is `sending` before its
first byte goes out and `sent` only after the server's 250. Digests are claimed (`sending`)
CLAIM_AHEAD at a time, committed before they are queued for the connections; the `sent` writes
of all connections are committed together (group commit: one transaction for whatever is
waiting), and a connection waits for its `sent` to be on disk before it takes the next digest,
so the order holds on disk. Killed at any moment, a rerun sends every unfinished digest again with the same
papers and Message-ID; only a message the server accepted in the instant before its `sent`
was committed can arrive twice: at most one per connection.

Runs may share a day (Celery workers, `newsletter.workers`): the `sending` mark is a claim
(`store.claims`), taken only if no other run took the digest since this one planned it, so a
digest two runs planned is sent by one; the other reports it `HELD`. With a lease
(`options.claim_seconds`), a digest left `sending` stays its claimer's until the lease ends.

A transient failure that outlasts the transport's quick retries leaves the digest `deferred`
with the reason and the time of its next try (exponential backoff, `Retry`); the scheduler's
retry rounds and every later `send` pick it up when due, until its lifetime is over, when it
is marked `failed` ("expired"). A permanent refusal (5xx) is `failed` at once. The error
budget stops a run that is failing for everyone: at once on a setup error (login, TLS, sender
refused, server unreachable), or when more than `max_error_rate` of at least MIN_SAMPLE
deliveries failed; the digests not attempted are deferred, never dropped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.delivery import Transport
from newsletter.errors import ConfigError, DeliveryError
from newsletter.models import DeliveryState, Outcome, OutcomeStatus, Sender
from newsletter.planning import Retry, local_day
from newsletter.preparing import Prepared, Preparer, PrepareSetup, inline_preparer, pool_preparer
from newsletter.store import Claim, DeliveryEvent, Lease, Store
from newsletter.outcomes import OutcomeLog
from newsletter.roster import timezones
from newsletter.subscribers import Subscriber

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
MIN_SAMPLE = 20  # deliveries finished before the error rate is judged
STOPPED_SHOWN = "not attempted: the run stopped (why: see the summary)"
POOL_THRESHOLD = 2_000  # fewer subscribers than this are prepared in this process
HELD = "being sent by another run (claimed in the ledger)"
CLAIM_AHEAD = 32  # digests claimed in one statement, just before they are queued for sending


@dataclass(frozen=True)
class DayOptions:
    """How a run behaves; plain values from the settings."""

    retry: Retry = Retry()
    max_error_rate: float = 0.2
    suppress_after: int = 3
    workers: int = 0  # processes that plan and compose; 0: this process
    pool_from: int = POOL_THRESHOLD  # the fewest subscribers for which the workers are started
    resend_failed: bool = True  # a run by hand tries again today's refused digests
    semantic_model: str | None = None  # the hybrid ranker's model, when it is on
    # Claims (`store.claims`): who this run is, and how long a digest it claimed stays its own
    # (None: no lease, the next run takes a digest left `sending` at once: one process).
    claim_owner: str = ""
    claim_seconds: float | None = None


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


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


@dataclass
class DayReport:
    """One outcome per digest, in the order of the subscribers; why the run stopped early if it
    did; where the digests went; deferred digests still waiting afterwards."""

    outcomes: OutcomeLog = field(default_factory=OutcomeLog)
    stopped: str | None = None
    transport: str = ""
    waiting: int = 0  # deferred digests that wait for a later try
    next_try: datetime | None = None
    held: int = 0  # digests another run had claimed (a worker on the same shard): theirs to send

    def count(self, status: OutcomeStatus | str) -> int:
        return self.outcomes.count(status)

    @property
    def retried(self) -> int:
        """Digests sent that needed more than one attempt."""
        return self.outcomes.retried

    @property
    def ok(self) -> bool:
        return not self.stopped and self.count(OutcomeStatus.FAILED) == 0

    def summary(self) -> str:
        sent = self.count(OutcomeStatus.SENT)
        parts = [plural(sent, "digest") + " sent" + (f" ({self.retried} after retries)" if self.retried else "")]
        parts.append(f"{self.count(OutcomeStatus.DEFERRED)} deferred")
        parts.append(f"{self.count(OutcomeStatus.FAILED)} failed")
        parts.append(f"{self.count(OutcomeStatus.SKIPPED)} skipped")
        line = ", ".join(parts) + (f" via {self.transport}" if self.transport else "") + "."
        if self.waiting:
            line += (
                f" {plural(self.waiting, 'deferred digest')} wait for a retry"
                + (f", the next at {self.next_try:%Y-%m-%d %H:%M} UTC" if self.next_try else "")
                + "."
            )
        return f"{line} {self.stopped}" if self.stopped else line


@dataclass(frozen=True, slots=True)
class _Job:
    item: Prepared
    digest_id: int
    claimed: bool = False  # `sending` for this run, on disk


class LedgerWriter:
    """Group commit for delivery events and claims: whatever all connections have waiting is
    written in one transaction, and each writer resumes once its change is on disk."""

    def __init__(self, store: Store, lease: Lease) -> None:
        self.store = store
        self.lease = lease
        self._events: list[DeliveryEvent] = []
        self._claims: list[Claim] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._claim_waiters: list[tuple[asyncio.Future[set[int]], set[int]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.suppressed: list[str] = []
        self.commits = 0
        self._failed: BaseException | None = None  # a commit that failed stops every later write

    async def record(self, event: DeliveryEvent) -> None:
        if self._failed is not None:
            raise self._failed
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.append(event)
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def claim(self, claims: Sequence[Claim]) -> set[int]:
        """Take digests to send them (`sending`); the ids taken (not those another run has)."""
        if self._failed is not None:
            raise self._failed
        waiter: asyncio.Future[set[int]] = asyncio.get_running_loop().create_future()
        self._claims.extend(claims)
        self._claim_waiters.append((waiter, {claim.digest_id for claim in claims}))
        self._wake.set()
        return await waiter

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the other connections add theirs to this commit
            events, waiters = self._events, self._waiters
            claims, claim_waiters = self._claims, self._claim_waiters
            self._events, self._waiters, self._claims, self._claim_waiters = [], [], [], []
            if events or claims:
                try:
                    claimed, suppressed = self.store.commit_deliveries(claims, self.lease, events)
                    self.suppressed += suppressed
                    self.commits += 1
                except BaseException as exc:
                    self._failed = exc
                    for waiter in [*waiters, *(claim_waiter for claim_waiter, _ in claim_waiters)]:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    raise
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                for claim_waiter, wanted in claim_waiters:
                    if not claim_waiter.done():
                        claim_waiter.set_result(wanted & claimed)
            elif self._closed:
                return


def run_day(
    store: Store,
    subscribers: Sequence[Subscriber],
    sender: Sender,
    transport: Transport,
    now: datetime | None = None,
    options: DayOptions = DayOptions(),
    *,
    progress: Progress | None = None,
) -> DayReport:
    """Deliver every digest due at `now` to `subscribers`: today's, and deferred ones due."""
    # What is alive now (the subscribers, the imports) lives through the run: kept out of the
    # garbage collector's full passes, which would walk 100,000 subscribers again and again.
    gc.freeze()
    try:
        return asyncio.run(_run_day(store, subscribers, sender, transport, now or datetime.now(UTC), options, progress))
    finally:
        gc.unfreeze()


async def _run_day(
    store: Store,
    subscribers: Sequence[Subscriber],
    sender: Sender,
    transport: Transport,
    now: datetime,
    options: DayOptions,
    progress: Progress | None,
) -> DayReport:
    started = time.monotonic()

    def clock() -> datetime:  # the run's `now`, moved on by the time the run has taken
        return now + timedelta(seconds=time.monotonic() - started)

    budget = ErrorBudget(options.max_error_rate)
    connections = max(1, transport.concurrency)
    queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=2 * connections)
    results = OutcomeLog()  # in a spool: a run of 100,000 must not hold 100,000 objects
    writer = LedgerWriter(store, Lease(options.claim_owner or default_owner(), options.claim_seconds))
    held = 0
    pending_bounces = store.pending_bounces()
    setup = PrepareSetup(
        database_url=store.url,
        days=days_at(timezones(subscribers), now),
        sender=sender,
        now=now,
        retry=options.retry,
        resend_failed=options.resend_failed,
        semantic_model=options.semantic_model,
    )
    preparer: Preparer = (
        pool_preparer(setup, options.workers)
        if options.workers > 0 and len(subscribers) >= options.pool_from
        else inline_preparer(setup, store)
    )

    def outcome(item: Prepared, status: OutcomeStatus, detail: str, attempts: int = 0) -> None:
        results.add(Outcome(item.email, status, item.papers, detail, item.subject, attempts), item.position, item.order)

    def deferral(item: Prepared, reason: str) -> DeliveryEvent:
        """`deferred` with the next try after backoff, or `failed` once its lifetime is over."""
        at = clock()
        expires = item.created_at + timedelta(hours=options.retry.lifetime_hours)
        if at >= expires:
            return DeliveryEvent(0, DeliveryState.FAILED, item.email, None, f"expired: {reason}")
        next_try = min(expires, at + timedelta(seconds=options.retry.delay(item.rounds + 1)))
        return DeliveryEvent(0, DeliveryState.DEFERRED, item.email, None, reason, next_attempt_at=next_try)

    async def defer(
        job: _Job, reason: str, attempts: int = 0, *, shown: str | None = None, claimed: bool = True
    ) -> None:
        """Defer one digest; the ledger keeps the whole `reason`, the run's outcome may say
        `shown` instead (a server-level failure is told once, in the summary, not per address).
        `claimed`: this run holds the row; else the change applies only if nobody took it."""
        event = deferral(job.item, reason)
        await writer.record(DeliveryEvent(
            job.digest_id, event.state, event.address, None, event.error, event.next_attempt_at,
            seen_attempts=None if claimed else job.item.rounds,
        ))
        if event.state is DeliveryState.FAILED:
            outcome(job.item, OutcomeStatus.FAILED, event.error or reason, attempts)
        else:
            when = f"{event.next_attempt_at:%H:%M} UTC" if event.next_attempt_at else "later"
            outcome(job.item, OutcomeStatus.DEFERRED, f"{shown or reason} (next try {when})", attempts)

    async def produce() -> None:
        try:
            async for batch, expired in preparer.batches(subscribers):
                for row in expired:
                    await writer.record(DeliveryEvent(row.id, DeliveryState.FAILED, row.subscriber, None,
                                                      f"expired: {row.error or 'deferred too long'}",
                                                      seen_attempts=row.attempts))
                ready = [item for item in batch if item.composed is not None]
                for item in batch:
                    if item.composed is None:
                        outcome(item, OutcomeStatus.SKIPPED if not item.failed else OutcomeStatus.FAILED, item.reason)
                jobs: list[_Job] = []
                for item in ready:
                    if item.held or item.digest_id is None:  # another run planned it first: theirs
                        hold(item)
                        continue
                    jobs.append(_Job(item, item.digest_id))
                for start in range(0, len(jobs), CLAIM_AHEAD):
                    await queue_claimed(jobs[start : start + CLAIM_AHEAD])
        finally:
            for _ in range(connections):
                await queue.put(None)

    async def queue_claimed(jobs: list[_Job]) -> None:
        """Claim `jobs` (the `sending` mark: on disk before their first byte, and only if no
        other run took them since this one planned them, see `store.claims`) and queue them
        for the connections. Once the run has stopped, nothing more is claimed: the jobs go
        to the connections unclaimed, to be deferred."""
        if budget.stopped:
            for job in jobs:
                await queue.put(job)
            return
        claimed = await writer.claim([Claim(job.digest_id, job.item.rounds) for job in jobs])
        for job in jobs:
            if job.digest_id in claimed:
                await queue.put(replace(job, claimed=True))
            else:
                hold(job.item)

    def hold(item: Prepared) -> None:
        nonlocal held
        held += 1
        outcome(item, OutcomeStatus.SKIPPED, HELD)

    async def work() -> None:
        while (job := await queue.get()) is not None:
            item = job.item
            if budget.stopped:
                await defer(job, f"not attempted: {budget.stopped}", shown=STOPPED_SHOWN, claimed=job.claimed)
                continue
            if progress:
                progress(f"sending to {item.email} ({budget.finished} done)")
            assert job.claimed and item.composed is not None
            try:
                attempts = await transport.send(item.composed)
            except DeliveryError as exc:
                budget.record(exc)
                if exc.permanent and not exc.setup:
                    await writer.record(DeliveryEvent(
                        job.digest_id, DeliveryState.FAILED, item.email, exc.code, str(exc),
                        bounce=exc.bounce, suppress_after=options.suppress_after,
                    ))
                    log.error("digest for %s failed: %s", item.email, exc)
                    outcome(item, OutcomeStatus.FAILED, str(exc), exc.attempts)
                elif exc.server_level:
                    await defer(job, str(exc), exc.attempts, shown=STOPPED_SHOWN)
                else:
                    log.warning("digest for %s deferred: %s", item.email, exc)
                    await defer(job, str(exc), exc.attempts)
                continue
            budget.record(None)
            await writer.record(DeliveryEvent(
                job.digest_id, DeliveryState.SENT, item.email,
                clear_bounces=item.email.casefold() in pending_bounces,
            ))
            outcome(item, OutcomeStatus.SENT, item.message_id, attempts)

    writing = asyncio.ensure_future(writer.run())
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            for _ in range(connections):
                group.create_task(work())
    finally:
        writer.close()
        await writing
        await transport.close()
        preparer.close()
    for address in writer.suppressed:
        log.error("%s is now suppressed (NEWSLETTER_SUPPRESS_AFTER=%d)", address, options.suppress_after)
    if budget.stopped:
        log.error("%s", budget.stopped)
    waiting, next_try = store.deferred_waiting(clock())
    return DayReport(results, budget.stopped, transport.name, waiting, next_try, held)


def default_owner() -> str:
    """This process, as a claim names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def days_at(zones: Iterable[str], now: datetime) -> tuple[date, ...]:
    """The calendar days it is at `now` in `zones`: the days whose digests are in play."""
    return tuple(sorted({now.astimezone(ZoneInfo(zone)).date() for zone in zones}))


def send_copy(
    store: Store,
    subscriber: Subscriber,
    sender: Sender,
    transport: Transport,
    now: datetime | None = None,
    *,
    to_address: str | None = None,
    day: date | None = None,
    semantic_model: str | None = None,
) -> Outcome:
    """Send `subscriber`'s digest again, with a new Message-ID: to `to_address` as a "[test]"
    copy that touches no ledger row (the papers recorded for the day, else what a send would
    pick now, else an empty note, so the operator always sees a message); or, without
    `to_address`, to the subscriber (a deliberate resend of the day's recorded digest, whose
    ledger row then counts one more round).
    """
    from newsletter.composing import TEST_PREFIX, compose
    from newsletter.message import test_message_id
    from newsletter.preparing import make_planner

    now = now or datetime.now(UTC)
    target_day = day or local_day(subscriber, now)
    setup = PrepareSetup(
        database_url=store.url, days=(target_day,), sender=sender, now=now, retry=Retry(),
        semantic_model=semantic_model,
    )
    planner = make_planner(setup, store)
    planner.include_sent = True
    planner.suppressed = planner.unsubscribed = frozenset()
    copy = replace(subscriber, active=True, send_empty=to_address is not None)
    plans = [plan for _, plan in planner.plan([copy]) if plan.day == target_day]
    if not plans:
        raise ConfigError(f"no digest for {subscriber.email} on {target_day}")
    plan = plans[-1]
    if to_address is None and plan.digest_id is None:
        raise ConfigError(f"no digest was recorded for {subscriber.email} on {target_day}; nothing to resend")
    if not plan.sendable:  # e.g. no new papers at all: still show the operator a message
        plan = replace(plan, reason="")
    rendered, composed = compose(
        plan, sender, now, to_address=to_address, message_id=test_message_id(sender.domain),
        subject_prefix=TEST_PREFIX if to_address else "",
    )

    async def deliver() -> int:
        try:
            return await transport.send(composed)
        finally:
            await transport.close()

    attempts = asyncio.run(deliver())
    if to_address is None and plan.digest_id is not None:
        store.record_deliveries([DeliveryEvent(plan.digest_id, DeliveryState.SENDING)])
        store.record_deliveries([DeliveryEvent(plan.digest_id, DeliveryState.SENT, subscriber.email)])
    return Outcome(composed.recipient, OutcomeStatus.SENT, len(plan.picks), composed.message_id, rendered.subject, attempts)
