"""Aliases and retraction over HTTP and the Python client: set / move / delete / resolve with
the optimistic precondition, the promote scope, history, rollback, and a retracted version
served by number only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_support import PUBLISHED, Registry, make_registry

from persona_core.client import RegistryClient
from persona_core.errors import AliasConflictError, AliasInUseError, AliasNotFoundError
from persona_core.publish import publish_pack
from persona_core.store.base import VersionStatus
from persona_core.testing import make_pack
from registry_api.key_store import ApiKeyStore
from registry_api.server import BackgroundServer, reserve_socket

P = f"/v1/personas/{PUBLISHED}"
V = f"{P}/versions"


def _publish(reg: Registry, version: int) -> None:
    """Publish ``version`` of alice (v2 is left pending by the fixture; later ones are new)."""
    while len(reg.meta.list_versions(PUBLISHED)) < version:
        reg.meta.create_version(PUBLISHED, {"files": []})
    publish_pack(reg.meta, reg.blobs, make_pack(reg.blobs, PUBLISHED, version, n_anchors=6, seed=version))


def _promoter(reg: Registry) -> dict[str, str]:
    _record, key = ApiKeyStore.of(reg.meta).create_api_key("data-ops", ["promote"])
    return {"X-API-Key": key}


def test_aliases_set_move_delete_and_resolve_over_http(registry: Registry) -> None:
    """A promote key creates `live`, moves it with If-Match, loses a stale race with 412/409,
    rolls it back and deletes it; packs and versions resolve it like `latest`, and the
    history says who, when, from, to and why. A build key cannot move it."""
    reg = registry
    _publish(reg, 3)
    ops = _promoter(reg)
    create = {"version": 1, "reason": "first review"}
    built = reg.http.put(
        f"{P}/aliases/live", json=create, headers={**reg.headers("build"), "If-None-Match": "*"}
    )
    assert (built.status_code, built.json()["code"]) == (403, "insufficient_scope")
    bare = reg.http.put(f"{P}/aliases/live", json=create, headers=ops)
    assert (bare.status_code, bare.json()["code"]) == (428, "precondition_required")

    made = reg.http.put(f"{P}/aliases/live", json=create, headers={**ops, "If-None-Match": "*"})
    assert made.status_code == 200, made.text
    assert (made.json()["from_version"], made.json()["to_version"], made.headers["etag"]) == (None, 1, '"v1"')
    got = reg.http.get(f"{P}/aliases/live", headers=reg.headers("read"))
    assert (got.json()["version"], got.headers["etag"]) == (1, '"v1"')
    assert got.json()["updated_by"].startswith("key:")

    v1 = reg.http.get(f"{V}/1/pack", headers=reg.headers("read"))
    live = reg.http.get(f"{V}/live/pack", headers=reg.headers("read"))
    assert live.content == v1.content
    assert live.headers["content-location"] == f"{V}/1/pack"
    assert live.headers["etag"] == f'"{reg.pack.content_hash}.v1"'
    assert live.headers["cache-control"] == "no-cache"
    cond = reg.http.get(
        f"{V}/live/pack", headers={**reg.headers("read"), "If-None-Match": live.headers["etag"]}
    )
    assert cond.status_code == 304
    assert reg.http.get(f"{V}/live", headers=reg.headers("read")).json()["version"] == 1

    moved = reg.http.put(
        f"{P}/aliases/live", json={"version": 3, "reason": "v3 reviewed"}, headers={**ops, "If-Match": '"v1"'}
    )
    assert moved.status_code == 200, moved.text
    # The worker that moved it answers with the new target at once.
    assert reg.http.get(f"{V}/live/pack", headers=reg.headers("read")).headers["x-persona-version"] == "3"
    stale = reg.http.put(
        f"{P}/aliases/live", json={"version": 1, "reason": "x"}, headers={**ops, "If-Match": '"v1"'}
    )
    assert (stale.status_code, stale.json()["code"]) == (412, "alias_conflict")
    assert "points at v3" in stale.json()["detail"]
    body_stale = reg.http.put(
        f"{P}/aliases/live", json={"version": 1, "reason": "x", "expected_version": 1}, headers=ops
    )
    assert (body_stale.status_code, body_stale.json()["code"]) == (409, "alias_conflict")
    pending = reg.http.put(
        f"{P}/aliases/live", json={"version": 2, "reason": "x", "expected_version": 3}, headers=ops
    )
    assert (pending.status_code, pending.json()["code"]) == (409, "invalid_status_transition")
    reserved = reg.http.put(
        f"{P}/aliases/latest", json={"version": 1, "reason": "x", "expected_version": None}, headers=ops
    )
    assert (reserved.status_code, reserved.json()["code"]) == (400, "invalid_name")

    back = reg.http.post(f"{P}/aliases/live/rollback", json={"reason": "v3 looks wrong"}, headers=ops)
    assert (back.json()["from_version"], back.json()["to_version"]) == (3, 1)
    history = reg.http.get(f"{P}/aliases/live/history", headers=reg.headers("read")).json()["items"]
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in history] == [
        (3, 1, "v3 looks wrong"),
        (1, 3, "v3 reviewed"),
        (None, 1, "first review"),
    ]
    assert all(m["actor"].startswith("key:") and "data-ops" in m["actor"] and m["at"] for m in history)
    listed = reg.http.get(f"{P}/aliases", headers=reg.headers("read")).json()["items"]
    assert [(a["name"], a["version"]) for a in listed] == [("live", 1)]

    gone = reg.http.request(
        "DELETE", f"{P}/aliases/live", json={"reason": "retire"}, headers={**ops, "If-Match": '"v1"'}
    )
    assert gone.status_code == 200, gone.text
    missing = reg.http.get(f"{P}/aliases/live", headers=reg.headers("read"))
    assert (missing.status_code, missing.json()["code"]) == (404, "alias_not_found")
    unknown = reg.http.get(f"{V}/live/pack", headers=reg.headers("read"))
    assert (unknown.status_code, unknown.json()["code"]) == (400, "invalid_input")


def test_retraction_over_http(registry: Registry) -> None:
    """A retracted version: latest skips it, its number still serves the same bytes with a
    Persona-Retracted header and the record shows when and why; retracting an alias's target
    or moving an alias onto a retracted version is refused, naming the alias."""
    reg = registry
    _publish(reg, 3)
    ops = _promoter(reg)
    before = reg.http.get(f"{V}/3/pack", headers=reg.headers("read"))
    assert reg.http.get(f"{V}/latest/pack", headers=reg.headers("read")).headers["x-persona-version"] == "3"
    reg.http.put(
        f"{P}/aliases/live", json={"version": 3, "reason": "r", "expected_version": None}, headers=ops
    )
    refused = reg.http.post(f"{V}/3/retract", json={"reason": "wrong hair"}, headers=ops)
    assert (refused.status_code, refused.json()["code"]) == (409, "alias_in_use")
    assert "live" in refused.json()["detail"]
    build = reg.http.post(f"{V}/3/retract", json={"reason": "wrong hair"}, headers=reg.headers("build"))
    assert build.status_code == 403

    reg.http.put(f"{P}/aliases/live", json={"version": 1, "reason": "r"}, headers={**ops, "If-Match": '"v3"'})
    done = reg.http.post(f"{V}/3/retract", json={"reason": 'wrong "hair"'}, headers=ops)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["retraction_reason"]) == ("retracted", 'wrong "hair"')
    assert done.json()["retracted_at"]
    assert done.json()["pack_url"] == f"{V}/3/pack"

    after = reg.http.get(f"{V}/3/pack", headers=reg.headers("read"))
    assert (after.status_code, after.content) == (200, before.content)
    assert (
        after.headers["persona-retracted"] == f"{done.json()['retracted_at'].replace('Z', '+00:00')}; "
        'reason="wrong \\"hair\\""'
    )
    assert "persona-retracted" not in reg.http.get(f"{V}/1/pack", headers=reg.headers("read")).headers
    latest = reg.http.get(f"{V}/latest/pack", headers=reg.headers("read"))
    assert latest.headers["x-persona-version"] == "1"
    assert reg.http.get(f"{V}/latest", headers=reg.headers("read")).json()["version"] == 1
    onto = reg.http.put(
        f"{P}/aliases/live", json={"version": 3, "reason": "r"}, headers={**ops, "If-Match": '"v1"'}
    )
    assert (onto.status_code, onto.json()["code"]) == (409, "invalid_status_transition")
    assert "retracted" in onto.json()["detail"]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[Registry, BackgroundServer]]:
    sock = reserve_socket()
    reg = make_registry(tmp_path / "registry", public_base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    for version in range(3, 23):
        _publish(reg, version)
    server = BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs, sock=sock, with_grpc=False)
    with server:
        yield reg, server
    reg.meta.close()


def test_twenty_way_alias_race_over_http(live_server: tuple[Registry, BackgroundServer]) -> None:
    """20 clients move `live` from v1 at once, each to its own version, over real HTTP: one wins,
    every other is told (412 alias_conflict), and alias and history agree."""
    reg, server = live_server
    ops = _promoter(reg)
    reg.meta.aliases.move(PUBLISHED, "live", 1, expected=-1, actor="test", reason="start")
    barrier = threading.Barrier(20)
    results: dict[int, int] = {}

    def mover(target: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=ops, timeout=30) as http:
            barrier.wait()
            r = http.put(
                f"{P}/aliases/live",
                json={"version": target, "reason": f"to {target}"},
                headers={"If-Match": '"v1"'},
            )
            results[target] = r.status_code
            if r.status_code != 200:
                assert r.json()["code"] == "alias_conflict"

    threads = [threading.Thread(target=mover, args=(n,)) for n in range(3, 23)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winners = [n for n, status in results.items() if status == 200]
    assert len(winners) == 1, results
    assert sorted(results.values()) == [200] + [412] * 19
    assert reg.meta.aliases.get(PUBLISHED, "live").version == winners[0]
    moves = reg.meta.aliases.history(PUBLISHED, "live")
    assert [(m.from_version, m.to_version) for m in moves] == [(1, winners[0]), (None, 1)]


def test_client_aliases_and_retraction(live_server: tuple[Registry, BackgroundServer]) -> None:
    """The Python client: set, get, list, move, history, rollback, delete, retract; typed errors."""
    reg, server = live_server
    _record, key = ApiKeyStore.of(reg.meta).create_api_key("ops", ["promote"])
    with RegistryClient(server.base_url, key) as client:
        assert client.set_alias(PUBLISHED, "live", 3, expected=None, reason="go").to_version == 3
        with pytest.raises(AliasConflictError):
            client.set_alias(PUBLISHED, "live", 4, expected=None, reason="again")
        client.set_alias(PUBLISHED, "staging", "live", expected=None, reason="same as live")
        assert client.get_alias(PUBLISHED, "staging").version == 3
        client.set_alias(PUBLISHED, "live", 4, expected=3, reason="v4")
        assert client.get_pack(PUBLISHED, "live").version == 4
        assert [a.name for a in client.list_aliases(PUBLISHED)] == ["live", "staging"]
        assert client.rollback_alias(PUBLISHED, "live", reason="back").to_version == 3
        assert [m.to_version for m in client.alias_history(PUBLISHED, "live")] == [3, 4, 3]
        with pytest.raises(AliasInUseError):
            client.retract_version(PUBLISHED, 3, reason="bad")
        client.delete_alias(PUBLISHED, "staging", expected=3, reason="done")
        with pytest.raises(AliasNotFoundError):
            client.get_alias(PUBLISHED, "staging")
        record = client.retract_version(PUBLISHED, 22, reason="bad batch")
        assert (record.status, record.retraction_reason) == (VersionStatus.RETRACTED, "bad batch")
        pack = client.get_pack(PUBLISHED, 22)
        assert pack.version == 22
        assert 'reason="bad batch"' in (pack.retracted or "")
        assert client.get_pack(PUBLISHED).version == 21
