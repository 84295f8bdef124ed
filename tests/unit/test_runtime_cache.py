"""PackCache: fetch once, verify every hash, serve from memory, then disk, then the source."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from persona_core.embeddings import matrix_from_bytes
from persona_core.errors import (
    CacheDamagedError,
    IntegrityError,
    InvalidInputError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.pack import PersonaPack
from persona_core.publish import publish_pack
from persona_core.refs import parse_ref
from persona_core.runtime import CachedPack, PackCache, PackSource, StorePackSource, select_anchor
from persona_core.runtime._format import HEADER
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

PID = "ada"


class CountingSource:
    """A PackSource that counts what it is asked for (and can be switched off)."""

    def __init__(self, inner: PackSource) -> None:
        self.inner = inner
        self.documents = 0
        self.blobs = 0
        self.down = False

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        if self.down:
            raise StoreUnavailableError("registry is down")
        self.documents += 1
        return self.inner.pack_document(persona_id, version)

    def blob(self, ref: str) -> bytes:
        self.blobs += 1
        return self.inner.blob(ref)


class MirrorSource:
    """Reads a LocalBlobStore's files directly without re-hashing, like a naive mirror,
    so the cache's own verification is what catches bad bytes."""

    def __init__(self, blobs: LocalBlobStore, pack_refs: dict[tuple[str, int], str]) -> None:
        self.blobs = blobs
        self.pack_refs = pack_refs

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        key = (persona_id, version or max(v for p, v in self.pack_refs if p == persona_id))
        return self.blobs.blob_path(self.pack_refs[key]).read_bytes()

    def blob(self, ref: str) -> bytes:
        return self.blobs.blob_path(ref).read_bytes()


class Store:
    def __init__(self, root: Path) -> None:
        self.blobs = LocalBlobStore(root / "blobs", b"test-secret", "http://127.0.0.1:8000")
        self.meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")
        self.packs: dict[int, PersonaPack] = {}
        self.meta.create_persona(PID, {})

    def publish(self, n_anchors: int = 12) -> PersonaPack:
        version = self.meta.create_version(PID, {}).version
        pack = make_pack(self.blobs, PID, version, n_anchors=n_anchors, seed=version)
        publish_pack(self.meta, self.blobs, pack)
        self.packs[version] = pack
        return pack

    def pack_ref(self, version: int) -> str:
        return self.meta.get_published(PID, version).pack_ref


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    s.publish()
    return s


@pytest.fixture
def source(store: Store) -> CountingSource:
    return CountingSource(StorePackSource(store.meta, store.blobs))


def test_first_load_fetches_and_repeat_loads_come_from_memory(store: Store, source: CountingSource, tmp_path):
    """The first load fetches the pack and its embedding matrices once; repeats are the same object."""
    cache = PackCache(tmp_path / "cache", source)
    first = cache.load(PID, 1)
    assert (source.documents, source.blobs) == (1, len(first.matrix_refs))
    assert len(first.matrix_refs) == 4  # identity, centroid, style, speaker
    assert all(cache.load(PID, 1) is first for _ in range(3))
    assert (source.documents, source.blobs) == (1, 4)
    assert first.content_hash == store.packs[1].content_hash
    assert cache.path_for(PID, 1).is_file()


def test_new_cache_instance_loads_from_disk_without_the_source(
    store: Store, source: CountingSource, tmp_path
):
    """A second PackCache over the same directory serves the pack from disk, never asking the source."""
    PackCache(tmp_path / "cache", source).load(PID, 1)
    fetched = (source.documents, source.blobs)
    again = PackCache(tmp_path / "cache", source).load(PID, 1)
    assert (source.documents, source.blobs) == fetched
    assert again.pack == store.packs[1]
    offline = PackCache(tmp_path / "cache", None).load(PID, 1)
    assert offline.content_hash == store.packs[1].content_hash


def test_fresh_process_loads_disk_cache_with_no_source(store: Store, source: CountingSource, tmp_path):
    """A new Python process with no source at all loads the cached pack and selects from it."""
    cache_dir = tmp_path / "cache"
    expected = select_anchor(PackCache(cache_dir, source).load(PID, 1), "A_SELFIE", "happy")
    script = textwrap.dedent(
        f"""
        import json
        from persona_core.runtime import PackCache, select_anchor
        pack = PackCache({str(cache_dir)!r}, source=None).load({PID!r}, 1)
        choice = select_anchor(pack, "A_SELFIE", "happy")
        ident = pack.matrix(pack.pack.identity.centroid_ref)
        print(json.dumps([pack.content_hash, choice.anchor_id, ident.shape[1]]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == [store.packs[1].content_hash, expected.anchor_id, 128]


def test_cached_pack_is_immutable_and_exposes_verified_embeddings(
    store: Store, source: CountingSource, tmp_path
):
    """Embeddings come back read-only and equal to the published matrices; attributes cannot be set."""
    PackCache(tmp_path / "cache", source).load(PID, 1)
    pack = PackCache(tmp_path / "cache").load(PID, 1)  # from disk: matrices hashed on first touch
    anchor = store.packs[1].anchor_sets["A_SELFIE"][0]
    published = matrix_from_bytes(store.blobs.get(parse_ref(anchor.embedding_ref).blob))
    vec = pack.embedding(anchor.embedding_ref)
    np.testing.assert_array_equal(vec, published[parse_ref(anchor.embedding_ref).row])
    assert not vec.flags.writeable
    assert pack.matrix(anchor.embedding_ref) is pack.matrix(parse_ref(anchor.embedding_ref).blob)
    with pytest.raises(AttributeError):
        pack.index = None  # type: ignore[misc]
    with pytest.raises(InvalidInputError):
        pack.embedding(parse_ref(anchor.embedding_ref).blob + "#9999")
    assert pack.document()["persona_id"] == PID
    assert pack.document_bytes == store.blobs.get(store.pack_ref(1))


def _section(path: Path, name: str) -> int:
    """An offset in the middle of one section of a cache file."""
    _magic, index_off, index_len, doc_off, doc_len, _sha = HEADER.unpack_from(path.read_bytes())
    return {"header": 8, "document": doc_off + doc_len // 2, "index": index_off + index_len // 2}[name]


@pytest.mark.parametrize("section", ["header", "document", "index"])
def test_tampered_disk_cache_is_refused_at_load(store: Store, source: CountingSource, tmp_path, section):
    """A flipped byte in a cache file's header, pack document or selection index is refused at
    load: offline with CacheDamagedError (an IntegrityError); with a source, fetched again."""
    cache = PackCache(tmp_path / "cache", source)
    path = cache.load(PID, 1).path
    good = path.read_bytes()
    data = bytearray(good)
    data[_section(path, section)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CacheDamagedError):
        PackCache(tmp_path / "cache").load(PID, 1)
    fetched = source.documents
    assert PackCache(tmp_path / "cache", source).load(PID, 1).content_hash == store.packs[1].content_hash
    assert source.documents == fetched + 1
    assert path.read_bytes() == good


def test_tampered_matrix_in_disk_cache_is_refused_on_first_touch(
    store: Store, source: CountingSource, tmp_path
):
    """A flipped byte inside a cached embedding matrix raises IntegrityError when that matrix is read."""
    cache = PackCache(tmp_path / "cache", source)
    path = cache.load(PID, 1).path
    ref = store.packs[1].identity.centroid_ref
    blob_file = store.blobs.blob_path(ref).read_bytes()
    data = bytearray(path.read_bytes())
    at = data.index(blob_file) + len(blob_file) - 4  # inside the float data
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    pack = PackCache(tmp_path / "cache").load(PID, 1)
    assert select_anchor(pack, "A_SELFIE").anchor_id  # the index is intact and usable
    with pytest.raises(IntegrityError):
        pack.matrix(ref)


def test_cache_file_for_another_version_is_refused(store: Store, source: CountingSource, tmp_path):
    """A valid cache file renamed to another version's name raises IntegrityError instead of serving it."""
    store.publish()
    cache = PackCache(tmp_path / "cache", source)
    v1 = cache.load(PID, 1).path
    v2 = cache.path_for(PID, 2)
    v2.write_bytes(v1.read_bytes())
    with pytest.raises(IntegrityError):
        PackCache(tmp_path / "cache").load(PID, 2)


@pytest.mark.parametrize(
    ("what", "via_store"),
    [("matrix", True), ("matrix", False), ("document", True), ("document", False)],
)
def test_tampered_source_data_is_refused_at_fetch(store: Store, tmp_path, what, via_store):
    """An altered embedding blob or pack JSON in the source raises IntegrityError and caches nothing,
    whether the source re-hashes (the blob store) or not (a naive mirror: the cache's own checks)."""
    ref = store.packs[1].identity.face_embedding_refs[0] if what == "matrix" else store.pack_ref(1)
    blob_path = store.blobs.blob_path(ref)
    data = bytearray(blob_path.read_bytes())
    if what == "matrix":
        data[-1] ^= 0x01
    else:
        data[data.index(b'"overall":') + 12] ^= 0x01  # a digit of a quality score
    blob_path.write_bytes(bytes(data))
    src: PackSource = (
        StorePackSource(store.meta, store.blobs)
        if via_store
        else MirrorSource(store.blobs, {(PID, 1): store.pack_ref(1)})
    )
    cache = PackCache(tmp_path / "cache", src)
    with pytest.raises(IntegrityError):
        cache.load(PID, 1)
    assert not cache.path_for(PID, 1).exists()


def test_source_sending_the_wrong_pack_is_refused(store: Store, tmp_path):
    """A source answering v1 with v2's (valid) document raises IntegrityError."""
    store.publish()
    mirror = MirrorSource(store.blobs, {(PID, 1): store.pack_ref(2), (PID, 2): store.pack_ref(2)})
    with pytest.raises(IntegrityError):
        PackCache(tmp_path / "cache", mirror).load(PID, 1)


def test_latest_version_is_resolved_then_remembered_for_its_ttl(
    store: Store, source: CountingSource, tmp_path
):
    """version=None gives the newest published pack, re-resolved only after latest_ttl_s."""
    remembering = PackCache(tmp_path / "cache", source, latest_ttl_s=3600)
    assert remembering.load(PID).version == 1
    store.publish()
    assert remembering.load(PID).version == 1
    always = PackCache(tmp_path / "cache", source, latest_ttl_s=0)
    assert always.load(PID).version == 2
    docs, blobs = source.documents, source.blobs
    assert always.load(PID).version == 2  # re-resolved: one document, no blob re-fetch
    assert (source.documents, source.blobs) == (docs + 1, blobs)


def test_latest_falls_back_to_newest_cached_when_source_is_down(
    store: Store, source: CountingSource, tmp_path
):
    """With the source unreachable (or absent), version=None serves the newest version on disk."""
    store.publish()
    warm = PackCache(tmp_path / "cache", source)
    warm.load(PID, 1)
    warm.load(PID, 2)
    source.down = True
    assert PackCache(tmp_path / "cache", source).load(PID).version == 2
    assert PackCache(tmp_path / "cache").load(PID).version == 2
    assert PackCache(tmp_path / "cache").cached_versions(PID) == [1, 2]


def test_memory_bound_drops_oldest_and_reloads_it_from_disk(store: Store, source: CountingSource, tmp_path):
    """Past max_packs the oldest pack leaves memory and comes back from disk, not from the source."""
    store.publish()
    cache = PackCache(tmp_path / "cache", source, max_packs=1)
    first = cache.load(PID, 1)
    cache.load(PID, 2)
    fetched = source.documents
    again = cache.load(PID, 1)
    assert again is not first
    assert again.content_hash == first.content_hash
    assert source.documents == fetched


@pytest.mark.parametrize(
    ("persona_id", "version", "error"),
    [
        ("../etc", 1, InvalidInputError),
        ("Ada", 1, InvalidInputError),
        (PID, 0, InvalidInputError),
        (PID, "1", InvalidInputError),
        (PID, 7, VersionNotFoundError),
    ],
)
def test_bad_or_unknown_keys_raise_typed_errors(store: Store, source, tmp_path, persona_id, version, error):
    """Unsafe ids and bad versions raise InvalidInputError; unpublished ones VersionNotFoundError."""
    with pytest.raises(error):
        PackCache(tmp_path / "cache", source).load(persona_id, version)


def test_offline_cache_without_the_pack_raises_not_found(tmp_path):
    """An offline cache (no source) asked for a pack it does not hold raises VersionNotFoundError."""
    cache = PackCache(tmp_path / "cache")
    for version in (1, None):
        with pytest.raises(VersionNotFoundError):
            cache.load(PID, version)


def test_cached_pack_type_is_what_the_hooks_take(store: Store, source: CountingSource, tmp_path):
    """The loaded object is a CachedPack whose policies equal the published pack's."""
    pack = PackCache(tmp_path / "cache", source).load(PID, 1)
    assert isinstance(pack, CachedPack)
    assert pack.refresh_policy == store.packs[1].refresh_policy
    assert pack.behavior_policy == store.packs[1].behavior_policy


def test_cache_file_of_another_format_is_fetched_again(store: Store, source: CountingSource, tmp_path):
    """A cache file written by another format version is re-fetched (or refused offline), never misread."""
    cache = PackCache(tmp_path / "cache", source)
    path = cache.load(PID, 1).path
    data = bytearray(path.read_bytes())
    data[7] ^= 0xFF  # the format version byte of the magic
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        PackCache(tmp_path / "cache").load(PID, 1)
    fetched = source.documents
    assert PackCache(tmp_path / "cache", source).load(PID, 1).content_hash == store.packs[1].content_hash
    assert source.documents == fetched + 1
    assert PackCache(tmp_path / "cache").load(PID, 1).version == 1  # rewritten in the current format


class GatedSource(CountingSource):
    """Holds every fetch of version 1 until released: a slow registry for one pack."""

    def __init__(self, inner: PackSource) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        if version == 1:
            self.entered.set()
            if not self.release.wait(timeout=30):
                raise StoreUnavailableError("test gate never opened")
        return super().pack_document(persona_id, version)


def test_a_slow_fetch_of_one_pack_does_not_block_loading_another(store: Store, tmp_path: Path) -> None:
    """While one pack is being fetched, another pack loads (and a cached one is served)."""
    store.publish()
    source = GatedSource(StorePackSource(store.meta, store.blobs))
    cache = PackCache(tmp_path / "cache", source)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(cache.load, PID, 1)
        assert source.entered.wait(timeout=10)
        other = pool_free_load(cache, PID, 2)
        assert other.version == 2
        assert not slow.done()
        source.release.set()
        assert slow.result(timeout=30).version == 1


def pool_free_load(cache: PackCache, persona_id: str, version: int) -> CachedPack:
    done: list[CachedPack] = []
    worker = threading.Thread(target=lambda: done.append(cache.load(persona_id, version)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done, "loading another pack waited on the slow fetch"
    return done[0]
