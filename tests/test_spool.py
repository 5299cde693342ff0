"""What a run keeps per subscriber lives in a spool, not as objects: the spool gives every
record back as written, in memory or from its temporary file; a roster gives back the very
subscribers it was given; an outcome log keeps the subscribers' order and its counts."""

from __future__ import annotations

import pickle
import sys

from hypothesis import given, settings, strategies as st

from newsletter.models import Outcome, OutcomeStatus
from newsletter.outcomes import OutcomeLog
from newsletter.roster import Roster, keywords, timezones
from newsletter.spool import Spool
from newsletter.subscriber import Subscriber


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(st.binary(max_size=40), max_size=60),
    memory_bytes=st.integers(0, 300),
    flush_bytes=st.integers(1, 120),
    span=st.tuples(st.integers(-3, 70), st.integers(-3, 70)),
)
def test_spool_gives_back_every_record_and_block_in_memory_or_on_disk(
    records: list[bytes], memory_bytes: int, flush_bytes: int, span: tuple[int, int]
) -> None:
    spool = Spool(memory_bytes=memory_bytes, flush_bytes=flush_bytes)
    for index, record in enumerate(records):
        assert spool.append(record) == index
    assert len(spool) == len(records) and spool.size == sum(map(len, records))
    assert [spool[i] for i in range(len(records))] == records
    if records:
        assert spool[-1] == records[-1]
    start, stop = span
    block, starts = spool.block(start, stop)
    expected = records[max(0, start) : max(0, stop)]
    assert [block[starts[i] : starts[i + 1]] for i in range(len(starts) - 1)] == expected
    again = Spool.of_block(block, starts)
    assert [again[i] for i in range(len(again))] == expected
    spool.close()


def test_a_big_spool_moves_to_an_unlinked_file() -> None:
    spool = Spool(memory_bytes=1000, flush_bytes=100)
    for n in range(500):
        spool.append(b"%05d" % n)
    assert spool.on_disk
    assert spool[0] == b"00000" and spool[499] == b"00499"
    small = Spool()
    small.append(b"x")
    assert not small.on_disk


def people() -> list[Subscriber]:
    return [
        Subscriber(email="ada@example.org", keywords=("theorem proving", "Lean"), max_papers=5,
                   timezone="Europe/Paris", send_at="07:30"),
        Subscriber(email="bob@example.org", name="Bob B.", keywords=("agents",), exclude=("web agents",),
                   authors=("Yann LeCun",), trending=3, max_papers=10, timezone="UTC", send_at="06:00",
                   active=False, send_empty=True),
        Subscriber(email="cy@example.org", trending=5, max_papers=1, timezone="Asia/Tokyo", send_at="23:59"),
    ]


def test_a_roster_gives_back_the_same_subscribers_from_memory_or_a_file() -> None:
    for memory_bytes in (1 << 20, 0):
        spool = Spool(memory_bytes=memory_bytes, flush_bytes=64)
        roster = Roster(spool=spool)
        for subscriber in people() * 40:
            roster.append(subscriber)
        assert list(roster) == people() * 40
        assert roster[1] == people()[1] and roster[-1] == people()[2]
        assert spool.on_disk == (memory_bytes == 0)
        assert roster[0].keywords[0] is sys.intern("theorem proving")  # interned again


def test_roster_slices_subsets_and_pickles_are_rosters_of_the_same_entries() -> None:
    roster = Roster(people() * 3)
    chunk = roster[2:5]
    assert isinstance(chunk, Roster) and list(chunk) == (people() * 3)[2:5]
    assert list(roster[::4]) == (people() * 3)[::4]
    active = roster.where(lambda s: s.active)
    assert [s.email for s in active] == ["ada@example.org", "cy@example.org"] * 3
    assert list(active[1:3]) == [people()[2], people()[0]]
    for value in (roster, chunk, active):
        again = pickle.loads(pickle.dumps(value))
        assert isinstance(again, Roster) and list(again) == list(value)
    assert timezones(roster) == {"Europe/Paris", "UTC", "Asia/Tokyo"} == timezones(list(roster))
    assert timezones(chunk) == {"Europe/Paris", "UTC", "Asia/Tokyo"}
    assert timezones(roster[1::3]) == {"UTC"} and timezones(active) == {"Europe/Paris", "Asia/Tokyo"}
    assert keywords(roster) == {"theorem proving", "Lean", "agents"} == keywords(list(roster))
    assert keywords(active) == {"theorem proving", "Lean"} and keywords(roster[2:3]) == frozenset()


def test_an_outcome_log_keeps_the_subscribers_order_and_counts() -> None:
    log = OutcomeLog()
    arrivals = [
        (Outcome("c@x.org", OutcomeStatus.SENT, 3, "<c@x>", "Three", 2), 2, 0),
        (Outcome("a@x.org", OutcomeStatus.SENT, 1, "<a-today@x>", "One", 1), 0, 1),
        (Outcome("b@x.org", OutcomeStatus.DEFERRED, 0, "451 later", "", 1), 1, 0),
        (Outcome("a@x.org", OutcomeStatus.FAILED, 0, "550 no", "", 1), 0, 0),
        (Outcome("d@x.org", OutcomeStatus.SKIPPED, 0, "inactive", "", 0), 3, 0),
    ]
    for outcome, position, order in arrivals:
        log.add(outcome, position, order)
    assert [(o.subscriber, o.status) for o in log] == [
        ("a@x.org", "failed"), ("a@x.org", "sent"), ("b@x.org", "deferred"), ("c@x.org", "sent"), ("d@x.org", "skipped"),
    ]
    assert log[3] == arrivals[0][0] and log[-1] == arrivals[4][0] and log[1:3] == [arrivals[1][0], arrivals[2][0]]
    assert (log.count("sent"), log.count(OutcomeStatus.FAILED), log.count("previewed"), log.count("nonsense")) == (2, 1, 0, 0)
    assert log.retried == 1
    log += [Outcome("e@x.org", OutcomeStatus.SENT)]
    assert len(log) == 6 and log[-1].subscriber == "e@x.org" and log.count("sent") == 3
