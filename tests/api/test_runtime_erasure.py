"""A renderer's PackCache against a live registry (uvicorn on loopback) when a persona or a
version is erased: the registry's 410 makes the cache drop the pack from memory and disk and
raise the typed error; the erasure feed purges pinned packs the cache would serve unasked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_support import PUBLISHED, Registry, make_registry

from persona_core.client import RegistryClient, RegistryPackSource
from persona_core.errors import PersonaErasedError, VersionErasedError
from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, follow_erasures
from persona_core.testing import make_pack
from registry_api.server import BackgroundServer, reserve_socket

REASON = "the person asked to be forgotten"


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


def _files(cache: PackCache, persona_id: str) -> list[str]:
    folder = cache.cache_dir / persona_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pack_cache_drops_an_erased_persona_on_410(
    live: tuple[Registry, BackgroundServer], tmp_path: Path
) -> None:
    """Erased over HTTP DELETE: the registry answers the pack with 410 persona_erased; the
    cache's next load raises PersonaErasedError with the erasure time, and the pack is gone from
    its folder and its memory (a pinned load asks the registry again and is refused too)."""
    reg, server = live
    with _client(live, "read") as reader, _client(live, "admin") as admin:
        cache = PackCache(tmp_path / "renderer", RegistryPackSource(reader), latest_ttl_s=0)
        assert cache.load(PUBLISHED).content_hash == reg.pack.content_hash
        assert cache.load(PUBLISHED, 1).version == 1
        assert _files(cache, PUBLISHED) == ["v1.pcpk"]

        done = admin.erase_persona(PUBLISHED, reason=REASON)
        assert done.state == "erased"

        gone = httpx.get(f"{server.base_url}/v1/personas/{PUBLISHED}/versions/latest/pack",
                         headers=reg.headers("read"))
        assert gone.status_code == 410
        assert gone.json()["code"] == "persona_erased"

        with pytest.raises(PersonaErasedError) as caught:
            cache.load(PUBLISHED)
        assert caught.value.erased_at is not None
        assert _files(cache, PUBLISHED) == []
        with pytest.raises(PersonaErasedError):
            cache.load(PUBLISHED, 1)
        assert _files(cache, PUBLISHED) == []


def test_erasure_feed_purges_pinned_packs_the_cache_would_serve_unasked(
    live: tuple[Registry, BackgroundServer], tmp_path: Path
) -> None:
    """A pinned version in memory is served without asking the registry; following the erasure
    feed (GET /v1/erasures) purges it, a version erasure only that version. The returned `since`
    makes the next poll list nothing new."""
    reg, _ = live
    reg.meta.create_version(PUBLISHED, {"files": []})  # v3 (v2 stays pending)
    publish_pack(reg.meta, reg.blobs, make_pack(reg.blobs, PUBLISHED, 3, n_anchors=4, seed=3))
    with _client(live, "read") as reader, _client(live, "admin") as admin:
        cache = PackCache(tmp_path / "renderer", RegistryPackSource(reader), latest_ttl_s=0)
        for version in (1, 3):
            cache.load(PUBLISHED, version)
        assert _files(cache, PUBLISHED) == ["v1.pcpk", "v3.pcpk"]

        admin.erase_persona(PUBLISHED, 3, reason=REASON)
        assert cache.load(PUBLISHED, 3).version == 3  # from memory: the cache has not asked
        since = follow_erasures(cache, reader)
        assert since is not None
        assert _files(cache, PUBLISHED) == ["v1.pcpk"]
        with pytest.raises(VersionErasedError):
            cache.load(PUBLISHED, 3)
        assert cache.load(PUBLISHED).version == 1  # latest is the version left
        assert cache.load(PUBLISHED, 1).version == 1

        admin.erase_persona(PUBLISHED, reason=REASON)
        assert follow_erasures(cache, reader, since) >= since
        assert _files(cache, PUBLISHED) == []
        with pytest.raises(PersonaErasedError):
            cache.load(PUBLISHED, 1)
