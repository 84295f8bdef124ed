"""GET /v1/personas/{id}/diff: the same diff through the route and the Python client, and the
pack route's errors for a side that is not published, unknown, malformed or erased."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from registry_support import PUBLISHED, Registry

from persona_core.client import PackDiff, RegistryClient
from persona_core.errors import PackNotPublishedError


def diff(reg: Registry, a: str, b: str, kind: str | None = "read"):
    return reg.http.get(f"/v1/personas/{PUBLISHED}/diff", params={"from": a, "to": b},
                        headers=reg.headers(kind))


def test_a_version_against_latest_is_the_same_pack(registry: Registry) -> None:
    answer = diff(registry, "1", "latest")
    assert answer.status_code == 200, answer.text
    body = PackDiff.model_validate(answer.json())
    assert (body.from_version, body.to_version, body.same_content) == (1, 1, True)
    assert body.centroid_cosine == pytest.approx(1.0)
    assert all(not (m.added or m.removed or any(k.changes for k in m.kept)) for m in body.anchors)
    assert body.thresholds == body.models == body.inputs_added == []


@pytest.mark.parametrize(
    ("a", "b", "kind", "status", "code"),
    [
        ("1", "2", "read", 404, "pack_not_published"),  # v2 is pending
        ("1", "9", "read", 404, "version_not_found"),
        ("1", "v2", "read", 400, "invalid_input"),
        ("1", "1", None, 401, "unauthenticated"),
        ("1", "1", "other", 403, "persona_forbidden"),
    ],
)
def test_errors_are_the_pack_routes(registry: Registry, a: str, b: str, kind: str | None, status: int,
                                    code: str) -> None:
    answer = diff(registry, a, b, kind)
    assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_an_erased_side_is_gone(registry: Registry) -> None:
    erased = registry.http.request("DELETE", f"/v1/personas/{PUBLISHED}/versions/1",
                                   json={"reason": "test"}, headers=registry.headers("admin"))
    assert erased.status_code == 200, erased.text
    answer = diff(registry, "1", "1")
    assert (answer.status_code, answer.json()["code"]) == (410, "version_erased")


def test_the_client_returns_a_typed_diff(registry: Registry) -> None:
    http: TestClient = registry.http
    with RegistryClient("http://testserver", registry.keys["read"], transport=http._transport) as client:
        body = client.diff(PUBLISHED, 1, "latest")
        assert isinstance(body, PackDiff)
        assert body.same_content
        with pytest.raises(PackNotPublishedError):
            client.diff(PUBLISHED, 1, 2)
