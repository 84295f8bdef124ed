"""PackCache forgets erased packs: an erasure answer from the source purges the pack (every
version, for a persona) from memory and disk before the typed error reaches the caller;
purge and forget_erased do it on request; a load a purge overtakes keeps nothing."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persona_core.erasure import erase
from persona_core.errors import PersonaErasedError, VersionErasedError, VersionNotFoundError
from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, PackSource, StorePackSource
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

PID, OTHER = "ada", "bea"
_NOW = datetime.now(UTC)


class Stores:
    def __init__(self, root: Path) -> None:
        self.blobs = LocalBlobStore(root / "blobs", b"test-secret", "http://127.0.0.1:8000")
        self.meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")

    def publish(self, persona_id: str, seed: int = 0) -> int:
        self.meta.ensure_persona(persona_id, {})
        version = self.meta.create_version(persona_id, {}).version
        pack = make_pack(self.blobs, persona_id, version, n_anchors=4, seed=seed)
        publish_pack(self.meta, self.blobs, pack)
        return version

    def erase(self, persona_id: str, version: int | None = None) -> None:
        erase(self.meta, self.blobs, persona_id, version, actor="test", reason="asked by the person")


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    s = Stores(tmp_path)
    s.publish(PID, seed=1)
    s.publish(PID, seed=2)
    s.publish(OTHER, seed=3)
    yield s
    s.meta.close()


def _cache(stores: Stores, tmp_path: Path, source: PackSource | None = None) -> PackCache:
    return PackCache(tmp_path / "cache", source or StorePackSource(stores.meta, stores.blobs), latest_ttl_s=0)


def _files(cache: PackCache, persona_id: str) -> list[Path]:
    folder = cache.cache_dir / persona_id
    return sorted(folder.iterdir()) if folder.exists() else []


def test_persona_erasure_answer_purges_every_version_and_raises(stores: Stores, tmp_path: Path) -> None:
    """After the persona is erased, the next load that asks the source raises PersonaErasedError
    and no version of it is left in memory or on disk; another persona's packs stay."""
    cache = _cache(stores, tmp_path)
    assert cache.load(PID).version == 2
    assert cache.load(PID, 1).version == 1
    cache.load(OTHER)
    assert cache.cached_versions(PID) == [1, 2]

    stores.erase(PID)
    with pytest.raises(PersonaErasedError) as caught:
        cache.load(PID)
    assert caught.value.erased_at is not None
    assert cache.cached_versions(PID) == []
    assert _files(cache, PID) == []
    # v1 was in memory a moment ago: now it is asked for again, and refused.
    with pytest.raises(PersonaErasedError):
        cache.load(PID, 1)
    assert _files(cache, PID) == []
    assert cache.load(OTHER).persona_id == OTHER
    assert cache.cached_versions(OTHER) == [1]


def test_version_erasure_answer_purges_that_version_only(stores: Stores, tmp_path: Path) -> None:
    """A version erased at the source: a cache that must ask for it gets VersionErasedError and
    keeps nothing of it; the persona's other version keeps its file and is what `latest` now
    serves."""
    warm = _cache(stores, tmp_path)
    warm.load(PID, 1)
    warm.load(PID, 2)
    stores.erase(PID, 2)

    cache = _cache(stores, tmp_path)  # a renderer restarted: only the disk cache
    (cache.cache_dir / PID / "v2.pcpk").unlink()  # not on disk: the source is asked
    with pytest.raises(VersionErasedError):
        cache.load(PID, 2)
    assert cache.cached_versions(PID) == [1]
    assert cache.load(PID).version == 1


def test_erased_latest_pack_read_from_disk_is_purged_when_the_source_says_so(
    stores: Stores, tmp_path: Path
) -> None:
    """`latest` always asks the source: an erased persona's newest pack on disk is purged."""
    _cache(stores, tmp_path).load(PID)
    stores.erase(PID)
    cache = _cache(stores, tmp_path)
    with pytest.raises(PersonaErasedError):
        cache.load(PID)
    assert _files(cache, PID) == []


def test_purge_and_forget_erased_remove_files_and_memory(stores: Stores, tmp_path: Path) -> None:
    """purge(persona) drops every version, purge(persona, [v]) one; forget_erased takes the
    erasure feed's items; stale temp files of the persona go with them."""
    cache = _cache(stores, tmp_path)
    for v in (1, 2):
        cache.load(PID, v)
    cache.load(OTHER, 1)
    assert cache.purge(PID, [2]) == [2]
    assert cache.cached_versions(PID) == [1]

    stale = cache.cache_dir / PID / ".tmp-crashed"
    stale.write_bytes(b"half a pack")
    os.utime(stale, (0, 0))

    @dataclass(frozen=True)
    class Notice:
        persona_id: str
        version: int | None

    assert cache.forget_erased([Notice(PID, None)]) == 1
    assert _files(cache, PID) == []
    assert cache.cached_versions(OTHER) == [1]
    # Nothing of the persona is left in memory: an offline cache must now say it has nothing.
    offline = PackCache(cache.cache_dir)
    with pytest.raises(VersionNotFoundError):
        offline.load(PID, 1)
    stores.erase(PID)
    with pytest.raises(PersonaErasedError):
        cache.load(PID, 1)


class ErasedDuringFetch:
    """Serves the first pack document, but only after the test has purged (and erased) the
    persona; every later call is answered as erased, as the registry would."""

    def __init__(self, inner: PackSource) -> None:
        self.inner = inner
        self.calls = 0
        self.fetching = threading.Event()
        self.go_on = threading.Event()

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise PersonaErasedError("erased", started_at=_NOW, erased_at=_NOW)
        data = self.inner.pack_document(persona_id, version)
        self.fetching.set()
        assert self.go_on.wait(timeout=30)
        return data

    def blob(self, ref: str) -> bytes:
        return self.inner.blob(ref)


def test_a_load_overtaken_by_a_purge_keeps_nothing(stores: Stores, tmp_path: Path) -> None:
    """A fetch that began before the persona was purged does not put the pack back: the load
    starts over, meets the erasure, and leaves no file."""
    source = ErasedDuringFetch(StorePackSource(stores.meta, stores.blobs))
    cache = _cache(stores, tmp_path, source)
    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(cache.load, PID, 1)
        assert source.fetching.wait(timeout=10)
        cache.purge(PID)
        source.go_on.set()
        with pytest.raises(PersonaErasedError):
            loading.result(timeout=30)
    assert source.calls == 2
    assert _files(cache, PID) == []
