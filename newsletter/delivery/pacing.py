"""Pacing: how fast messages may start, shared by every SMTP connection of a run.

    Pacer.wait()        before each attempt: returns (the start time it reserved) when this
                        attempt may start
    Pacer.slow_down()   the server pushed back (421, 454 "rate exceeded"): halve the pace
    Pacer.succeeded()   a message went through; after a calm streak the pace recovers

The configured rate (NEWSLETTER_RATE_LIMIT messages per second) is a ceiling that holds across
all connections: attempts are given start times at least `interval` apart. Throttling replies
widen the interval for everyone, not just the connection that heard them, so a provider that
says "slow down" sees the whole sender slow down. The pace never recovers above the ceiling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

THROTTLED_MIN_INTERVAL = 0.1  # after a throttle reply with no rate set: at most 10 msg/s
MAX_INTERVAL = 10.0  # never slower than one message every 10 s
RECOVER_AFTER = 20  # successes in a row before the pace speeds up again


class Pacer:
    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_interval = 1.0 / rate if rate else 0.0
        self.interval = self.base_interval
        self.slowdowns = 0
        self._clock = clock
        self._sleep = sleep
        self._next_start = 0.0
        self._calm = 0

    async def wait(self) -> float:
        """Reserve the next start slot, sleep until it comes, and return it (clock time).

        The slot is reserved before sleeping, with no await in between, so concurrent
        callers on one event loop get distinct slots `interval` apart.
        """
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + self.interval
        if start > now:
            await self._sleep(start - now)
        return start

    def slow_down(self) -> None:
        """Double the interval between starts (from at least THROTTLED_MIN_INTERVAL)."""
        self.slowdowns += 1
        self._calm = 0
        self.interval = min(MAX_INTERVAL, max(self.interval * 2, THROTTLED_MIN_INTERVAL))
        # Everyone waits at least one new interval from now before the next attempt.
        self._next_start = max(self._next_start, self._clock() + self.interval)
        log.warning("the SMTP server asked to slow down; now at most %.1f messages/s", self.rate)

    def succeeded(self) -> None:
        if self.interval <= self.base_interval:
            return
        self._calm += 1
        if self._calm >= RECOVER_AFTER:
            self._calm = 0
            faster = self.interval / 2
            self.interval = self.base_interval if faster < max(self.base_interval, THROTTLED_MIN_INTERVAL) else faster

    @property
    def rate(self) -> float:
        """The current ceiling in messages per second (inf when unlimited)."""
        return 1.0 / self.interval if self.interval else float("inf")
