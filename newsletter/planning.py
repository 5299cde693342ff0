"""Planning: which papers each subscriber gets today, for many subscribers at once. Pure.

Works over a `DaySnapshot` of the store (every paper, each subscriber's last sent digest and
what they already hold, today's ledger rows, the deferred digests), read once per run, so
planning a subscriber costs no query. Subscribers with the same candidate papers (nearly
everyone on an ordinary day: whatever is new since yesterday) share one `PaperIndex`, and
their profiles are ranked together by the batch ranker (`rank_many`, picks only).

A digest already in the ledger and not sent (planned before a crash, deferred, refused) is
planned again with the very same papers and Message-ID.
"""

from __future__ import annotations

import bisect
import gc
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from newsletter.message import digest_message_id
from newsletter.models import DeliveryState, Paper, Plan, Ranked
from newsletter.ranking import PaperIndex, Profile, Semantic, rank_many, rank_papers
from newsletter.ranking.trending import trending
from newsletter.store import DaySnapshot, LedgerRow
from newsletter.subscribers import Subscriber

SemanticFor = Callable[[Sequence[Paper]], Semantic | None]
INDEXES_KEPT = 8
ALREADY_SENT = "already sent today"
INACTIVE = "inactive (active: false)"
SUPPRESSED = "suppressed after repeated permanent failures (see `newsletter suppressed`)"
UNSUBSCRIBED = "unsubscribed"


def local_day(subscriber: Subscriber, now: datetime) -> date:
    """The subscriber's calendar day at `now`: the day their digest belongs to."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).date()


def profile_for(subscriber: Subscriber, votes: Mapping[str, tuple[frozenset[str], frozenset[str]]] | None = None) -> Profile:
    """The ranker's view of a subscriber: keywords, excludes, followed authors, and the papers
    they voted "more like this" / "less like this" on (from the store; they win nothing over
    an exclude)."""
    liked, disliked = (votes or {}).get(subscriber.email.casefold(), (frozenset(), frozenset()))
    return Profile(
        keywords=subscriber.keywords, exclude=subscriber.exclude, authors=subscriber.authors,
        liked=liked, disliked=disliked,
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a batch of planning, then back as it was.

    Planning 10,000 subscribers allocates some 150,000 objects that live on (the picks, the
    plans); each 700 allocations start a collection, and every tenth of those that finds the
    young objects grown by a quarter walks the whole heap: 3 or 4 full collections, 0.3 s of a
    1.3 s rank stage, that can free nothing (the picks form no cycles). The objects are
    collected as usual afterwards. Threads planning at once may each pause it: whoever found
    it on turns it back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Retry:
    """When deferred digests are tried again, and for how long (like a mail queue)."""

    min_seconds: float = 300.0
    max_seconds: float = 3600.0
    lifetime_hours: float = 12.0

    def delay(self, rounds: int) -> float:
        """Seconds before the next try after `rounds` delivery rounds: doubling from the minimum."""
        return min(self.max_seconds, self.min_seconds * 2 ** max(0, rounds - 1))

    def expires(self, row: LedgerRow) -> datetime:
        from datetime import timedelta

        return row.created_at + timedelta(hours=self.lifetime_hours)


@dataclass
class Planner:
    """Plans digests for subscribers against one snapshot; keeps indexes for the run."""

    snapshot: DaySnapshot
    domain: str
    now: datetime
    papers_of: Callable[[Sequence[int]], dict[int, tuple[str, ...]]]  # a digest's papers, from the ledger
    semantic_for: SemanticFor | None = None
    suppressed: Collection[str] = frozenset()
    unsubscribed: Collection[str] = frozenset()
    retry: Retry = field(default_factory=Retry)
    votes: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)  # liked, disliked
    include_sent: bool = False  # plan today's digest even if sent (a test copy, a resend)
    resend_failed: bool = True  # plan again today's digest the server refused (a run by hand)
    expired: list[LedgerRow] = field(default_factory=list)  # deferred rows found past their lifetime
    _indexes: OrderedDict[tuple[int, frozenset[str]], PaperIndex] = field(default_factory=OrderedDict)
    _by_id: dict[str, Paper] = field(default_factory=dict)
    _deferred: dict[str, list[LedgerRow]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {paper.paper_id: paper for paper in self.snapshot.papers}
        for row in self.snapshot.deferred:
            self._deferred.setdefault(row.subscriber, []).append(row)

    # one index per distinct candidate set -------------------------------------------------
    def _index(self, start: int, held: frozenset[str]) -> PaperIndex:
        key = (start, held)
        index = self._indexes.get(key)
        if index is None:
            papers = [p for p in self.snapshot.papers[start:] if p.paper_id not in held]
            semantic = self.semantic_for(papers) if self.semantic_for is not None else None
            index = self._indexes[key] = PaperIndex.build(papers, semantic)
            if len(self._indexes) > INDEXES_KEPT:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(key)
        return index

    def _window(self, subscriber: str) -> tuple[int, frozenset[str]]:
        """(first candidate's position in the snapshot's papers, papers held in the window)."""
        last = self.snapshot.last_sent.get(subscriber)
        start = 0 if last is None else bisect.bisect_right(self.snapshot.first_seen, last)
        return start, self.snapshot.held.get(subscriber, frozenset())

    def candidate_count(self, subscriber: str) -> int:
        start, held = self._window(subscriber)
        return sum(1 for p in self.snapshot.papers[start:] if p.paper_id not in held)

    # rows already in the ledger ---------------------------------------------------------------
    def _replan(self, subscriber: Subscriber, row: LedgerRow, paper_ids: Sequence[str]) -> Plan:
        papers = [self._by_id[paper_id] for paper_id in paper_ids if paper_id in self._by_id]
        semantic = self.semantic_for(papers) if self.semantic_for and papers else None
        rescored = rank_papers(papers, profile_for(subscriber, self.votes), max_papers=len(papers) or 1, semantic=semantic)
        by_id = {r.paper.paper_id: r for r in rescored}  # for the "why" of each paper
        picks = tuple(by_id.get(p.paper_id, Ranked(p, 0.0, ())) for p in papers)
        return Plan(
            subscriber, row.digest_day, picks, row.message_id,
            digest_id=row.id, rounds=row.attempts, created_at=row.created_at,
        )

    def _due_deferred(self, subscriber: Subscriber, today: date) -> tuple[list[LedgerRow], str]:
        """Earlier days' deferred digests of `subscriber` that are due now (today's row is
        handled with today), and a note on any that is not due yet."""
        due: list[LedgerRow] = []
        waiting = ""
        for row in self._deferred.get(subscriber.email, ()):
            if row.digest_day >= today:
                continue
            if self.now >= self.retry.expires(row):
                self.expired.append(row)
            elif row.next_attempt_at is None or row.next_attempt_at <= self.now:
                due.append(row)
            else:
                waiting = f"deferred until {row.next_attempt_at:%Y-%m-%d %H:%M} UTC"
        return due, waiting

    # the plan ----------------------------------------------------------------------------------
    def plan(self, subscribers: Sequence[Subscriber]) -> Iterator[tuple[int, Plan]]:
        """(position in `subscribers`, plan): one or more per subscriber, in order: due deferred
        digests of earlier days first, then today's digest (or the reason there is none)."""
        with _collector_paused():
            out = self._plan_all(subscribers)
        for position, plans in enumerate(out):
            for plan in plans:
                yield position, plan

    def _plan_all(self, subscribers: Sequence[Subscriber]) -> list[list[Plan]]:
        ranking: list[tuple[int, Subscriber, date, str]] = []
        out: list[list[Plan]] = [[] for _ in range(len(subscribers))]
        replans: list[tuple[int, Subscriber, LedgerRow]] = []
        days: dict[str, date] = {}  # per time zone: `local_day` for everyone in it
        for position, subscriber in enumerate(subscribers):
            day = days.get(subscriber.timezone)
            if day is None:
                day = days[subscriber.timezone] = local_day(subscriber, self.now)
            message_id = digest_message_id(subscriber.email, day, self.domain)
            folded = subscriber.email.casefold()

            def nothing(reason: str, *, _s: Subscriber = subscriber, _d: date = day, _m: str = message_id) -> Plan:
                return Plan(_s, _d, (), _m, reason=reason)

            if not subscriber.active:
                out[position].append(nothing(INACTIVE))
                continue
            if folded in self.unsubscribed:
                out[position].append(nothing(UNSUBSCRIBED))
                continue
            if folded in self.suppressed:
                out[position].append(nothing(SUPPRESSED))
                continue
            due, _ = self._due_deferred(subscriber, day)
            for row in due:
                replans.append((position, subscriber, row))
            row = self.snapshot.rows.get((subscriber.email, day))
            if row is not None and row.status is DeliveryState.SENT and not self.include_sent:
                out[position].append(nothing(ALREADY_SENT))
                continue
            if row is not None and row.status is DeliveryState.DEFERRED:
                if self.now >= self.retry.expires(row):
                    self.expired.append(row)
                    out[position].append(nothing(f"expired: {row.error or 'deferred too long'}"))
                    continue
                if row.next_attempt_at is not None and row.next_attempt_at > self.now:
                    out[position].append(nothing(f"deferred until {row.next_attempt_at:%Y-%m-%d %H:%M} UTC"))
                    continue
            if row is not None and row.status is DeliveryState.FAILED and not self.resend_failed:
                out[position].append(nothing(f"failed today: {row.error or 'refused'}"))
                continue
            if row is not None and row.status is not DeliveryState.ABANDONED:
                replans.append((position, subscriber, row))
                continue
            ranking.append((position, subscriber, day, message_id))
        if replans:
            paper_ids = self.papers_of([row.id for _, _, row in replans])
            for position, subscriber, row in replans:
                out[position].append(self._replan(subscriber, row, paper_ids[row.id]))
        self._rank(ranking, out)
        return out

    def _rank(self, ranking: list[tuple[int, Subscriber, date, str]], out: list[list[Plan]]) -> None:
        """Rank everyone in `ranking`, grouped by candidate set and max_papers."""
        groups: dict[tuple[int, frozenset[str], int], list[tuple[int, Subscriber, date, str]]] = {}
        for entry in ranking:
            start, held = self._window(entry[1].email)
            groups.setdefault((start, held, entry[1].max_papers), []).append(entry)
        for (start, held, max_papers), members in groups.items():
            index = self._index(start, held)
            if len(index) == 0:
                for position, subscriber, day, message_id in members:
                    out[position].append(Plan(subscriber, day, (), message_id, reason="no new papers since the last digest"))
                continue
            profiles = [profile_for(m[1], self.votes) for m in members]
            results = rank_many(index, profiles, max_papers=max_papers, picks_only=True)
            for (position, subscriber, day, message_id), profile, ranked in zip(members, profiles, results):
                picks = tuple(ranked)  # picks_only: nothing but the picks
                hot = None
                if subscriber.trending:  # the day's most upvoted, never repeating a pick
                    hot = trending(index, profile, subscriber.trending, skip={r.paper.paper_id for r in picks})
                if not picks and not (hot and hot.papers) and not subscriber.send_empty:
                    reason = f"nothing above the relevance floor among {len(index)} new papers"
                    out[position].append(Plan(subscriber, day, (), message_id, reason=reason))
                else:
                    out[position].append(Plan(subscriber, day, picks, message_id, trending=hot))
