"""The pacer on a virtual clock: start times are the pacer's own decisions, never wall-clock
arrival times (those depend on how busy the machine is; issue 11 saw `assert 22 <= 21`)."""

from __future__ import annotations

import asyncio

from newsletter.delivery.pacing import MAX_INTERVAL, RECOVER_AFTER, THROTTLED_MIN_INTERVAL, Pacer


class VirtualClock:
    """Monotonic time that moves only when a sleeper wakes: `sleep` costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        wake = self.now + seconds
        await asyncio.sleep(0)  # let the other callers run, as a real sleep would
        self.now = max(self.now, wake)


def busiest_window(starts: list[float], width: float = 1.0) -> int:
    """The most starts inside any half-open window [t, t + width)."""
    return max(sum(1 for t in starts if begin <= t < begin + width) for begin in starts)


def concurrent_starts(pacer: Pacer, count: int) -> list[float]:
    async def go() -> list[float]:
        return list(await asyncio.gather(*(pacer.wait() for _ in range(count))))

    return sorted(asyncio.run(go()))


def test_concurrent_callers_get_starts_one_interval_apart() -> None:
    clock = VirtualClock()
    pacer = Pacer(20, clock=clock, sleep=clock.sleep)

    starts = concurrent_starts(pacer, 30)

    assert starts[0] == 0.0
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= 1 / 20 - 1e-9
    assert busiest_window(starts) == 20
    assert clock.now == starts[-1]  # everyone slept until their slot, and no longer


def test_no_rate_means_no_waiting() -> None:
    clock = VirtualClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)

    assert concurrent_starts(pacer, 10) == [0.0] * 10
    assert clock.slept == [] and pacer.rate == float("inf")


def test_time_that_passed_is_not_made_up_later() -> None:
    clock = VirtualClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    assert concurrent_starts(pacer, 2) == [0.0, 0.5]
    clock.now = 100.0  # a quiet spell: no burst of "saved" slots afterwards
    assert concurrent_starts(pacer, 3) == [100.0, 100.5, 101.0]


def test_a_slow_down_widens_the_interval_for_everyone_and_recovers_to_the_ceiling() -> None:
    clock = VirtualClock()
    pacer = Pacer(20, clock=clock, sleep=clock.sleep)

    pacer.slow_down()
    assert pacer.interval == THROTTLED_MIN_INTERVAL and pacer.slowdowns == 1
    starts = concurrent_starts(pacer, 5)
    assert starts[0] >= THROTTLED_MIN_INTERVAL  # the next attempt waits a new interval from now
    assert min(b - a for a, b in zip(starts, starts[1:])) >= THROTTLED_MIN_INTERVAL - 1e-9

    for _ in range(RECOVER_AFTER):
        pacer.succeeded()
    assert pacer.interval == 1 / 20  # back to the ceiling, never above it
    for _ in range(3 * RECOVER_AFTER):
        pacer.succeeded()
    assert pacer.rate == 20


def test_repeated_slow_downs_stop_at_the_slowest_pace() -> None:
    clock = VirtualClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        pacer.slow_down()
    assert pacer.interval == MAX_INTERVAL
