"""The erasure feed: how renderer fleets learn which packs to purge."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.routes.common import PROBLEMS
from registry_api.schemas import ErasureFeed, ErasureSummary

router = APIRouter(prefix="/v1/erasures", tags=["erasures"])


@router.get("", responses=PROBLEMS(401, 403))
def list_erasures(
    who: PrincipalDep,
    service: ServiceDep,
    since: Annotated[
        datetime | None, Query(description="RFC 3339 time: erasures that finished after it (default: all).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ErasureFeed:
    """Finished erasures, oldest first (scope ``read``; restricted keys see their own personas).

    A renderer fleet polls this and drops every cached pack of ``persona_id`` (or of the listed
    ``versions``). Poll again with ``since`` a minute before the newest ``erased_at`` you have
    seen: an erasure that ran at the same time as another can finish with an earlier time than
    one already listed, and purging twice is harmless. No reason and no actor: the reason is an
    administrator's free text about a person.
    """
    jobs, next_since = service.erasures(who, since, limit)
    items = [
        ErasureSummary(
            persona_id=job.persona_id,
            version=job.version,
            versions=list(job.versions),
            started_at=job.started_at,
            erased_at=job.finished_at or job.started_at,
        )
        for job in jobs
    ]
    return ErasureFeed(items=items, next_since=next_since)
