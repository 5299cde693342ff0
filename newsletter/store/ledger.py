"""The delivery ledger: one row per (subscriber, digest day), its state and its papers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.store.base import StoreBase, new_id
from newsletter.store.base import now as _now
from newsletter.store.schema import digest_papers, digests, suppressions
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
        stale = db.execute(
            select(digests.c.id).where(
                digests.c.subscriber == subscriber,
                digests.c.digest_day < before,
                digests.c.status.in_(("failed", "planned")),  # not yet abandoned
            )
        ).scalars().all()
        if stale:
            db.execute(digest_papers.delete().where(digest_papers.c.digest_id.in_(stale)))
            db.execute(
                update(digests).where(digests.c.id.in_(stale)).values(status="abandoned", updated_at=_now())
            )
        return len(stale)

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

