"""The event feed: a cursor over every state change, with long-poll."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from registry_api.deps import PrincipalDep
from registry_api.event_schemas import EventOut, EventPage
from registry_api.events import MAX_PAGE, MAX_WAIT_S, EventsService
from registry_api.routes.common import PROBLEMS

router = APIRouter(prefix="/v1/events", tags=["events"])


# Event ids are 64-bit database integers: a larger cursor is a bad request, not a crash.
MAX_CURSOR = 2**63 - 1


@router.get("", responses=PROBLEMS(400, 401, 403))
async def list_events(
    request: Request,
    who: PrincipalDep,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_CURSOR, description="Cursor: the last page's `next_cursor` (0: from the start)."),
    ] = 0,
    timeout: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait when nothing is new (long-poll).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EventPage:
    """Events after ``after``, oldest first (scope ``read``; a key restricted to some personas
    sees only theirs). Answers at once when there are events; otherwise waits up to
    ``timeout`` seconds for one and answers within about 0.1 s of it (or empty at the timeout).
    Always continue from ``next_cursor``."""
    events: EventsService = request.app.state.service.events
    page = await events.wait(who, after, timeout, limit)
    return EventPage(events=[EventOut.of(e) for e in page.events], next_cursor=page.next_cursor)
