"""Claims: how a run takes a digest to send it, so that runs sharing a day never send one twice.

A run plans a digest from a snapshot of the ledger, then, just before its first byte goes out,
claims it: one UPDATE that moves the row to `sending` only if nobody has claimed it since the
snapshot (its `attempts`, which every claim counts, are still those the run saw) and it is not
held by a live claim. On PostgreSQL a second UPDATE of the same row waits for the first to
commit and then finds `attempts` changed; on SQLite writes are serialised. Either way exactly one
of two runs that planned the same digest gets it: the check and the write are one statement.

A claim may carry a lease (`claimed_until`): while it lasts, a `sending` row is its owner's, so
a Celery task delivered twice, or a shard handed to a second worker while the first still works
on it, leaves it alone; once it is over (the owner was killed), the next run takes the row and
sends it again, the one duplicate a crash may cost per connection. One process sending the day
claims without a lease, so its next run takes a `sending` row at once, as it always has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, ColumnElement, and_, or_, tuple_, update
from sqlalchemy.engine import Connection

from newsletter.models import DeliveryState
from newsletter.store.schema import digests

CHUNK = 500  # rows per statement


@dataclass(frozen=True, slots=True)
class Claim:
    """Take digest `digest_id` if its `attempts` are still `seen_attempts`."""

    digest_id: int
    seen_attempts: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Who claims (host:pid[:task]) and for how many seconds a claimed row stays theirs
    (None: no lease, any later run may take it)."""

    owner: str
    seconds: float | None = None


def free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """A row nobody else may be sending at `now`: not finished, and not held by a live claim."""
    return and_(
        digests.c.status != DeliveryState.SENT.value,  # (no NOT IN: it cannot run as executemany)
        digests.c.status != DeliveryState.ABANDONED.value,
        or_(
            digests.c.status != DeliveryState.SENDING.value,
            digests.c.claimed_until.is_(None),
            digests.c.claimed_until < now,
        ),
    )


def claim_rows(db: Connection, claims: Sequence[Claim], lease: Lease, now: datetime) -> set[int]:
    """Move the claimable rows among `claims` to `sending` for `lease.owner`; their ids."""
    claimed: set[int] = set()
    until = now + timedelta(seconds=lease.seconds) if lease.seconds else None
    for start in range(0, len(claims), CHUNK):
        chunk = claims[start : start + CHUNK]
        statement = (
            update(digests)
            .where(
                # `id IN` finds the rows by primary key; the pairs alone made SQLite scan the
                # whole table for every claim (a day of 100,000 digests: 3,000 scans of 100,000).
                digests.c.id.in_([c.digest_id for c in chunk]),
                tuple_(digests.c.id, digests.c.attempts).in_([(c.digest_id, c.seen_attempts) for c in chunk]),
                free(now),
            )
            .values(
                status=DeliveryState.SENDING.value, attempts=digests.c.attempts + 1, updated_at=now,
                claimed_by=lease.owner, claimed_until=until,
            )
            .returning(digests.c.id)
        )
        claimed.update(int(digest_id) for digest_id in db.execute(statement).scalars())
    return claimed
