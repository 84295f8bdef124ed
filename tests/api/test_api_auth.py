"""Auth matrix: every route x {no key, read, build, admin, key for another persona} answers
with the status the API documents (docs/registry.md); health and signed blobs need no key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from registry_support import OTHER, PUBLISHED, Registry, fixture_bytes, make_registry

from persona_core.errors import InvalidInputError
from persona_core.signing import sign_blob_url
from persona_core.store import tables
from registry_api.key_store import ApiKeyStore

KINDS = (None, "read", "build", "admin", "other")
_counter = iter(range(10_000))


def _anchor_ref(reg: Registry) -> str:
    return next(iter(reg.pack.anchor_sets.values()))[0].image_ref


def _signed_path(reg: Registry) -> str:
    return sign_blob_url("", reg.settings.signing_secret.get_secret_value().encode(), _anchor_ref(reg), 60)


def _new_persona(_: Registry) -> dict[str, Any]:
    return {"json": {"persona_id": f"new-{next(_counter)}", "metadata": {}}}


def _upload(_: Registry) -> dict[str, Any]:
    return {"files": [("files", ("front.jpg", fixture_bytes("faces", "obama1.jpg"), "image/jpeg"))]}


def _erasure(_: Registry) -> dict[str, Any]:
    return {"json": {"reason": "auth matrix"}}


def _resolve(reg: Registry) -> dict[str, Any]:
    return {"json": {"ref": _anchor_ref(reg), "mode": "url", "ttl_s": 60}}


def _asset_bytes(reg: Registry) -> dict[str, Any]:
    return {"json": {"ref": _anchor_ref(reg)}}


P = f"/v1/personas/{PUBLISHED}"
Route = tuple[str, str | Callable[[Registry], str], Callable[[Registry], dict[str, Any]] | None]
# route -> statuses for (no key, read, build, admin, other-persona key)
MATRIX: list[tuple[Route, tuple[int, int, int, int, int]]] = [
    (("GET", "/healthz", None), (200, 200, 200, 200, 200)),
    (("GET", "/readyz", None), (200, 200, 200, 200, 200)),
    (("POST", "/v1/personas", _new_persona), (401, 403, 403, 201, 403)),
    (("GET", "/v1/personas", None), (401, 200, 200, 200, 200)),
    (("GET", P, None), (401, 200, 200, 200, 403)),
    (("POST", f"{P}/versions", _upload), (401, 403, 202, 202, 403)),
    (("GET", f"{P}/versions", None), (401, 200, 200, 200, 403)),
    (("GET", f"{P}/versions/1", None), (401, 200, 200, 200, 403)),
    (("GET", f"{P}/versions/1/pack", None), (401, 200, 200, 200, 403)),
    (("GET", f"{P}/versions/latest/pack", None), (401, 200, 200, 200, 403)),
    (("POST", "/v1/assets/resolve", _resolve), (401, 200, 200, 200, 403)),
    (("POST", "/v1/assets/bytes", _asset_bytes), (401, 200, 200, 200, 403)),
    (("GET", _signed_path, None), (200, 200, 200, 200, 200)),
    (("DELETE", f"{P}/versions/2", _erasure), (401, 403, 403, 200, 403)),
    (("DELETE", P, _erasure), (401, 403, 403, 200, 403)),
    (("GET", "/v1/erasures", None), (401, 200, 200, 200, 200)),
]


def _id(route: Route) -> str:
    method, path, _ = route
    return f"{method} {path if isinstance(path, str) else path.__name__}"


@pytest.mark.parametrize(("route", "expected"), MATRIX, ids=[_id(r) for r, _ in MATRIX])
def test_auth_matrix(registry: Registry, route: Route, expected: tuple[int, ...]) -> None:
    """Each route answers each kind of caller with its documented status and, on refusal, a
    problem document whose code says why (unauthenticated / insufficient_scope / persona_forbidden)."""
    method, path, body = route
    url = path if isinstance(path, str) else path(registry)
    for kind, want in zip(KINDS, expected, strict=True):
        extra = body(registry) if body else {}
        response = registry.http.request(method, url, headers=registry.headers(kind), **extra)
        assert response.status_code == want, (kind, response.text)
        if want in (401, 403):
            assert response.headers["content-type"] == "application/problem+json"
            code = response.json()["code"]
            if want == 401:
                assert code == "unauthenticated"
                assert response.headers["www-authenticate"].startswith("Bearer")
            else:
                assert code == ("persona_forbidden" if kind == "other" else "insufficient_scope")


def test_restricted_key_lists_only_its_personas(registry: Registry) -> None:
    """A key restricted to one persona sees only that persona in the list."""
    everyone = registry.http.get("/v1/personas", headers=registry.headers("read")).json()
    mine = registry.http.get("/v1/personas", headers=registry.headers("other")).json()
    assert {p["persona_id"] for p in everyone["items"]} == {PUBLISHED, OTHER}
    assert [p["persona_id"] for p in mine["items"]] == [OTHER]


def test_restricted_key_may_create_its_own_persona_id(registry: Registry) -> None:
    """A restricted admin key may create only a persona whose id it is allowed."""
    _, key = ApiKeyStore.of(registry.meta).create_api_key("carol-admin", ["admin"], persona_ids=["carol"])
    response = registry.http.post("/v1/personas", json={"persona_id": "carol"}, headers={"X-API-Key": key})
    assert response.status_code == 201


def test_bearer_header_is_accepted_and_unknown_key_is_401(registry: Registry) -> None:
    """`Authorization: Bearer` works like X-API-Key; a made-up key is 401 unauthenticated."""
    ok = registry.http.get(P, headers={"Authorization": f"Bearer {registry.keys['read']}"})
    assert ok.status_code == 200
    bad = registry.http.get(P, headers={"X-API-Key": "pk_nope_nope"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "unauthenticated"


def test_revoked_key_stops_working_once_the_cache_forgets_it(registry: Registry) -> None:
    """Revocation takes effect after the key cache TTL (forget() = the TTL elapsing)."""
    record, key = ApiKeyStore.of(registry.meta).create_api_key("temp", ["read"])
    assert registry.http.get(P, headers={"X-API-Key": key}).status_code == 200
    ApiKeyStore.of(registry.meta).revoke_api_key(record.key_id)
    # Still cached: this is the documented revocation delay.
    assert registry.http.get(P, headers={"X-API-Key": key}).status_code == 200
    registry.service.keys.forget()
    assert registry.http.get(P, headers={"X-API-Key": key}).status_code == 401


def test_zero_ttl_makes_revocation_immediate(tmp_path: Path) -> None:
    """With api_key_cache_ttl_s=0 every request re-checks the database."""
    reg = make_registry(tmp_path, api_key_cache_ttl_s=0)
    record, key = ApiKeyStore.of(reg.meta).create_api_key("temp", ["read"])
    assert reg.http.get(P, headers={"X-API-Key": key}).status_code == 200
    ApiKeyStore.of(reg.meta).revoke_api_key(record.key_id)
    assert reg.http.get(P, headers={"X-API-Key": key}).status_code == 401


def test_store_refuses_a_key_restricted_to_no_persona(registry: Registry) -> None:
    """persona_ids=[] is a mistake (a key for nothing), never a synonym for every persona."""
    with pytest.raises(InvalidInputError):
        ApiKeyStore.of(registry.meta).create_api_key("nobody", ["read"], persona_ids=[])
    assert [k.name for k in ApiKeyStore.of(registry.meta).list_api_keys()].count("nobody") == 0


def test_key_stored_with_an_empty_persona_list_sees_no_persona(registry: Registry) -> None:
    """A row written before the store refused [] (persona_ids = []) must not read every persona."""
    record, key = ApiKeyStore.of(registry.meta).create_api_key("legacy", ["admin"], persona_ids=[OTHER])
    with registry.meta.engine.begin() as conn:
        conn.execute(
            sa.update(tables.api_keys).where(tables.api_keys.c.key_id == record.key_id).values(persona_ids=[])
        )
    headers = {"X-API-Key": key}
    for path in (P, f"{P}/versions/1/pack", f"{P}/versions/latest/pack", f"/v1/personas/{OTHER}"):
        response = registry.http.get(path, headers=headers)
        assert (response.status_code, response.json()["code"]) == (403, "persona_forbidden"), path
    assert registry.http.get("/v1/personas", headers=headers).json()["items"] == []
