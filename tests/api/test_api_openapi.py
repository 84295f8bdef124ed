"""The committed OpenAPI snapshot matches the app (regenerate with `make openapi`)."""

from __future__ import annotations

import difflib
import json

from registry_api.openapi import SNAPSHOT, current_schema, render


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
