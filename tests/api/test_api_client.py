"""persona_core.client against a live registry (uvicorn on loopback): typed calls, typed
errors, and RegistryPackSource feeding PackCache (with its offline fallback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_support import OTHER, PUBLISHED, Registry, fixture_bytes, make_registry

from persona_core.api_models import VersionOut, VersionStatus
from persona_core.client import (
    PackNotPublishedError,
    RegistryClient,
    RegistryError,
    RegistryPackSource,
    UploadItem,
)
from persona_core.errors import (
    AlreadyExistsError,
    IntegrityError,
    PersonaNotFoundError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.refs import sha256_hex
from persona_core.runtime import PackCache
from registry_api.server import BackgroundServer, reserve_socket


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Registry, BackgroundServer]]:
    sock = reserve_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    reg = make_registry(tmp_path / "registry", public_base_url=url)
    server = BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs, sock=sock, with_grpc=False)
    with server:
        yield reg, server
    reg.meta.close()


def _client(live: tuple[Registry, BackgroundServer], kind: str) -> RegistryClient:
    reg, server = live
    return RegistryClient(server.base_url, reg.keys[kind])


def test_client_round_trip(live: tuple[Registry, BackgroundServer]) -> None:
    """Create, upload, list, status, pack with ETag revalidation, and signed-URL bytes."""
    reg, _ = live
    with _client(live, "admin") as client:
        assert client.health()
        assert client.ready()
        assert client.create_persona("dora", {"team": "x"}).persona_id == "dora"
        assert [p.persona_id for p in client.iter_personas(page_size=1)] == ["alice", "bob", "dora"]
        version = client.create_version(
            "dora",
            [
                UploadItem("front.jpg", fixture_bytes("faces", "obama1.jpg"), "image/jpeg"),
                ("v.wav", fixture_bytes("voices", "a1.wav")),
            ],
            manifest={"files": {"front.jpg": {"camera_mode": "A_SELFIE"}}},
        )
        assert (version.version, version.status) == (1, "pending")
        assert client.get_version("dora", 1).status == "pending"
        assert [v.version for v in client.list_versions(PUBLISHED)] == [1, 2]

        pack = client.get_pack(PUBLISHED, 1)
        assert pack.body == reg.pack.canonical_bytes()
        assert pack.document()["content_hash"] == reg.pack.content_hash
        latest = client.get_pack(PUBLISHED, "latest")
        assert latest.etag == f'"{reg.pack.content_hash}.v1"'
        assert not client.get_pack(PUBLISHED, "latest", if_none_match=pack.etag).not_modified
        again = client.get_pack(PUBLISHED, "latest", if_none_match=latest.etag)
        assert again.not_modified
        assert again.version == 1
        assert again.body == b""

        ref = reg.pack.identity.centroid_ref
        signed = client.resolve_url(ref, ttl_s=30)
        assert f"sha256:{sha256_hex(client.fetch_signed(signed.url))}" == ref.split("#")[0]
        assert sha256_hex(client.resolve_bytes(ref)) == ref.split("#")[0].removeprefix("sha256:")


def test_client_raises_typed_errors(live: tuple[Registry, BackgroundServer]) -> None:
    with _client(live, "read") as reader, _client(live, "admin") as admin:
        with pytest.raises(PersonaNotFoundError):
            reader.get_persona("nobody")
        with pytest.raises(AlreadyExistsError):
            admin.create_persona(PUBLISHED)
        with pytest.raises(PackNotPublishedError) as pending:
            reader.get_pack(PUBLISHED, 2)
        assert isinstance(pending.value, VersionNotFoundError)
        with pytest.raises(RegistryError) as denied:
            reader.create_persona("eve")
        assert (denied.value.status, denied.value.code) == (403, "insufficient_scope")
    _, server = live
    with RegistryClient(server.base_url) as anonymous, pytest.raises(RegistryError) as anon:
        anonymous.list_personas()
    assert (anon.value.status, anon.value.code) == (401, "unauthenticated")
    with RegistryClient("http://127.0.0.1:9") as nowhere, pytest.raises(StoreUnavailableError):
        nowhere.list_personas()


def test_client_parses_typed_bodies_and_ignores_fields_a_newer_registry_adds() -> None:
    """A version comes back as a VersionOut; a field the client does not know yet is dropped,
    not an error, so an older client keeps working against a newer registry."""
    body = {
        "persona_id": "dora", "version": 3, "status": "pending", "reasons": [], "checks": [],
        "inputs": {}, "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z",
        "published_at": None, "content_hash": None, "status_url": "/v1/personas/dora/versions/3",
        "pack_url": None, "field_from_the_future": {"any": "thing"},
    }
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=body))
    with RegistryClient("http://registry.test", transport=transport) as client:
        version = client.get_version("dora", 3)
    assert isinstance(version, VersionOut)
    assert (version.version, version.status, version.created_at.year) == (3, VersionStatus.PENDING, 2025)
    assert not hasattr(version, "field_from_the_future")


def test_tampered_blob_is_reported_not_served(live: tuple[Registry, BackgroundServer]) -> None:
    """A blob altered on disk is refused by the store (500 integrity_error), never returned."""
    reg, _ = live
    ref = reg.pack.anchor_sets[next(iter(reg.pack.anchor_sets))][0].image_ref
    path = reg.blobs.blob_path(ref)
    path.write_bytes(path.read_bytes() + b"tampered")
    with _client(live, "read") as client, pytest.raises(IntegrityError):
        client.resolve_bytes(ref)


def test_pack_cache_loads_through_the_registry_and_survives_it_going_away(
    live: tuple[Registry, BackgroundServer], tmp_path: Path
) -> None:
    """PackCache over RegistryPackSource verifies and caches the pack; with the registry down
    a fresh cache serves `latest` from disk."""
    _reg, server = live
    client = _client(live, "read")
    cache = PackCache(tmp_path / "cache", RegistryPackSource(client))
    pack = cache.load(PUBLISHED, 1)
    assert pack.version == 1
    assert cache.load(PUBLISHED).version == 1
    with pytest.raises(VersionNotFoundError):
        cache.load(OTHER)
    server.stop()
    offline = PackCache(tmp_path / "cache", RegistryPackSource(client))
    assert offline.load(PUBLISHED).version == 1
    client.close()
