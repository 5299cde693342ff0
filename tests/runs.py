"""Running a day in tests the way the CLI does: plain values from the settings, then the spine."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from newsletter.day import DayReport, run_day, send_copy
from newsletter.delivery import Transport
from newsletter.models import Outcome
from newsletter.roster import Roster
from newsletter.runtime import day_options, sender_from
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber


def send_digests(
    store: Store, subscribers: Iterable[Subscriber], settings: Settings, transport: Transport,
    *, now: datetime | None = None, by_hand: bool = True,
) -> DayReport:
    # a roster, as `newsletter send` passes (the subscribers file's entries, in a spool)
    return run_day(store, Roster(list(subscribers)), sender_from(settings), transport, now, day_options(settings, by_hand=by_hand))


def send_test(
    store: Store, subscriber: Subscriber, to_address: str, settings: Settings, transport: Transport,
    *, now: datetime | None = None,
) -> Outcome:
    return send_copy(store, subscriber, sender_from(settings), transport, now, to_address=to_address)
