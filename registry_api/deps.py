"""FastAPI dependencies: the service and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from registry_api.auth import Principal, key_from_headers
from registry_api.service import RegistryService


async def get_service(request: Request) -> RegistryService:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread per request.
    service: RegistryService = request.app.state.service
    return service


ServiceDep = Annotated[RegistryService, Depends(get_service)]


async def authenticate(request: Request) -> Principal:
    """The caller's principal; a cached key costs no I/O, an uncached one a database read."""
    service: RegistryService = request.app.state.service
    key = key_from_headers(request.headers.get)
    client = request.client.host if request.client else ""
    principal = service.keys.cached(key, client)
    if principal is not None:
        return principal
    return await run_in_threadpool(service.keys.verify, key, client)


PrincipalDep = Annotated[Principal, Depends(authenticate)]
