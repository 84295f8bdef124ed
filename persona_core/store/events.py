"""The event outbox: every version state change and alias move writes one event in the same
transaction as the change (so an event exists exactly when its change committed), and
consumers read them by cursor (the event id). Event data names personas and versions, never
their content: no file names, hashes of inputs or embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from persona_core.store import tables as t
from persona_core.store.engine import Database, aware, utc_now

__all__ = ["Event", "EventLog", "emit"]

_ev = t.events


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    type: str  # version.published | version.blocked | version.failed | version.retracted | alias.moved ...
    persona_id: str
    version: int | None
    data: dict[str, Any]


def emit(conn: sa.Connection, type_: str, persona_id: str, version: int | None, data: dict[str, Any]) -> None:
    """Write one event inside the caller's transaction."""
    conn.execute(
        sa.insert(_ev).values(at=utc_now(), type=type_, persona_id=persona_id, version=version, data=data)
    )


class EventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def after(self, cursor: int = 0, limit: int = 100, persona_id: str | None = None) -> list[Event]:
        """Events with an id above ``cursor``, oldest first."""
        query = sa.select(_ev).where(_ev.c.id > cursor).order_by(_ev.c.id).limit(limit)
        if persona_id is not None:
            query = query.where(_ev.c.persona_id == persona_id)
        with self._db.tx(write=False) as conn:
            return [_event(row) for row in conn.execute(query)]

    def last_id(self) -> int:
        with self._db.tx(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_ev.c.id), 0))).scalar_one())


def _event(row: Any) -> Event:
    return Event(row.id, aware(row.at) or row.at, row.type, row.persona_id, row.version, dict(row.data))
