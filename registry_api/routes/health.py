"""Liveness and readiness; the only routes without an API key."""

from __future__ import annotations

from fastapi import APIRouter

from registry_api.deps import ServiceDep
from registry_api.routes.common import PROBLEMS

router = APIRouter(tags=["health"])


@router.get("/healthz", openapi_extra={"security": []})
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", openapi_extra={"security": []}, responses=PROBLEMS(503))
def readyz(service: ServiceDep) -> dict[str, str]:
    """The database and the blob store both answer; 503 ``store_unavailable`` otherwise."""
    service.ready()
    return {"status": "ready"}
