"""Preparing digests: plan, render and compose batches of subscribers, here or in a pool.

The CPU-bound half of a run. `prepare_batch` turns subscribers into `Prepared` items (a
composed message ready for the transport, or the reason there is none) and writes the new
digests' ledger rows (`planned`, with their papers: one transaction per batch, before any of
them is handed over); a `Preparer` yields them batch by batch, in the subscribers' order:

- `inline_preparer`: in this process, small batches, the event loop sending in between;
- `pool_preparer`: in worker processes (one per spare core), a few batches ahead of the
  sender. Each worker opens the store itself, reads the day's snapshot once and keeps its
  own indexes and card cache; only subscribers go in and composed bytes come out. The
  `planned` rows are written there too, off the sending process.

Everything after `planned` (claims, `sent`, deferrals) is the run's (`newsletter.day`).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Protocol

import logging

from newsletter.composing import compose
from newsletter.errors import ConfigError
from newsletter.message import Composed
from newsletter.models import Paper, Sender
from newsletter.planning import Planner, Retry, SemanticFor
from newsletter.ranking import Semantic
from newsletter.semantic import Encoder, paper_text, stored_semantic
from newsletter.store import LedgerRow, Store
from newsletter.subscribers import Subscriber

log = logging.getLogger(__name__)

INLINE_BATCH = 25  # subscribers per batch in this process: the sender runs between batches
POOL_BATCH = 100  # subscribers per batch sent to a worker process (each digest ~45 KB in flight)
BATCHES_AHEAD = 3  # batches in flight per worker
WATCH_SECONDS = 1.0  # how often a worker checks that its run is still there


@dataclass(frozen=True, slots=True)
class Prepared:
    """One digest made ready (`composed`), or the reason there is none (`reason`)."""

    position: int  # the subscriber's place in the run's list
    order: int  # 0 for the first digest of that subscriber in this run, then 1, ...
    email: str
    day: date
    message_id: str
    paper_ids: tuple[str, ...]
    digest_id: int | None  # the ledger row, when the digest was planned before
    subject: str
    composed: Composed | None
    reason: str = ""
    papers: int = 0
    rounds: int = 0
    created_at: datetime | None = None
    failed: bool = False  # `reason` is a failure, not a skip
    held: bool = False  # another run planned this digest first: theirs to send


@dataclass(frozen=True)
class PrepareSetup:
    """Everything a worker needs to plan and compose, as plain picklable values."""

    database_url: str
    days: tuple[date, ...]
    sender: Sender
    now: datetime
    retry: Retry
    resend_failed: bool = True
    semantic_model: str | None = None


def make_planner(setup: PrepareSetup, store: Store) -> Planner:
    """A planner over a fresh snapshot of the store, with the suppressions of the moment."""
    unsubscribed = store.unsubscribed_addresses()
    votes: dict[str, tuple[set[str], set[str]]] = {}
    for vote in store.votes():
        liked, disliked = votes.setdefault(vote.subscriber, (set(), set()))
        (liked if vote.vote > 0 else disliked).add(vote.paper_id)
    return Planner(
        snapshot=store.day_snapshot(setup.days),
        domain=setup.sender.domain,
        now=setup.now,
        papers_of=store.digest_paper_ids,
        semantic_for=semantic_for_store(store, setup.semantic_model),
        suppressed=store.suppressed_addresses(),
        unsubscribed=unsubscribed,
        retry=setup.retry,
        resend_failed=setup.resend_failed,
        votes={s: (frozenset(liked), frozenset(disliked)) for s, (liked, disliked) in votes.items()},
    )


def semantic_for_store(store: Store, model: str | None) -> SemanticFor | None:
    """The hybrid ranker's embeddings for a set of papers, when a model is on."""
    if not model:
        return None
    from newsletter.semantic import encoder_for

    encoder = encoder_for(model)
    if encoder is None:
        return None
    return lambda papers: semantic_for(store, encoder, papers)


_BROKEN_MODELS: set[str] = set()


def semantic_for(store: Store | None, encoder: Encoder | None, papers: Sequence[Paper]) -> Semantic | None:
    """Embeddings of `papers` for hybrid ranking, read from the store (`stored_semantic`:
    papers are embedded at ingest, keywords when the subscribers file changes, so the model
    is loaded here only for what is missing). Without a store (the ad-hoc `rank` command)
    they are encoded and kept in memory only.

    A model that cannot be loaded is reported once and ranking goes on lexically: a broken
    model setting must not stop everyone's digest (`newsletter check` reports it too).
    """
    if encoder is None or not papers or encoder.model in _BROKEN_MODELS:
        return None
    try:
        if store is None:
            encoded = encoder.encode([paper_text(paper) for paper in papers])
            return Semantic({p.paper_id: v for p, v in zip(papers, encoded)}, encoder.encode)
        vectors = store.paper_embeddings(encoder.model, [paper.paper_id for paper in papers])
        missing = [paper for paper in papers if paper.paper_id not in vectors]
        if missing:
            encoded = encoder.encode([paper_text(paper) for paper in missing])
            store.save_paper_embeddings(encoder.model, {p.paper_id: v for p, v in zip(missing, encoded)})
    except ConfigError as exc:
        _BROKEN_MODELS.add(encoder.model)
        log.error("ranking without the semantic model: %s", exc)
        return None
    return stored_semantic(store, encoder.model, papers, fallback=encoder)


def prepare_batch(
    planner: Planner, sender: Sender, now: datetime, subscribers: Sequence[Subscriber], first: int, store: Store
) -> tuple[list[Prepared], list[LedgerRow]]:
    """Plan and compose `subscribers` (whose positions in the run start at `first`) and record
    the new digests as `planned`; also the deferred rows found past their lifetime, for the run
    to mark failed."""
    items: list[Prepared] = []
    seen: dict[int, int] = {}
    for offset, plan in planner.plan(subscribers):
        order = seen[offset] = seen.get(offset, -1) + 1
        email = plan.subscriber.email
        paper_ids = tuple(pick.paper.paper_id for pick in plan.picks)
        if not plan.sendable:
            items.append(Prepared(first + offset, order, email, plan.day, plan.message_id, (), plan.digest_id, "", None, plan.reason))
            continue
        try:
            rendered, composed = compose(plan, sender, now)
        except Exception as exc:  # noqa: BLE001 - one subscriber's bug must not stop the rest
            reason = f"internal error while composing: {exc!r}"
            items.append(Prepared(first + offset, order, email, plan.day, plan.message_id, (), plan.digest_id, "", None, reason, failed=True))
            continue
        items.append(Prepared(
            first + offset, order, email, plan.day, plan.message_id, paper_ids, plan.digest_id,
            rendered.subject, composed, papers=len(paper_ids), rounds=plan.rounds,
            created_at=plan.created_at or now,
        ))
    expired, planner.expired = planner.expired, []
    return _record_plans(store, items), expired


def _record_plans(store: Store, items: list[Prepared]) -> list[Prepared]:
    """Write the new digests' ledger rows in one transaction: each gets its row id, or is
    `held` when another run planned the same digest first."""
    new = [n for n, item in enumerate(items) if item.composed is not None and item.digest_id is None]
    ids = store.plan_digests([(items[n].email, items[n].day, items[n].message_id, items[n].paper_ids) for n in new])
    for n, digest_id in zip(new, ids):
        items[n] = replace(items[n], digest_id=digest_id, held=digest_id is None)
    return items


class Preparer(Protocol):
    def batches(self, subscribers: Sequence[Subscriber]) -> AsyncIterator[tuple[list[Prepared], list[LedgerRow]]]: ...

    def close(self) -> None: ...


class _Inline:
    def __init__(self, setup: PrepareSetup, store: Store) -> None:
        self.setup = setup
        self.store = store

    async def batches(self, subscribers: Sequence[Subscriber]) -> AsyncIterator[tuple[list[Prepared], list[LedgerRow]]]:
        planner = make_planner(self.setup, self.store)
        for first in range(0, len(subscribers), INLINE_BATCH):
            chunk = subscribers[first : first + INLINE_BATCH]
            yield prepare_batch(planner, self.setup.sender, self.setup.now, chunk, first, self.store)
            await asyncio.sleep(0)  # let the connections take what is ready

    def close(self) -> None:
        return None


def inline_preparer(setup: PrepareSetup, store: Store) -> Preparer:
    return _Inline(setup, store)


# the worker side of the pool --------------------------------------------------------------
_worker: tuple[PrepareSetup, Planner, Store] | None = None


def _start_worker(setup: PrepareSetup, run_pid: int) -> None:
    global _worker
    threading.Thread(target=_exit_with, args=(run_pid,), name="exit-with-the-run", daemon=True).start()
    store = Store(setup.database_url)
    _worker = (setup, make_planner(setup, store), store)
    gc.freeze()  # the imports and the day's snapshot and indexes live as long as the worker


def _exit_with(run_pid: int) -> None:
    """Exit once the run's process is gone (killed: nobody would read what this worker
    composes, and it would hold its memory forever)."""
    while True:
        time.sleep(WATCH_SECONDS)
        try:
            os.kill(run_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, another user's
            pass


def _prepare_in_worker(subscribers: Sequence[Subscriber], first: int) -> tuple[list[Prepared], list[LedgerRow]]:
    assert _worker is not None, "the worker was not started"
    setup, planner, store = _worker
    return prepare_batch(planner, setup.sender, setup.now, subscribers, first, store)


class _Pool:
    def __init__(self, setup: PrepareSetup, workers: int) -> None:
        self.workers = workers
        # forkserver: workers start from a clean process, not a copy of one with an event
        # loop, open database connections and threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["newsletter.preparing"])
        self.executor: Executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(setup, os.getpid())
        )

    async def batches(self, subscribers: Sequence[Subscriber]) -> AsyncIterator[tuple[list[Prepared], list[LedgerRow]]]:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[tuple[list[Prepared], list[LedgerRow]]]] = []
        starts = iter(range(0, len(subscribers), POOL_BATCH))

        def submit() -> bool:
            first = next(starts, None)
            if first is None:
                return False
            chunk = subscribers[first : first + POOL_BATCH]  # a roster's slice: one block of bytes
            pending.append(loop.run_in_executor(self.executor, _prepare_in_worker, chunk, first))
            return True

        for _ in range(self.workers * BATCHES_AHEAD):
            if not submit():
                break
        while pending:
            result = await pending.pop(0)
            submit()
            yield result

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def pool_preparer(setup: PrepareSetup, workers: int) -> Preparer:
    return _Pool(setup, workers)
