"""The OpenAPI document the registry serves, shaped for generated clients.

FastAPI derives paths, parameters and bodies from the routes; this adds what it cannot: the
security schemes, the bodies the hot routes parse themselves, problem documents for every
error a route can give (500 everywhere; 503 with ``Retry-After`` wherever a store is read; 429
with ``Retry-After`` wherever a key is checked) and operation ids that are the route
functions' names (``get_pack``, ``list_versions``), which generators turn into method names.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from registry_api.auth import API_KEY_HEADER
from registry_api.errors import PROBLEM_JSON
from registry_api.schemas import AssetBytesRequest, ResolveRequest

__all__ = ["STORELESS_OPERATIONS", "build_openapi", "operation_id"]

# Operations that read no store (every other one checks a key in the database, or reads it).
STORELESS_OPERATIONS = frozenset({"healthz"})
# Bodies the hot routes parse themselves (they reference these from openapi_extra).
_SELF_PARSED_BODIES = (ResolveRequest, AssetBytesRequest)
_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _retry_after(why: str) -> dict[str, Any]:
    return {"description": why, "required": True, "schema": {"type": "integer", "minimum": 0}}


_INTERNAL_ERROR = {
    "description": "Internal error (`internal_error`; `integrity_error` for stored bytes that no longer "
    "match their hash): the cause is in the server log, under the response's X-Request-ID.",
    "content": _PROBLEM,
}
_UNAVAILABLE = {
    "description": "Unavailable for now: `store_unavailable` (the database or the blob store did not "
    "answer in time; uploads: `uploads_busy`). Retry after `Retry-After` seconds.",
    "content": _PROBLEM,
    "headers": {"Retry-After": _retry_after("Seconds to wait before trying again.")},
}
_THROTTLED = {
    "description": "`too_many_auth_failures`: this client presented too many wrong API keys; every key "
    "is refused unchecked until `Retry-After` seconds have passed.",
    "content": _PROBLEM,
    "headers": {"Retry-After": _retry_after("Seconds until keys from this client are checked again.")},
}


def operation_id(route: APIRoute) -> str:
    """The route function's name: readable, stable, and unique across the app (FastAPI warns on
    a duplicate)."""
    return route.name


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once and kept on ``app.openapi_schema``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
        "Bearer": {"type": "http", "scheme": "bearer"},
    }
    schema["security"] = [{"ApiKey": []}, {"Bearer": []}]
    for model in _SELF_PARSED_BODIES:
        components.setdefault("schemas", {})[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    _problem_422s(schema)
    _error_responses(schema)
    app.openapi_schema = schema
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in schema.get("paths", {}).values() for op in item.values() if isinstance(op, dict)]


def _problem_422s(schema: dict[str, Any]) -> None:
    """FastAPI documents its request-validation 422 as ``application/json``; ours are problems."""
    for operation in _operations(schema):
        response = operation.get("responses", {}).get("422")
        if response is not None:
            response["content"] = _PROBLEM
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _error_responses(schema: dict[str, Any]) -> None:
    """500 on every operation, 503 where a store is read, 429 where a key is checked; a 503 or
    429 a route documents itself gets the ``Retry-After`` header too. Every error answers
    ``application/problem+json`` only (FastAPI also lists the route's own media type)."""
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        for response in responses.values():
            content = response.get("content", {})
            if PROBLEM_JSON in content:
                response["content"] = {PROBLEM_JSON: content[PROBLEM_JSON]}
        responses.setdefault("500", _INTERNAL_ERROR)
        if operation.get("operationId") not in STORELESS_OPERATIONS:
            responses["503"] = {**responses.get("503", {}), **_UNAVAILABLE}
        if operation.get("security") != []:  # the document's default: a key is checked
            responses["429"] = {**responses.get("429", {}), **_THROTTLED}
