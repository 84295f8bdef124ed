"""The committed OpenAPI snapshot matches the app (regenerate with `make openapi`)."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from registry_support import Registry

from persona_core.pack import PERSONA_ID_PATTERN
from registry_api.errors import PROBLEM_JSON
from registry_api.openapi import SNAPSHOT, current_schema, render
from registry_api.service import VERSION_SPEC_PATTERN

PACK_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "persona_pack.schema.json"


def test_openapi_snapshot_matches_the_app() -> None:
    """Fails, with a diff, when a route, body or response changed without a new snapshot."""
    expected = SNAPSHOT.read_text()
    actual = render(current_schema())
    diff = "".join(
        difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "snapshot", "app", n=2)
    )
    assert actual == expected, f"schemas/openapi.json is stale; run `make openapi`:\n{diff[:4000]}"


def test_openapi_documents_auth_and_problem_responses() -> None:
    """Every route but health and signed blobs requires a key; refusals are problem+json."""
    schema = json.loads(SNAPSHOT.read_text())
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    open_routes = {
        path for path, ops in schema["paths"].items() for op in ops.values() if op.get("security") == []
    }
    assert open_routes == {"/healthz", "/readyz", "/v1/blobs/{digest}"}
    pack = schema["paths"]["/v1/personas/{persona_id}/versions/{version}/pack"]["get"]
    assert set(pack["responses"]) >= {"200", "304", "401", "403", "404"}
    assert "application/problem+json" in pack["responses"]["404"]["content"]


# A generator turns operation ids into method names: FastAPI's default ids end in the method
# (`get_pack_v1_personas_persona_id_versions_version_pack_get`).
READABLE_ID = re.compile(r"[a-z]+(?:_[a-z]+)*")
METHOD_SUFFIX = re.compile(r"_(?:get|head|post|put|patch|delete)$")


def _served_operations(registry: Registry) -> dict[tuple[str, str], dict[str, Any]]:
    schema = registry.http.get("/openapi.json").json()
    return {
        (method.upper(), path): op for path, item in schema["paths"].items() for method, op in item.items()
    }


def test_every_operation_documents_500_and_503_with_retry_after(registry: Registry) -> None:
    """Every operation of the served spec lists 500 as a problem document; every one that reads a
    store (all but /healthz: a key is checked in the database) lists 503 with Retry-After."""
    operations = _served_operations(registry)
    assert len(operations) >= 30
    for (method, path), op in operations.items():
        responses = op["responses"]
        assert PROBLEM_JSON in responses.get("500", {}).get("content", {}), f"{method} {path}: no 500"
        if (method, path) == ("GET", "/healthz"):
            assert "503" not in responses
            continue
        unavailable = responses.get("503", {})
        assert PROBLEM_JSON in unavailable.get("content", {}), f"{method} {path}: no 503"
        assert unavailable["headers"]["Retry-After"]["required"] is True, f"{method} {path}"


def test_operation_ids_are_readable_and_unique(registry: Registry) -> None:
    ids = [op["operationId"] for op in _served_operations(registry).values()]
    assert len(ids) == len(set(ids))
    unreadable = [i for i in ids if not READABLE_ID.fullmatch(i) or METHOD_SUFFIX.search(i) or "v1" in i]
    assert unreadable == []
    assert {"get_pack", "list_versions", "resolve_asset", "get_asset_bytes", "create_version"} <= set(ids)


def test_headers_conditional_requests_and_path_patterns_are_declared(registry: Registry) -> None:
    """ETag, Location and If-None-Match are in the contract; path parameters carry the patterns
    the code checks; the pack is typed by the pack's own schema; no response mixes JSON with
    another (a generated client parses one: errors are problem+json only)."""
    operations = _served_operations(registry)
    pack = operations["GET", "/v1/personas/{persona_id}/versions/{version}/pack"]
    assert {p["name"] for p in pack["parameters"] if p["in"] == "header"} == {"If-None-Match"}
    for status in ("200", "304"):
        assert pack["responses"][status]["headers"]["ETag"]["required"] is True
    ref = pack["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    components = registry.http.get("/openapi.json").json()["components"]["schemas"]
    pack_schema = json.loads(PACK_SCHEMA.read_text())
    assert set(components[ref.rsplit("/", 1)[1]]["properties"]) == set(pack_schema["properties"])
    upload = operations["POST", "/v1/personas/{persona_id}/versions"]
    assert upload["responses"]["202"]["headers"]["Location"]["required"] is True
    created = operations["POST", "/v1/personas"]
    assert created["responses"]["201"]["headers"]["Location"]["required"] is True
    patterns = {"persona_id": PERSONA_ID_PATTERN, "version": VERSION_SPEC_PATTERN}
    for (method, path), op in operations.items():
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"] in patterns:
                assert param["schema"].get("pattern") == patterns[param["name"]], f"{method} {path}"
        for status, response in op["responses"].items():
            types = set(response.get("content", {}))
            # Several types only as alternatives of one binary blob (a signed URL's image/png, ...).
            one_kind = len(types) <= 1 or not any(t.endswith("json") or t.startswith("text/") for t in types)
            assert one_kind, f"{method} {path} {status}: {sorted(types)}"


def test_a_path_persona_id_that_breaks_its_pattern_is_invalid_name(registry: Registry) -> None:
    """What the pattern says is what the routes do: 422 invalid_name before any store is read,
    the hot pack route included; a key is still checked first."""
    read = registry.headers("read")
    for url in ("/v1/personas/Alice", "/v1/personas/Alice/versions", "/v1/personas/Alice/versions/1/pack"):
        r = registry.http.get(url, headers=read)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_name"), url
        assert registry.http.get(url).status_code == 401
