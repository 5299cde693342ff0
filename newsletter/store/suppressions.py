"""Suppressions: addresses no longer mailed after repeated permanent refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.store.base import StoreBase, as_utc
from newsletter.store.base import now as _now
from newsletter.store.schema import suppressions


@dataclass(frozen=True)
class Suppression:
    address: str
    failures: int
    last_code: int | None
    last_error: str | None
    suppressed_at: datetime | None


def count_bounce(db: Connection, address: str, code: int | None, error: str, threshold: int) -> bool:
    """Count one permanent refusal of `address`; True if it is (now) suppressed."""
    key = address.casefold()
    now = _now()
    row = db.execute(select(suppressions).where(suppressions.c.address == key)).first()
    failures = (row.failures if row is not None else 0) + 1
    suppressed_at = row.suppressed_at if row is not None else None
    if suppressed_at is None and failures >= threshold:
        suppressed_at = now
    values = {
        "failures": failures, "last_code": code, "last_error": error,
        "suppressed_at": suppressed_at, "updated_at": now,
    }
    if row is None:
        db.execute(suppressions.insert().values(address=key, **values))
    else:
        db.execute(update(suppressions).where(suppressions.c.address == key).values(**values))
    return suppressed_at is not None


class SuppressionStore(StoreBase):
    def suppressions(self, *, include_pending: bool = False) -> list[Suppression]:
        """Suppressed addresses (and, with `include_pending`, those with refusals so far)."""
        query = select(suppressions).order_by(suppressions.c.address)
        if not include_pending:
            query = query.where(suppressions.c.suppressed_at.is_not(None))
        with self._tx() as db:
            return [
                Suppression(
                    row.address, row.failures, row.last_code, row.last_error,
                    as_utc(row.suppressed_at) if row.suppressed_at else None,
                )
                for row in db.execute(query)
            ]

    def suppressed_addresses(self) -> set[str]:
        """Case-folded addresses that must not be mailed."""
        with self._tx() as db:
            query = select(suppressions.c.address).where(suppressions.c.suppressed_at.is_not(None))
            return set(db.execute(query).scalars())

    def clear_suppression(self, address: str) -> bool:
        """Forget an address's refusals, so it is mailed again. False if it was not listed."""
        with self._tx() as db:
            result = db.execute(suppressions.delete().where(suppressions.c.address == address.casefold()))
            return bool(result.rowcount)
