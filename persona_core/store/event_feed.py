"""Reading the event outbox as a feed: pages of events after a cursor, safe against ids that
commit out of order.

PostgreSQL hands out event ids when a transaction inserts, not when it commits, so id 7 can
become visible before id 6. A reader that moved its cursor past 6 would never see it. A page
therefore ends at the first missing id, unless the event after the hole is older than
``GAP_WAIT_S``: no transaction of ours stays open that long, so the hole is an id that will never
appear (a rolled-back change, or events an erasure removed) and the page goes on past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from persona_core.store import tables as t
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.events import Event

__all__ = ["GAP_WAIT_S", "FeedPage", "read_feed"]

GAP_WAIT_S = 10.0
_ev = t.events


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Events after a cursor that ``visible`` let through, and the cursor to ask with next
    (past every event read, shown or not)."""

    events: list[Event]
    next_cursor: int


def read_feed(
    db: Database, cursor: int, limit: int = 100, visible: Callable[[Event], bool] | None = None
) -> FeedPage:
    """Up to ``limit`` events after ``cursor``, oldest first, ending at an id hole younger than
    ``GAP_WAIT_S`` (see the module doc)."""
    query = sa.select(_ev).where(_ev.c.id > cursor).order_by(_ev.c.id).limit(limit)
    with db.tx(write=False) as conn:
        rows = list(conn.execute(query))
    settled = utc_now() - timedelta(seconds=GAP_WAIT_S)
    shown: list[Event] = []
    expected = cursor + 1
    for row in rows:
        event = Event(row.id, aware(row.at) or row.at, row.type, row.persona_id, row.version, dict(row.data))
        if event.id != expected and event.at > settled:
            break
        cursor = expected = event.id
        expected += 1
        if visible is None or visible(event):
            shown.append(event)
    return FeedPage(shown, cursor)
