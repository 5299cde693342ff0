"""Small named values the service keeps between runs: its heartbeat, each slot's last run."""

from __future__ import annotations

from sqlalchemy import select, update

from newsletter.store.base import StoreBase
from newsletter.store.base import now as _now
from newsletter.store.schema import service_state


class StateStore(StoreBase):
    def get_state(self, name: str) -> str | None:
        with self._tx() as db:
            return db.execute(select(service_state.c.value).where(service_state.c.name == name)).scalar()

    def set_state(self, name: str, value: str) -> None:
        with self._tx() as db:
            updated = db.execute(
                update(service_state).where(service_state.c.name == name).values(value=value, updated_at=_now())
            )
            if not updated.rowcount:
                db.execute(service_state.insert().values(name=name, value=value, updated_at=_now()))
