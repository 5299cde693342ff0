"""The roster: the valid subscribers of a file, kept in a spool, read back as `Subscriber`s.

    roster = Roster(); roster.append(subscriber) ...; roster[7]; roster[100:200]; len(roster)

A `Roster` is a `Sequence[Subscriber]` whose entries live as one marshalled record each in a
`Spool` (`newsletter.spool`): in memory for a small file, in a temporary file for a big one,
so a day of 100,000 subscribers does not hold 100,000 objects in the process that sends.
Entries were validated when they were read; they are rebuilt from their record without
validating again (a few microseconds, against 60 for validation), their repeated text
(keywords, time zones) interned again.

A slice is a roster of its own, in memory (what a pool worker gets: one block of bytes, not
100 pickled objects); `where` keeps the entries that pass a test, sharing the spool.
"""

from __future__ import annotations

import marshal
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from typing import overload

from newsletter.spool import Spool
from newsletter.subscriber import Subscriber

FIELDS = tuple(field.name for field in fields(Subscriber))
# The slots' own setters: a frozen dataclass refuses `setattr`, and its values are known valid.
_SETTERS = tuple(getattr(Subscriber, name).__set__ for name in FIELDS)


def encode(subscriber: Subscriber) -> bytes:
    return marshal.dumps(tuple(getattr(subscriber, name) for name in FIELDS))


def decode(record: bytes) -> Subscriber:
    subscriber = object.__new__(Subscriber)
    for setter, value in zip(_SETTERS, marshal.loads(record), strict=True):
        setter(subscriber, value)
    return subscriber


class _Known:
    """What a roster knows of its entries without reading them: the days in play follow from
    the time zones, the keyword vectors to compute (hybrid mode) from the keywords."""

    __slots__ = ("zones", "keywords")

    def __init__(self) -> None:
        self.zones: set[str] = set()
        self.keywords: set[str] = set()

    def add(self, subscriber: Subscriber) -> None:
        self.zones.add(subscriber.timezone)
        self.keywords.update(subscriber.keywords)


class Roster(Sequence[Subscriber]):
    """Subscribers in a spool; `_picked`: the spool's records this roster holds, in order
    (None: all of them)."""

    __slots__ = ("_spool", "_picked", "_known")

    def __init__(self, subscribers: Sequence[Subscriber] = (), *, spool: Spool | None = None,
                 picked: array | None = None) -> None:  # type: ignore[type-arg]
        self._spool = spool if spool is not None else Spool()
        self._picked = picked
        self._known: _Known | None = _Known() if spool is None else None  # kept while appended to
        for subscriber in subscribers:
            self.append(subscriber)

    def append(self, subscriber: Subscriber) -> None:
        if self._picked is not None:
            raise TypeError("a roster made by `where` is read-only")
        self._spool.append(encode(subscriber))
        if self._known is not None:
            self._known.add(subscriber)

    def _facts(self) -> _Known:
        if self._known is None:
            self._known = _Known()
            for subscriber in self:
                self._known.add(subscriber)
        return self._known

    @property
    def timezones(self) -> frozenset[str]:
        """The entries' time zones."""
        return frozenset(self._facts().zones)

    @property
    def keywords(self) -> frozenset[str]:
        """The entries' keywords."""
        return frozenset(self._facts().keywords)

    def __len__(self) -> int:
        return len(self._spool) if self._picked is None else len(self._picked)

    @overload
    def __getitem__(self, index: int) -> Subscriber: ...

    @overload
    def __getitem__(self, index: slice) -> Roster: ...

    def __getitem__(self, index: int | slice) -> Subscriber | Roster:
        if isinstance(index, slice):
            return self._slice(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("roster index out of range")
        return decode(self._spool[index if self._picked is None else self._picked[index]])

    def _slice(self, index: slice) -> Roster:
        start, stop, step = index.indices(len(self))
        if step == 1 and self._picked is None:
            block, starts = self._spool.block(start, stop)
            return Roster(spool=Spool.of_block(block, starts))
        copy = Roster(spool=Spool())  # its facts are read from its entries when asked
        for position in range(start, stop, step):
            copy._spool.append(self._spool[position if self._picked is None else self._picked[position]])
        return copy

    def __iter__(self) -> Iterator[Subscriber]:
        for position in range(len(self)):
            yield decode(self._spool[position if self._picked is None else self._picked[position]])

    def where(self, keep: Callable[[Subscriber], bool]) -> Roster:
        """The entries that pass `keep`, in order, sharing this roster's spool."""
        return self.pick(array("L", (position for position, subscriber in enumerate(self) if keep(subscriber))))

    def pick(self, positions: Iterable[int]) -> Roster:
        """The entries at `positions`, in that order, sharing this roster's spool."""
        own = self._picked
        subset = Roster(spool=self._spool, picked=array("L", positions if own is None else (own[p] for p in positions)))
        return subset

    def __reduce__(self) -> tuple[Callable[..., Roster], tuple[bytes, array]]:  # type: ignore[type-arg]
        """Pickled as one block (to a pool worker, to another process)."""
        whole = self[:] if self._picked is not None else self
        block, starts = whole._spool.block(0, len(whole))
        return _from_block, (block, starts)

    def __repr__(self) -> str:
        where = "a temporary file" if self._spool.on_disk else "memory"
        return f"<Roster of {len(self)} subscribers in {where}>"


def _from_block(block: bytes, starts: array) -> Roster:  # type: ignore[type-arg]
    return Roster(spool=Spool.of_block(block, starts))


def timezones(subscribers: Sequence[Subscriber]) -> frozenset[str]:
    """The time zones of `subscribers` (a roster knows them without reading its entries)."""
    if isinstance(subscribers, Roster):
        return subscribers.timezones
    return frozenset(subscriber.timezone for subscriber in subscribers)


def keywords(subscribers: Sequence[Subscriber]) -> frozenset[str]:
    """The keywords of `subscribers` (a roster knows them without reading its entries)."""
    if isinstance(subscribers, Roster):
        return subscribers.keywords
    return frozenset(keyword for subscriber in subscribers for keyword in subscriber.keywords)
