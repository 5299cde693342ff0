"""Claims in the ledger (newsletter/store/claims.py), on SQLite and PostgreSQL: two runs that
planned the same digest never both get it; a lease keeps a `sending` digest its claimer's until
it ends; without a lease the next run takes it at once, as one process always has."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, date, datetime
from pathlib import Path
from threading import Barrier, Thread

from sqlalchemy import event

from newsletter.models import DeliveryState
from newsletter.store import Claim, DeliveryEvent, Lease, Store

DAY = date(2026, 4, 15)


def _planned(store: Store, count: int) -> list[int]:
    ids = store.plan_digests([(f"r{n}@example.org", DAY, f"<m{n}@x>", ()) for n in range(count)])
    assert None not in ids
    return [i for i in ids if i is not None]


def _status(store: Store) -> dict[int, tuple[str, int, str | None]]:
    return {row["id"]: (row["status"], row["attempts"], row["claimed_by"]) for row in store.ledger()}  # type: ignore[misc]


def test_a_digest_planned_by_two_runs_is_claimed_by_one(database_url: str) -> None:
    store = Store(database_url)
    ids = _planned(store, 3)
    first, _ = store.commit_deliveries([Claim(i, 0) for i in ids], Lease("a"), [])
    second, _ = store.commit_deliveries([Claim(i, 0) for i in ids], Lease("b"), [])
    assert (first, second) == (set(ids), set())
    assert {claimer for _, _, claimer in _status(store).values()} == {"a"}
    store.close()


def test_concurrent_claims_of_the_same_rows_never_overlap(database_url: str) -> None:
    """Eight threads, each its own store (its own connections), claim the same 200 digests at once."""
    setup = Store(database_url)
    ids = _planned(setup, 200)
    barrier = Barrier(8)
    won: dict[str, set[int]] = {}

    def run(owner: str) -> None:
        store = Store(database_url)
        barrier.wait()
        got: set[int] = set()
        for start in range(0, len(ids), 20):  # many small group commits, interleaved with the others
            claimed, _ = store.commit_deliveries([Claim(i, 0) for i in ids[start : start + 20]], Lease(owner, 60), [])
            got |= claimed
        won[owner] = got
        store.close()

    threads = [Thread(target=run, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [digest_id for got in won.values() for digest_id in got]
    assert sorted(claimed) == sorted(ids)  # each digest once, by exactly one owner
    assert all(attempts == 1 for _, attempts, _ in _status(setup).values())
    setup.close()


def test_a_lease_keeps_a_sending_digest_until_it_ends(database_url: str) -> None:
    store = Store(database_url)
    [digest_id] = _planned(store, 1)
    assert store.commit_deliveries([Claim(digest_id, 0)], Lease("killed", 1), [])[0] == {digest_id}
    # Another run that saw the row `sending` (attempts 1) cannot take it while the lease lasts...
    assert store.commit_deliveries([Claim(digest_id, 1)], Lease("other", 60), [])[0] == set()
    time.sleep(1.1)  # the lease is wall-clock time, as a dead worker's would run out
    # ...and takes it once it is over: the claimer was killed, the digest is sent again.
    assert store.commit_deliveries([Claim(digest_id, 1)], Lease("other", 60), [])[0] == {digest_id}
    assert _status(store)[digest_id] == ("sending", 2, "other")
    store.close()


def test_without_a_lease_the_next_run_takes_a_sending_digest_at_once(database_url: str) -> None:
    store = Store(database_url)
    [digest_id] = _planned(store, 1)
    store.commit_deliveries([Claim(digest_id, 0)], Lease("crashed"), [])
    assert store.commit_deliveries([Claim(digest_id, 1)], Lease("rerun"), [])[0] == {digest_id}
    store.close()


def test_a_sent_digest_is_never_claimed_again(database_url: str) -> None:
    store = Store(database_url)
    [digest_id] = _planned(store, 1)
    store.commit_deliveries([Claim(digest_id, 0)], Lease("a"), [DeliveryEvent(digest_id, DeliveryState.SENT, "r0@example.org")])
    assert store.commit_deliveries([Claim(digest_id, 1)], Lease("b"), [])[0] == set()
    assert _status(store)[digest_id][0] == "sent"
    store.close()


def test_a_change_without_a_claim_leaves_a_digest_another_run_holds(database_url: str) -> None:
    """A run whose budget stopped defers what it did not attempt, but not a digest another
    run claimed since: that run's `sent` must not be overwritten."""
    store = Store(database_url)
    [digest_id] = _planned(store, 1)
    store.commit_deliveries([Claim(digest_id, 0)], Lease("sender", 60), [])
    store.record_deliveries([DeliveryEvent(digest_id, DeliveryState.DEFERRED, "r0@example.org", None, "not attempted", seen_attempts=0)])
    assert _status(store)[digest_id][:2] == ("sending", 1)
    store.close()


def test_a_digest_another_run_planned_first_is_left_to_it(database_url: str) -> None:
    store = Store(database_url)
    [first] = _planned(store, 1)
    again = store.plan_digests([("r0@example.org", DAY, "<m0@x>", ()), ("new@example.org", DAY, "<n@x>", ())])
    assert again[0] is None and again[1] is not None and again[1] != first
    store.close()


def test_the_send_path_finds_its_rows_by_key_never_by_scanning_the_ledger(tmp_path: Path) -> None:
    """Every statement of a group commit (claims, then `sent`, `deferred`, `failed` events) finds
    its digests through an index: a scan of the ledger per statement made a day of 100,000
    digests quadratic (SQLite's query plan of each statement, as run)."""
    store = Store(f"sqlite:///{tmp_path / 'plans.db'}")
    ids = _planned(store, 40)
    statements: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, _context: object, many: bool) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "SELECT", "DELETE")):
            statements.append((statement, parameters[0] if many else parameters))  # type: ignore[index]

    event.listen(store.engine, "before_cursor_execute", record)
    claimed, _ = store.commit_deliveries([Claim(i, 0) for i in ids], Lease("a"), [])
    assert claimed == set(ids)
    later = datetime(2026, 4, 15, 9, 0, tzinfo=UTC)
    store.commit_deliveries([], Lease("a"), [
        DeliveryEvent(ids[0], DeliveryState.SENT, "r0@example.org"),
        DeliveryEvent(ids[1], DeliveryState.DEFERRED, "r1@example.org", None, "451 later", next_attempt_at=later),
        DeliveryEvent(ids[2], DeliveryState.FAILED, "r2@example.org", 550, "550 no such user", bounce=True),
    ])
    event.remove(store.engine, "before_cursor_execute", record)
    assert any("UPDATE digests" in statement for statement, _ in statements)
    with sqlite3.connect(tmp_path / "plans.db") as db:
        for statement, parameters in statements:
            plan = [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]  # type: ignore[arg-type]
            assert not any(step.startswith("SCAN digests") for step in plan), (statement, plan)
    store.close()
