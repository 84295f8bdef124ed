"""What every request meets before its route reads the body: the API key, and a size cap on
JSON bodies; and HEAD, answered wherever GET is.

FastAPI parses and validates a body before it resolves the route's dependencies, so without
this a malformed body sent without a key answered 400/422 instead of the documented 401, and
a 100 MB JSON body was read whole before any limit applied. Uploads (multipart) keep their
own, larger limits in the versions route.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persona_core.errors import PersonaCoreError, RequestTooLargeError
from registry_api.auth import key_from_headers
from registry_api.errors import PROBLEM_JSON, TooManyAuthFailuresError, problem, public_detail, status_for

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Signed blob URLs carry their own HMAC instead of a key.
_OPEN_PREFIXES = ("/v1/blobs/",)
# Room for the persona id and the JSON around the metadata.
_JSON_SLACK_BYTES = 16 * 1024


class RequestGuard:
    """Authenticate body-carrying ``/v1`` requests first; cap non-multipart bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope.get("method") not in _BODY_METHODS
            or not path.startswith("/v1/")
            or path.startswith(_OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        service: Any = scope["app"].state.service
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", ())}
        try:
            key = key_from_headers(headers.get)
            client = scope["client"][0] if scope.get("client") else ""
            if service.keys.cached(key, client) is None:
                await run_in_threadpool(service.keys.verify, key, client)
            content_type = headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                receive = _capped(receive, headers, service.settings.max_metadata_bytes + _JSON_SLACK_BYTES)
        except PersonaCoreError as exc:
            await _problem(exc, path)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _capped(receive: Receive, headers: dict[str, str], cap: int) -> Receive:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise RequestTooLargeError(f"request body of {declared} bytes > limit {cap}")
    return capped_receive(receive, cap)


def capped_receive(receive: Receive, cap: int) -> Receive:
    """``receive`` that raises RequestTooLargeError once the body passes ``cap`` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise RequestTooLargeError(f"request body exceeds {cap} bytes")
        return message

    return wrapped


def _problem(exc: PersonaCoreError, path: str) -> JSONResponse:
    status = status_for(exc)
    doc = problem(status, exc.code, public_detail(exc), instance=path)
    response = JSONResponse(doc, status_code=status, media_type=PROBLEM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="persona-registry"'
    if isinstance(exc, TooManyAuthFailuresError):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


class HeadAsGet:
    """``HEAD`` wherever ``GET`` is (RFC 9110; load balancers probe ``HEAD /healthz``): the GET
    route answers with its status and headers, and its body is dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
