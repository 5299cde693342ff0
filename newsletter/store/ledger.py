"""The delivery ledger: one row per (subscriber, digest day), its state and its papers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.engine import Connection

from newsletter.models import DeliveryState, Paper
from newsletter.store.base import as_utc
from newsletter.store.papers import paper_from_row

from newsletter.store.base import StoreBase, new_id
from newsletter.store.claims import Claim, Lease, claim_rows, free
from newsletter.store.base import now as _now
from newsletter.store.schema import digest_papers, digests, papers, suppressions
from newsletter.store.suppressions import count_bounce


@dataclass(frozen=True)
class DigestRecord:
    """A ledger row as the pipeline needs it."""

    id: int
    subscriber: str
    digest_day: date
    status: str
    message_id: str
    paper_ids: tuple[str, ...]


class LedgerStore(StoreBase):
    def digest_for(self, subscriber: str, day: date) -> DigestRecord | None:
        with self._tx() as db:
            row = db.execute(
                select(digests).where(digests.c.subscriber == subscriber, digests.c.digest_day == day)
            ).first()
            if row is None:
                return None
            ids = db.execute(
                select(digest_papers.c.paper_id)
                .where(digest_papers.c.digest_id == row.id)
                .order_by(digest_papers.c.position)
            ).scalars()
            return DigestRecord(
                row.id, row.subscriber, row.digest_day, row.status, row.message_id, tuple(ids)
            )

    def plan_digest(
        self, *, subscriber: str, day: date, message_id: str, paper_ids: Iterable[str]
    ) -> DigestRecord:
        """Write the digest as `planned` with its papers, before any attempt to send it.

        In the same transaction, earlier digests that never arrived give their papers back
        (see `_release_unsent`).
        """
        ids = tuple(paper_ids)
        now = _now()
        with self._tx() as db:
            self._release_unsent(db, subscriber, day)
            digest_id = new_id(db.execute(
                digests.insert().values(
                    subscriber=subscriber,
                    digest_day=day,
                    status="planned",
                    message_id=message_id,
                    paper_count=len(ids),
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            ))
            if ids:
                db.execute(
                    digest_papers.insert(),
                    [
                        {"digest_id": digest_id, "paper_id": paper_id, "subscriber": subscriber, "position": position}
                        for position, paper_id in enumerate(ids)
                    ],
                )
        return DigestRecord(digest_id, subscriber, day, "planned", message_id, ids)

    def statuses_on(self, day: date) -> dict[str, str]:
        """Ledger state of every subscriber with a digest for `day` (one query for a run)."""
        with self._tx() as db:
            rows = db.execute(select(digests.c.subscriber, digests.c.status).where(digests.c.digest_day == day))
            return {subscriber: status for subscriber, status in rows}

    @staticmethod
    def _release_unsent(db: Connection, subscriber: str, before: date) -> int:
        """Give back the papers of earlier digests that certainly never arrived.

        A digest left `failed` (the server refused it) or `planned` (never attempted) on an
        earlier day is marked `abandoned` and its papers become candidates again, so a bad
        morning does not lose them for good. A `sending` row is left alone: the server may
        have accepted it just before a crash, and sending its papers again could repeat them.
        """
        return LedgerStore._release_unsent_many(db, [subscriber], before)

    @staticmethod
    def _release_unsent_many(db: Connection, subscribers: Sequence[str], before: date) -> int:
        """`_release_unsent` for many subscribers in a few statements; how many were released."""
        released = 0
        for start in range(0, len(subscribers), 500):
            stale = db.execute(
                select(digests.c.id).where(
                    digests.c.subscriber.in_(list(subscribers[start : start + 500])),
                    digests.c.digest_day < before,
                    digests.c.status.in_(("failed", "planned")),  # not yet abandoned
                )
            ).scalars().all()
            if stale:
                db.execute(digest_papers.delete().where(digest_papers.c.digest_id.in_(stale)))
                db.execute(
                    update(digests).where(digests.c.id.in_(stale)).values(status="abandoned", updated_at=_now())
                )
            released += len(stale)
        return released

    def mark(
        self, digest_id: int, status: str, *, error_code: int | None = None, error: str | None = None
    ) -> None:
        """Move a ledger row to `status`; `sending` counts an attempt."""
        with self._tx() as db:
            self._mark(db, digest_id, status, error_code=error_code, error=error)

    @staticmethod
    def _mark(
        db: Connection, digest_id: int, status: str, *, error_code: int | None = None, error: str | None = None
    ) -> None:
        values: dict[str, object] = {"status": status, "updated_at": _now()}
        if status == "sending":
            values["attempts"] = digests.c.attempts + 1
        if status in ("sent", "failed"):
            values["error_code"] = error_code
            values["error"] = error
        db.execute(update(digests).where(digests.c.id == digest_id).values(**values))

    def mark_sent(self, digest_id: int, address: str) -> None:
        """`sent`, and forget earlier refusals of an address that is not suppressed."""
        with self._tx() as db:
            self._mark(db, digest_id, "sent")
            db.execute(
                suppressions.delete().where(
                    suppressions.c.address == address.casefold(), suppressions.c.suppressed_at.is_(None)
                )
            )

    def mark_failed(
        self, digest_id: int, *, error_code: int | None, error: str, bounce: bool, address: str, suppress_after: int
    ) -> bool:
        """`failed`; a bounce also counts against the address. True if now suppressed."""
        with self._tx() as db:
            self._mark(db, digest_id, "failed", error_code=error_code, error=error)
            if not bounce:
                return False
            return count_bounce(db, address, error_code, error, suppress_after)

    def ledger(self) -> list[dict[str, object]]:
        with self._tx() as db:
            query = select(digests).order_by(digests.c.digest_day, digests.c.subscriber)
            return [dict(row._mapping) for row in db.execute(query)]



@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A ledger row as planning needs it (without its papers)."""

    id: int
    subscriber: str
    digest_day: date
    status: DeliveryState
    message_id: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class DaySnapshot:
    """What planning a day needs from the ledger, read in a handful of queries for everyone.

    `papers` are all stored papers with the time each was first seen, oldest first;
    `last_sent[s]` the creation time of subscriber s's last digest that was sent; `held[s]`
    the papers first seen since then that s already holds (in a digest sent, on its way, or
    planned today), so s's candidates are the papers after `last_sent[s]` minus `held[s]`;
    `rows` the ledger rows of the days asked for, and `deferred` every deferred row.
    """

    papers: tuple[Paper, ...]
    first_seen: tuple[datetime, ...]
    last_sent: dict[str, datetime]
    held: dict[str, frozenset[str]]
    rows: dict[tuple[str, date], LedgerRow]
    deferred: tuple[LedgerRow, ...]


# Papers subscribers hold within their window (first seen after their last sent digest): the
# batch form of the candidate rules of `PaperStore.candidate_ids`.
_HELD_IN_WINDOW = text(
    """
    WITH last AS (
        SELECT subscriber, max(created_at) AS at FROM digests WHERE status = 'sent' GROUP BY subscriber
    )
    SELECT dp.subscriber, dp.paper_id
    FROM digest_papers AS dp
    JOIN digests AS d ON d.id = dp.digest_id
    JOIN papers AS p ON p.paper_id = dp.paper_id
    LEFT JOIN last ON last.subscriber = dp.subscriber
    WHERE p.first_seen_at > COALESCE(last.at, '0001-01-01')
      AND NOT (d.status IN ('failed', 'planned', 'abandoned') AND d.digest_day < :day)
    """
)
_MARK_SENDING = digests.update().where(digests.c.id == bindparam("b_id")).values(
    status=DeliveryState.SENDING.value, attempts=digests.c.attempts + 1, updated_at=bindparam("b_now")
)
_MARK_SENT = digests.update().where(digests.c.id == bindparam("b_id")).values(
    status=DeliveryState.SENT.value, sent_at=bindparam("b_now"), updated_at=bindparam("b_now"),
    error_code=None, error=None, next_attempt_at=None,
)
_MARK_OTHER = digests.update().where(digests.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), updated_at=bindparam("b_now"), error_code=bindparam("b_code"),
    error=bindparam("b_error"), next_attempt_at=bindparam("b_next"),
)
# The same, for a run that did not claim the row: only while nobody claimed it since the run
# saw it (`attempts` unchanged) and nobody may be sending it (see `store.claims`).
_MARK_OTHER_UNCLAIMED = digests.update().where(
    digests.c.id == bindparam("b_id"), digests.c.attempts == bindparam("b_seen"), free(bindparam("b_now")),
).values(
    status=bindparam("b_status"), updated_at=bindparam("b_now"), error_code=bindparam("b_code"),
    error=bindparam("b_error"), next_attempt_at=bindparam("b_next"),
)
_CLEAR_BOUNCES = suppressions.delete().where(
    suppressions.c.address == bindparam("b_address"), suppressions.c.suppressed_at.is_(None)
)


def _runs(events: Sequence[DeliveryEvent]) -> list[tuple[DeliveryState, list[DeliveryEvent]]]:
    """Consecutive events of the same state, in order (so a row's changes keep their order)."""
    runs: list[tuple[DeliveryState, list[DeliveryEvent]]] = []
    for event in events:
        if runs and runs[-1][0] is event.state:
            runs[-1][1].append(event)
        else:
            runs.append((event.state, [event]))
    return runs


_LAST_SENT = text("SELECT subscriber, max(created_at) FROM digests WHERE status = 'sent' GROUP BY subscriber")


def _row(row: Any) -> LedgerRow:
    return LedgerRow(
        row.id, row.subscriber, row.digest_day, DeliveryState(row.status), row.message_id,
        row.attempts, as_utc(row.created_at),
        as_utc(row.next_attempt_at) if row.next_attempt_at is not None else None, row.error,
    )


class DayLedgerStore(LedgerStore):
    """The ledger read and written for a whole day at a time (the send spine's needs)."""

    def day_snapshot(self, days: Sequence[date]) -> DaySnapshot:
        earliest = min(days) if days else date.today()
        with self._tx() as db:
            rows = db.execute(select(papers).order_by(papers.c.first_seen_at, papers.c.paper_id)).all()
            all_papers = tuple(paper_from_row(row._mapping) for row in rows)
            first_seen = tuple(as_utc(row.first_seen_at) for row in rows)
            last_sent = {sub: as_utc(at if isinstance(at, datetime) else datetime.fromisoformat(at))
                         for sub, at in db.execute(_LAST_SENT)}
            held: dict[str, set[str]] = {}
            for subscriber, paper_id in db.execute(_HELD_IN_WINDOW, {"day": earliest.isoformat()}):
                held.setdefault(subscriber, set()).add(paper_id)
            ledger = {
                (row.subscriber, row.digest_day): _row(row)
                for row in db.execute(select(digests).where(digests.c.digest_day.in_(list(days))))
            }
            deferred = tuple(
                _row(row) for row in db.execute(select(digests).where(digests.c.status == DeliveryState.DEFERRED))
            )
        return DaySnapshot(
            all_papers, first_seen, last_sent, {s: frozenset(p) for s, p in held.items()}, ledger, deferred
        )

    def digest_paper_ids(self, digest_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The papers of these digests, in their order."""
        found: dict[int, list[str]] = {}
        with self._tx() as db:
            for start in range(0, len(digest_ids), 500):
                query = (
                    select(digest_papers.c.digest_id, digest_papers.c.paper_id)
                    .where(digest_papers.c.digest_id.in_(list(digest_ids[start : start + 500])))
                    .order_by(digest_papers.c.digest_id, digest_papers.c.position)
                )
                for digest_id, paper_id in db.execute(query):
                    found.setdefault(digest_id, []).append(paper_id)
        return {digest_id: tuple(found.get(digest_id, ())) for digest_id in digest_ids}

    def plan_digests(self, planned: Sequence[tuple[str, date, str, Sequence[str]]]) -> list[int | None]:
        """Write many digests as `planned` with their papers, in one transaction: (subscriber,
        day, message id, paper ids) each; returns their row ids in order, None for a digest
        another run wrote first. Earlier digests of these subscribers that never arrived give
        their papers back (`_release_unsent`)."""
        if not planned:
            return []
        now = _now()
        with self._tx() as db:
            by_day: dict[date, list[str]] = {}
            for subscriber, day, _, _ in planned:
                by_day.setdefault(day, []).append(subscriber)
            for day, subscribers in by_day.items():
                self._release_unsent_many(db, subscribers, day)
            rows = [
                {
                    "subscriber": subscriber, "digest_day": day, "status": DeliveryState.PLANNED.value,
                    "message_id": message_id, "paper_count": len(ids), "attempts": 0,
                    "created_at": now, "updated_at": now,
                }
                for subscriber, day, message_id, ids in planned
            ]
            # A row another run wrote meanwhile (a worker on the same shard) is left alone:
            # its digest is that run's to send.
            insert = _insert_for(db.dialect.name)(digests).on_conflict_do_nothing(
                index_elements=[digests.c.subscriber, digests.c.digest_day]
            )
            result = db.execute(insert.returning(digests.c.id, digests.c.subscriber, digests.c.digest_day), rows)
            written = {(row.subscriber, _as_date(row.digest_day)): int(row.id) for row in result}
            ids = [written.get((subscriber, day)) for subscriber, day, _, _ in planned]
            papers_rows = [
                {"digest_id": digest_id, "paper_id": paper_id, "subscriber": subscriber, "position": position}
                for digest_id, (subscriber, _, _, paper_ids) in zip(ids, planned)
                if digest_id is not None
                for position, paper_id in enumerate(paper_ids)
            ]
            if papers_rows:
                db.execute(digest_papers.insert(), papers_rows)
        return ids

    def record_deliveries(self, events: Sequence[DeliveryEvent]) -> list[str]:
        """Apply a batch of delivery events in one transaction (the ledger's group commit).

        Runs of the same kind are written with one prepared statement each (`executemany`):
        the batch of a busy run is a few hundred `sending`/`sent` rows. Returns the addresses
        that became suppressed in this batch.
        """
        with self._tx() as db:
            return _apply_events(db, events, _now())

    def commit_deliveries(
        self, claims: Sequence[Claim], lease: Lease, events: Sequence[DeliveryEvent]
    ) -> tuple[set[int], list[str]]:
        """One group commit of the send spine: claim `claims` for `lease` (see `store.claims`)
        and apply `events`, in one transaction. Returns the ids claimed and the addresses
        that became suppressed."""
        now = _now()
        with self._tx() as db:
            claimed = claim_rows(db, claims, lease, now) if claims else set()
            return claimed, _apply_events(db, events, now)

    def deferred_waiting(self, now: datetime) -> tuple[int, datetime | None]:
        """How many deferred digests wait for a later try at `now`, and the earliest try."""
        with self._tx() as db:
            query = select(func.count(), func.min(digests.c.next_attempt_at)).where(
                digests.c.status == DeliveryState.DEFERRED.value
            )
            count, earliest = db.execute(query).one()
        if earliest is not None and not isinstance(earliest, datetime):
            earliest = datetime.fromisoformat(str(earliest))
        return int(count), as_utc(earliest) if earliest is not None else None

    def deferred_due(self, now: datetime) -> set[str]:
        """Subscribers with a deferred digest whose next try is due at `now`."""
        with self._tx() as db:
            query = select(digests.c.subscriber).where(
                digests.c.status == DeliveryState.DEFERRED.value, digests.c.next_attempt_at <= now
            )
            return set(db.execute(query).scalars())

    def pending_bounces(self) -> set[str]:
        """Case-folded addresses with permanent refusals counted but not yet suppressed."""
        with self._tx() as db:
            query = select(suppressions.c.address).where(suppressions.c.suppressed_at.is_(None))
            return set(db.execute(query).scalars())


def _apply_events(db: Connection, events: Sequence[DeliveryEvent], now: datetime) -> list[str]:
    newly_suppressed: list[str] = []
    for state, run in _runs(events):
        if state is DeliveryState.SENDING:
            db.execute(_MARK_SENDING, [{"b_id": e.digest_id, "b_now": now} for e in run])
        elif state is DeliveryState.SENT:
            db.execute(_MARK_SENT, [{"b_id": e.digest_id, "b_now": now} for e in run])
            cleared = [{"b_address": e.address.casefold()} for e in run if e.clear_bounces]
            if cleared:
                db.execute(_CLEAR_BOUNCES, cleared)
        else:
            values = [
                {"b_id": e.digest_id, "b_now": now, "b_status": e.state.value, "b_code": e.code,
                 "b_error": e.error, "b_next": e.next_attempt_at, "b_seen": e.seen_attempts}
                for e in run
            ]
            claimed = [v for v, e in zip(values, run) if e.seen_attempts is None]
            unclaimed = [v for v, e in zip(values, run) if e.seen_attempts is not None]
            if claimed:
                db.execute(_MARK_OTHER, claimed)
            if unclaimed:
                db.execute(_MARK_OTHER_UNCLAIMED, unclaimed)
            for event in run:
                if event.state is DeliveryState.FAILED and event.bounce and event.suppress_after:
                    if count_bounce(db, event.address, event.code, event.error or "", event.suppress_after):
                        newly_suppressed.append(event.address)
    return newly_suppressed


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One change to a ledger row, applied in a batch by `record_deliveries`."""

    digest_id: int
    state: DeliveryState
    address: str = ""
    code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    bounce: bool = False
    suppress_after: int = 0
    clear_bounces: bool = False
    # Set for a change made without claiming the row (a digest not attempted, one expired):
    # applied only if the row's attempts are still these and nobody may be sending it.
    seen_attempts: int | None = None
