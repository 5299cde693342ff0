"""Reports: what `status` and `history` read, and the service's heartbeat.

Read-only queries over dumps, papers, the ledger and unsubscribes, plus the one
named value the service writes on every poll (`service_state` row "heartbeat"), so that
`newsletter status --health` can tell a running service from a stopped or stuck one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update

from newsletter.models import DeliveryState
from newsletter.store.base import StoreBase, as_utc
from newsletter.store.schema import (
    digest_papers,
    digests,
    dumps,
    papers,
    service_state,
    unsubscribes,
)

HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class DumpCounts:
    ingested: int
    set_aside: int
    last_ingested_at: datetime | None

    @property
    def seen(self) -> int:
        return self.ingested + self.set_aside


@dataclass(frozen=True)
class DigestReport:
    """One ledger row as `status` and `history` show it."""

    subscriber: str
    day: date
    state: str
    attempts: int
    message_id: str
    paper_count: int
    sent_at: datetime | None
    next_attempt_at: datetime | None
    error_code: int | None
    error: str | None
    updated_at: datetime
    papers: tuple[tuple[str, str], ...] = ()  # (paper id, title), in digest order


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _report(row: object, paper_rows: tuple[tuple[str, str], ...] = ()) -> DigestReport:
    r = row._mapping  # type: ignore[attr-defined]
    return DigestReport(
        subscriber=r["subscriber"], day=r["digest_day"], state=r["status"], attempts=r["attempts"],
        message_id=r["message_id"], paper_count=r["paper_count"], sent_at=_utc(r["sent_at"]),
        next_attempt_at=_utc(r["next_attempt_at"]), error_code=r["error_code"], error=r["error"],
        updated_at=as_utc(r["updated_at"]), papers=paper_rows,
    )


class ReportStore(StoreBase):
    # the heartbeat ------------------------------------------------------------------------
    def beat(self, now: datetime) -> None:
        """Record that the service is alive at `now`."""
        value = as_utc(now).isoformat()
        with self._tx() as db:
            changed = db.execute(
                update(service_state).where(service_state.c.name == HEARTBEAT).values(value=value, updated_at=now)
            ).rowcount
            if not changed:
                db.execute(service_state.insert().values(name=HEARTBEAT, value=value, updated_at=now))

    def heartbeat(self) -> datetime | None:
        """When the service last said it was alive; None if it never ran on this database."""
        with self._tx() as db:
            value = db.execute(
                select(service_state.c.value).where(service_state.c.name == HEARTBEAT)
            ).scalar_one_or_none()
        return as_utc(datetime.fromisoformat(value)) if value else None

    # counts for `status` --------------------------------------------------------------------
    def dump_counts(self) -> DumpCounts:
        with self._tx() as db:
            by_status = dict(db.execute(select(dumps.c.status, func.count()).group_by(dumps.c.status)).all())
            last = db.execute(
                select(func.max(dumps.c.ingested_at)).where(dumps.c.status == "ingested")
            ).scalar_one_or_none()
        return DumpCounts(by_status.get("ingested", 0), by_status.get("rejected", 0), _utc(last))

    def unsubscribed_addresses(self) -> set[str]:
        """Case-folded addresses that unsubscribed themselves."""
        with self._tx() as db:
            return set(db.execute(select(unsubscribes.c.address)).scalars())

    def states_on(self, day: date) -> dict[str, int]:
        """How many digests of `day` are in each delivery state (every state, zeros included)."""
        with self._tx() as db:
            rows = db.execute(
                select(digests.c.status, func.count()).where(digests.c.digest_day == day).group_by(digests.c.status)
            ).all()
        counts = {state.value: 0 for state in DeliveryState}
        counts.update({status: int(count) for status, count in rows})
        return counts

    def deferred_digests(self) -> list[DigestReport]:
        """Every digest waiting for another attempt, the soonest first."""
        query = (
            select(digests)
            .where(digests.c.status == DeliveryState.DEFERRED.value)
            .order_by(digests.c.next_attempt_at, digests.c.subscriber)
        )
        with self._tx() as db:
            return [_report(row) for row in db.execute(query)]

    def recent_failures(self, since: date, limit: int) -> list[DigestReport]:
        """Failed digests from `since` on, the latest first."""
        query = (
            select(digests)
            .where(digests.c.status == DeliveryState.FAILED.value, digests.c.digest_day >= since)
            .order_by(digests.c.updated_at.desc(), digests.c.subscriber)
            .limit(limit)
        )
        with self._tx() as db:
            return [_report(row) for row in db.execute(query)]

    def last_sent_at(self, subscribers: Iterable[str]) -> datetime | None:
        """When the last digest to any of `subscribers` went out (send slots share a time)."""
        addresses = list(subscribers)
        if not addresses:
            return None
        sent = func.coalesce(digests.c.sent_at, digests.c.updated_at)
        query = select(func.max(sent)).where(
            digests.c.status == DeliveryState.SENT.value, digests.c.subscriber.in_(addresses)
        )
        with self._tx() as db:
            value = db.execute(query).scalar_one_or_none()
        # max() over an expression comes back as text from SQLite.
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return _utc(value)

    # `history` --------------------------------------------------------------------------------
    def digest_history(
        self, *, subscriber: str | None = None, day: date | None = None, limit: int = 100
    ) -> list[DigestReport]:
        """Digests with their papers, the latest day first (then by subscriber)."""
        query = select(digests).order_by(digests.c.digest_day.desc(), digests.c.subscriber).limit(limit)
        if subscriber is not None:
            query = query.where(func.lower(digests.c.subscriber) == subscriber.strip().lower())
        if day is not None:
            query = query.where(digests.c.digest_day == day)
        with self._tx() as db:
            rows = db.execute(query).all()
            ids = [row.id for row in rows]
            listed: dict[int, list[tuple[str, str]]] = {digest_id: [] for digest_id in ids}
            for start in range(0, len(ids), 500):
                paper_rows = db.execute(
                    select(digest_papers.c.digest_id, papers.c.paper_id, papers.c.title)
                    .join(papers, papers.c.paper_id == digest_papers.c.paper_id)
                    .where(digest_papers.c.digest_id.in_(ids[start : start + 500]))
                    .order_by(digest_papers.c.digest_id, digest_papers.c.position)
                )
                for digest_id, paper_id, title in paper_rows:
                    listed[digest_id].append((paper_id, title))
        return [_report(row, tuple(listed[row.id])) for row in rows]
