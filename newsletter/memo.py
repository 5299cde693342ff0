"""A memo bounded by memory: work done once per process, reused by every digest that needs it.

A day renders a few thousand distinct cards for tens of thousands of subscribers; the
renderer keeps them in a `Kept` memo, so that a worker process's memory stays bounded
however long the day is: the least recently used entries go first once the values kept
take more than the memo's budget. It may be shared by threads (`serve` renders digests in
its thread pool).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """A least-recently-used mapping from keys to values of known size, holding at most
    `budget` bytes of values (as their sizes were given)."""

    __slots__ = ("budget", "size", "stored", "_entries", "_lock")

    def __init__(self, budget: int) -> None:
        if budget <= 0:
            raise ValueError("a memo needs a positive budget")
        self.budget = budget
        self.size = 0  # bytes held now
        self.stored = 0  # values put in since the start (the misses of whoever fills the memo)
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, size: int) -> V:
        """Keep `value` (about `size` bytes) under `key`, dropping the least recently used
        entries beyond the budget, and return it."""
        with self._lock:
            self.stored += 1
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= old[1]
            self._entries[key] = (value, size)
            self.size += size
            while self.size > self.budget and len(self._entries) > 1:
                self.size -= self._entries.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0

    def __len__(self) -> int:
        return len(self._entries)
