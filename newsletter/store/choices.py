"""What subscribers chose themselves: unsubscribes and "more/less like this" votes.

These live in the store, not in the subscribers file, and win over it: an address that
unsubscribed (by a link or `newsletter unsubscribe`) is not mailed even with `active: true`,
until it resubscribes. Addresses are kept case-folded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from newsletter.store.base import StoreBase, as_utc
from newsletter.store.base import now as _now
from newsletter.store.schema import unsubscribes, votes

UNSUBSCRIBE_SOURCES = ("one-click", "link", "cli")
MORE, LESS = 1, -1


@dataclass(frozen=True)
class Vote:
    """A subscriber's current vote on one paper: +1 more like this, -1 less like this."""

    subscriber: str
    paper_id: str
    vote: int
    voted_at: datetime


class ChoicesStore(StoreBase):
    def unsubscribe(self, address: str, *, source: str, at: datetime | None = None) -> bool:
        """Record that `address` unsubscribed; True if it was subscribed until now.

        Repeating it changes nothing (a mail provider may send the one-click POST twice).
        """
        if source not in UNSUBSCRIBE_SOURCES:
            raise ValueError(f"unknown unsubscribe source {source!r}")
        key = address.casefold()
        with self._tx() as db:
            if db.execute(select(unsubscribes.c.address).where(unsubscribes.c.address == key)).first():
                return False
            try:
                with db.begin_nested():
                    db.execute(unsubscribes.insert().values(address=key, unsubscribed_at=at or _now(), source=source))
            except IntegrityError:  # the same request, twice at once: the other one recorded it
                return False
        return True

    def resubscribe(self, address: str) -> bool:
        """Forget that `address` unsubscribed; True if it had."""
        with self._tx() as db:
            result = db.execute(unsubscribes.delete().where(unsubscribes.c.address == address.casefold()))
            return bool(result.rowcount)

    def is_unsubscribed(self, address: str) -> bool:
        with self._tx() as db:
            query = select(unsubscribes.c.address).where(unsubscribes.c.address == address.casefold())
            return db.execute(query).first() is not None

    def unsubscribed_addresses(self) -> set[str]:
        """Case-folded addresses that unsubscribed themselves: never mailed."""
        with self._tx() as db:
            return set(db.execute(select(unsubscribes.c.address)).scalars())

    def record_vote(self, subscriber: str, paper_id: str, vote: int, *, at: datetime | None = None) -> None:
        """Make `vote` (+1 / -1) the subscriber's current vote on `paper_id`, at `at` (now).

        One current vote per (subscriber, paper): a later vote replaces the earlier one.
        """
        if vote not in (MORE, LESS):
            raise ValueError(f"a vote is {MORE} or {LESS}, not {vote!r}")
        key = subscriber.casefold()
        when = at or _now()
        where = (votes.c.subscriber == key, votes.c.paper_id == paper_id)
        with self._tx() as db:
            changed = db.execute(update(votes).where(*where).values(vote=vote, voted_at=when)).rowcount
            if not changed:
                try:
                    with db.begin_nested():
                        db.execute(votes.insert().values(subscriber=key, paper_id=paper_id, vote=vote, voted_at=when))
                except IntegrityError:  # inserted by a concurrent request: this one is the later vote
                    db.execute(update(votes).where(*where).values(vote=vote, voted_at=when))

    def votes(self, subscriber: str | None = None) -> list[Vote]:
        """Current votes (of one subscriber, or everyone's), newest first."""
        query = select(votes).order_by(votes.c.voted_at.desc(), votes.c.subscriber, votes.c.paper_id)
        if subscriber is not None:
            query = query.where(votes.c.subscriber == subscriber.casefold())
        with self._tx() as db:
            return [
                Vote(row.subscriber, row.paper_id, row.vote, as_utc(row.voted_at)) for row in db.execute(query)
            ]
