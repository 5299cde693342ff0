"""The outcomes of a run, one per digest, kept in a spool and counted as they come.

    log = OutcomeLog(); log.add(outcome, position=3); log.count(OutcomeStatus.SENT); list(log)

A run of 100,000 subscribers has 100,000 outcomes, each made while the run allocates and
frees composed messages by the thousand: kept as objects, each pinned a page of the
allocator and the sending process grew by about 1.8 KB per subscriber. Here each outcome is
one marshalled record in a `Spool` (`newsletter.spool`), counted by status on the way in,
and read back as `Outcome`s in the order of the subscribers (`position`, then arrival).
"""

from __future__ import annotations

import marshal
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from newsletter.models import Outcome, OutcomeStatus
from newsletter.spool import Spool


ORDER_BITS = 16  # a subscriber's digests in one run: today's and deferred ones of earlier days


class OutcomeLog(Sequence[Outcome]):
    """Outcomes in the order of (`position`, `order`); arrival order among equals."""

    def __init__(self, outcomes: Iterable[Outcome] = ()) -> None:
        self._spool = Spool()
        self._keys = array("q")  # position << ORDER_BITS | order, per record
        self._sorted = True
        self._order: array | None = None  # type: ignore[type-arg]  # record index of each place, once sorted
        self._counts: Counter[OutcomeStatus] = Counter()
        self._retried = 0
        self.extend(outcomes)

    def add(self, outcome: Outcome, position: int | None = None, order: int = 0) -> None:
        """Record `outcome`, placed at `position` among the subscribers (default: last), as
        the `order`-th digest of that subscriber in the run."""
        key = (position << ORDER_BITS | order) if position is not None else (self._keys[-1] if self._keys else 0)
        if self._keys and key < self._keys[-1]:
            self._sorted = False
        self._order = None
        self._keys.append(key)
        status = OutcomeStatus(outcome.status)
        self._counts[status] += 1
        self._retried += status is OutcomeStatus.SENT and outcome.attempts > 1
        self._spool.append(marshal.dumps((
            outcome.subscriber, status.value, outcome.papers, outcome.detail, outcome.subject, outcome.attempts,
        )))

    def append(self, outcome: Outcome) -> None:
        self.add(outcome)

    def extend(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            self.add(outcome)

    def __iadd__(self, outcomes: Iterable[Outcome]) -> OutcomeLog:
        self.extend(outcomes)
        return self

    def count(self, status: object) -> int:  # type: ignore[override]
        """How many outcomes have `status` (counted on the way in: no record is read)."""
        try:
            return self._counts[OutcomeStatus(status)]
        except ValueError:
            return 0

    @property
    def retried(self) -> int:
        """Digests sent that needed more than one attempt."""
        return self._retried

    def __len__(self) -> int:
        return len(self._spool)

    def _record(self, place: int) -> int:
        if self._sorted:
            return place
        if self._order is None:
            self._order = array("L", sorted(range(len(self._keys)), key=self._keys.__getitem__))
        return self._order[place]

    @overload
    def __getitem__(self, index: int) -> Outcome: ...

    @overload
    def __getitem__(self, index: slice) -> list[Outcome]: ...

    def __getitem__(self, index: int | slice) -> Outcome | list[Outcome]:
        if isinstance(index, slice):
            return [self[place] for place in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("outcome index out of range")
        subscriber, status, papers, detail, subject, attempts = marshal.loads(self._spool[self._record(index)])
        return Outcome(subscriber, OutcomeStatus(status), papers, detail, subject, attempts)

    def __iter__(self) -> Iterator[Outcome]:
        for place in range(len(self)):
            yield self[place]

    def __repr__(self) -> str:
        counts = ", ".join(f"{count} {status}" for status, count in self._counts.items())
        return f"<OutcomeLog of {len(self)}: {counts}>"
