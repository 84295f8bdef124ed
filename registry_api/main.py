"""The registry's FastAPI app: ``create_app(settings)``.

Run it with ``uvicorn --factory registry_api.main:app_from_env`` or ``registry_api.server.run``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from persona_core.errors import PersonaCoreError
from persona_core.log_context import REQUEST_ID_HEADER, current_request_id
from persona_core.logging import configure_logging
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from registry_api import metrics
from registry_api.config import ApiSettings
from registry_api.errors import (
    PROBLEM_JSON,
    TooManyAuthFailuresError,
    problem,
    problem_fields,
    public_detail,
    status_for,
)
from registry_api.guards import HeadAsGet, RequestGuard
from registry_api.openapi_spec import build_openapi, operation_id
from registry_api.request_context import RequestContextMiddleware
from registry_api.routes import aliases, assets, diffs, erasures, health, personas, ui, versions
from registry_api.routes.events import router as events_router
from registry_api.routes.webhooks import router as webhooks_router
from registry_api.service import RegistryService

log = logging.getLogger("registry_api")
API_VERSION = "1.0.0"
# Seconds a client should wait before retrying a 503 (a store that is down or hung).
RETRY_AFTER_S = "1"


def create_app(
    settings: ApiSettings | None = None,
    *,
    metadata: MetadataStore | None = None,
    blobs: BlobStore | None = None,
) -> FastAPI:
    """The app over the stores named by ``settings`` (or the ones passed in, e.g. by tests).

    Stores it opens itself are closed on app shutdown (or by :func:`close_app_stores`);
    stores passed in stay open: they belong to the caller.
    """
    settings = settings or ApiSettings()
    owned: list[MetadataStore | BlobStore] = []
    if metadata is None:
        metadata = open_metadata_store(settings)
        owned.append(metadata)
    if blobs is None:
        blobs = open_blob_store(settings)
        owned.append(blobs)
    docs = settings.api_docs  # PERSONA_API_DOCS: off unless asked for
    app = FastAPI(
        lifespan=_lifespan,
        title="persona-core registry",
        version=API_VERSION,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        generate_unique_id_function=operation_id,
        description="Personas, their versions and immutable PersonaPacks. Every route but health "
        "needs an API key (`X-API-Key` or `Authorization: Bearer`); errors are "
        "`application/problem+json` with a stable `code`.",
    )
    app.state.service = RegistryService(settings, metadata, blobs)
    app.state.owned_stores = owned
    # versions first: its GET-pack route is the hot one, and routes are matched in order.
    routers = (
        versions.router,
        aliases.router,
        personas.router,
        diffs.router,
        assets.router,
        erasures.router,
        health.router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(events_router)
    app.include_router(webhooks_router)
    ui.register(app)
    app.add_middleware(RequestGuard)
    metrics.register(app)
    app.add_middleware(HeadAsGet)  # outermost: the routes and the metrics see a GET
    app.add_middleware(RequestContextMiddleware)  # outermost: every line of a request has its id
    app.add_exception_handler(PersonaCoreError, _domain_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def close_app_stores(app: FastAPI) -> None:
    """Close the stores ``create_app`` opened itself; idempotent."""
    owned, app.state.owned_stores = app.state.owned_stores, []
    for store in owned:
        store.close()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Yields no state: a lifespan state dict would be copied into every request's scope.
    yield
    close_app_stores(app)
    # A serve worker going away: its live gauges leave the shared metrics folder.
    metrics.mark_process_dead(os.getpid())


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and ``serve``'s worker processes: settings from the
    environment (``PERSONA_*``), logging through persona-core's handler (JSON with
    ``PERSONA_LOG_JSON=1``, the settings' secrets redacted)."""
    settings = ApiSettings()
    configure_logging(settings=settings)
    app = create_app(settings)
    log.info("registry worker %d ready", os.getpid())
    return app


def _problem_response(request: Request, status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    doc = problem(status, code, detail, instance=request.url.path, **extra)
    response = JSONResponse(doc, status_code=status, media_type=PROBLEM_JSON)
    # The last-resort handler answers outside RequestContextMiddleware: name the request here.
    request_id = current_request_id()
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    # The one place domain errors become HTTP: status from errors.status_for, code from the class.
    if not isinstance(exc, PersonaCoreError):  # pragma: no cover - registered for this type only
        raise exc
    status = status_for(exc)
    if status >= 500:
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc)
    elif status == 403:  # wrong keys (401, 429) are logged where they are checked (auth.py)
        log.info("refused %s %s: %s", request.method, request.url.path, exc.code, extra={"code": exc.code})
    response = _problem_response(request, status, exc.code, public_detail(exc), **problem_fields(exc))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="persona-registry"'
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_S
    if isinstance(exc, TooManyAuthFailuresError):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Anything not typed is still a problem document, never a plain-text 500; the log keeps why.
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return _problem_response(request, 500, "internal_error", "internal error")


async def _client_disconnected(request: Request, _exc: Exception) -> Response:
    # A client that went away mid-request (a dropped upload): nothing to answer, nothing broke.
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    detail = f"{where}: {first.get('msg', 'invalid request')}"
    simple = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
    # An id that breaks its pattern is the same invalid_name gRPC and the CLI give for it.
    bad_id = any(e.get("loc", ())[-1:] == ("persona_id",) and e.get("type") in _ID_ERRORS for e in errors)
    code = "invalid_name" if bad_id else "invalid_request"
    return _problem_response(request, 422, code, detail, errors=simple)


_ID_ERRORS = frozenset({"string_pattern_mismatch", "string_too_long", "string_too_short"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = {404: "route_not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    detail = str(exc.detail) if isinstance(exc, StarletteHTTPException) else "error"
    response = _problem_response(request, status, code, detail)
    if status == 405:
        # RFC 9110 requires Allow; Starlette's names only the first route on the path.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    # Asked of the routes themselves (included routers keep theirs inside).
    routes = request.app.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    if "GET" in allowed and "HEAD" not in allowed:  # HeadAsGet answers it
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed
