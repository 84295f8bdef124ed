"""The event feed over HTTP (long-poll) and gRPC (a stream), and webhook subscriptions over
HTTP: who may do what, secrets shown once, and SSRF-refused URLs."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import grpc
import pytest
from registry_support import OTHER, PUBLISHED, Registry

from persona_core.publish import publish_pack
from persona_core.testing import make_pack
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server


def _publish(registry: Registry, persona_id: str) -> int:
    version = registry.meta.create_version(persona_id, {"files": []}).version
    publish_pack(registry.meta, registry.blobs, make_pack(registry.blobs, persona_id, version, n_anchors=6))
    return version


def _feed(registry: Registry, kind: str, **params: Any) -> dict[str, Any]:
    response = registry.http.get("/v1/events", params=params, headers=registry.headers(kind))
    assert response.status_code == 200, response.text
    return response.json()


def test_feed_lists_events_after_a_cursor_and_restricted_keys_see_their_personas_only(
    registry: Registry,
) -> None:
    page = _feed(registry, "read")
    assert [(e["type"], e["persona_id"], e["version"]) for e in page["events"]] == [
        ("version.published", PUBLISHED, 1)
    ]
    _publish(registry, OTHER)
    newer = _feed(registry, "read", after=page["next_cursor"])
    assert [(e["type"], e["persona_id"]) for e in newer["events"]] == [("version.published", OTHER)]
    assert _feed(registry, "read", after=newer["next_cursor"])["events"] == []
    # The bob-only key never sees alice's event, but its cursor moves past it.
    restricted = _feed(registry, "other")
    assert [e["persona_id"] for e in restricted["events"]] == [OTHER]
    assert restricted["next_cursor"] == newer["next_cursor"]
    assert registry.http.get("/v1/events").status_code == 401
    bad = registry.http.get("/v1/events", params={"timeout": 61}, headers=registry.headers("read"))
    assert bad.status_code == 422


def test_long_poll_waits_and_wakes_within_half_a_second_of_a_change(registry: Registry) -> None:
    cursor = _feed(registry, "read")["next_cursor"]
    started = time.monotonic()
    assert _feed(registry, "read", after=cursor, timeout=0.3)["events"] == []
    assert 0.3 <= time.monotonic() - started < 2

    answer: dict[str, Any] = {}

    def wait() -> None:
        answer["page"] = _feed(registry, "read", after=cursor, timeout=20)
        answer["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    changed = time.monotonic()
    _publish(registry, OTHER)
    waiter.join(20)
    assert [e["persona_id"] for e in answer["page"]["events"]] == [OTHER]
    assert answer["at"] - changed < 0.5


def test_grpc_watch_events_streams_past_and_new_events(registry: Registry) -> None:
    server, port = start_grpc_server(registry.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.PersonaRegistryStub(channel)
    try:
        reader = (("x-api-key", registry.keys["read"]),)
        stream = stub.WatchEvents(pb.WatchEventsRequest(after=0), metadata=reader)
        first = next(stream)
        assert (first.type, first.persona_id, first.version) == ("version.published", PUBLISHED, 1)
        _publish(registry, OTHER)
        second = next(stream)
        assert (second.persona_id, second.id) == (OTHER, first.id + 1)
        stream.cancel()
        # Restricted keys get their personas only; no key is UNAUTHENTICATED.
        bob_only = (("x-api-key", registry.keys["other"]),)
        only_bob = stub.WatchEvents(pb.WatchEventsRequest(after=0), metadata=bob_only)
        assert next(only_bob).persona_id == OTHER
        only_bob.cancel()
        with pytest.raises(grpc.RpcError) as err:
            next(stub.WatchEvents(pb.WatchEventsRequest(after=0)))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
        server.stop(grace=None)


def _create(registry: Registry, kind: str, url: str, **body: Any) -> Any:
    return registry.http.post("/v1/webhooks", json={"url": url, **body}, headers=registry.headers(kind))


def test_webhooks_are_admin_managed_and_their_secret_is_shown_once(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])
    url = "https://hooks.example.com/persona"
    assert _create(registry, "read", url).status_code == 403
    assert _create(registry, "build", url).status_code == 403
    created = _create(registry, "admin", url, event_types=["version.published"], description="ops")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["enabled"] is True
    listed = registry.http.get("/v1/webhooks", headers=registry.headers("admin")).json()["items"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert body["secret"] not in registry.http.get("/v1/webhooks", headers=registry.headers("admin")).text
    one = registry.http.get(f"/v1/webhooks/{body['id']}", headers=registry.headers("admin"))
    assert "secret" not in one.json()
    # A restricted admin key must name its personas, and then sees only such subscriptions.
    assert _create(registry, "other", url).json()["code"] == "persona_forbidden"
    assert _create(registry, "other", url, persona_ids=[PUBLISHED]).status_code == 403
    mine = _create(registry, "other", url, persona_ids=[OTHER])
    assert mine.status_code == 201
    seen = registry.http.get("/v1/webhooks", headers=registry.headers("other")).json()["items"]
    assert [w["id"] for w in seen] == [mine.json()["id"]]
    hidden = registry.http.get(f"/v1/webhooks/{body['id']}", headers=registry.headers("other"))
    assert hidden.status_code == 404
    given = _create(registry, "admin", url, secret="whsec_" + "QUJD" * 8)
    assert given.json()["secret"] == "whsec_" + "QUJD" * 8
    assert _create(registry, "admin", url, secret="plain").json()["code"] == "invalid_input"
    assert _create(registry, "admin", url, event_types=["nope"]).status_code == 400
    deleted = registry.http.delete(f"/v1/webhooks/{body['id']}", headers=registry.headers("admin"))
    assert deleted.status_code == 204
    gone = registry.http.delete(f"/v1/webhooks/{body['id']}", headers=registry.headers("admin"))
    assert gone.json()["code"] == "webhook_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9000/hook",
        "http://localhost./hook",
        "http://[::1]/hook",
        "http://192.168.1.10/hook",
        "ftp://hooks.example.com/x",
        "http://user:pw@hooks.example.com/x",
    ],
)
def test_webhook_urls_to_non_public_addresses_are_refused_by_default(registry: Registry, url: str) -> None:
    response = _create(registry, "admin", url)
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_url_refused"


def test_a_dns_name_that_resolves_to_a_private_address_is_refused(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"rebind.example.com": "10.0.0.7", "meta.example.com": "169.254.169.254",
               "mixed.example.com": "127.0.0.1"}

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        extra = [(2, 1, 6, "", ("93.184.216.34", port))] if host == "mixed.example.com" else []
        return [*extra, (2, 1, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    for host, address in answers.items():
        response = _create(registry, "admin", f"https://{host}/hook")
        assert response.json()["code"] == "webhook_url_refused", host
        assert address in response.json()["detail"]
