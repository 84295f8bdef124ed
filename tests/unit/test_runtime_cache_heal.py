"""PackCache heals its disk copy: a truncated, emptied or bit-flipped cache file is fetched again
and replaced when the source is reachable, and reported with CacheDamagedError when it is not;
a process holding a loaded pack survives the file being truncated under it; a second content
hash for a version already held is refused and the verified copy kept; an unwritable cache
folder still serves the verified pack from memory, with a CacheWriteWarning."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from persona_core.errors import CacheDamagedError, PackConflictError, StoreUnavailableError
from persona_core.pack import PersonaPack, canonical_json, content_hash
from persona_core.publish import publish_pack
from persona_core.refs import parse_ref
from persona_core.runtime import CacheWriteWarning, PackCache, PackSource, StorePackSource
from persona_core.runtime._format import HEADER
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

PID = "ada"


class Stores:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = LocalBlobStore(root / "blobs", b"test-secret", "http://127.0.0.1:8000")
        self.meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")
        self.meta.create_persona(PID, {})
        self.packs: dict[int, PersonaPack] = {}

    def publish(self) -> PersonaPack:
        version = self.meta.create_version(PID, {}).version
        pack = make_pack(self.blobs, PID, version, n_anchors=8, seed=version)
        publish_pack(self.meta, self.blobs, pack)
        self.packs[version] = pack
        return pack

    def matrix(self, ref: str) -> np.ndarray:
        return np.load(self.blobs.blob_path(parse_ref(ref).blob))


class Switchable:
    """The real store source, which the test can take down (an outage it causes)."""

    def __init__(self, inner: PackSource) -> None:
        self.inner = inner
        self.down = False
        self.documents = 0

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        if self.down:
            raise StoreUnavailableError("registry is down")
        self.documents += 1
        return self.inner.pack_document(persona_id, version)

    def blob(self, ref: str) -> bytes:
        if self.down:
            raise StoreUnavailableError("registry is down")
        return self.inner.blob(ref)


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    s = Stores(tmp_path)
    s.publish()
    yield s
    s.meta.close()


@pytest.fixture
def source(stores: Stores) -> Switchable:
    return Switchable(StorePackSource(stores.meta, stores.blobs))


def _cached(stores: Stores, source: Switchable) -> tuple[Path, bytes]:
    """Fetch v1 into the cache folder; its file and good bytes."""
    path = PackCache(stores.root / "cache", source).load(PID, 1).path
    assert path is not None
    return path, path.read_bytes()


def _matrix_byte(stores: Stores, good: bytes) -> int:
    """An offset inside the float data of the centroid matrix in a cache file."""
    blob = stores.blobs.blob_path(stores.packs[1].identity.centroid_ref).read_bytes()
    return good.index(blob) + len(blob) - 4


def _padding_byte(good: bytes) -> int:
    """An offset in the zero padding between the header and the first matrix."""
    return HEADER.size + 1


DAMAGE = {
    "truncated": lambda stores, good: good[: len(good) // 2],
    "emptied": lambda stores, good: b"",
    "header cut": lambda stores, good: good[: HEADER.size - 1],
    "padding flipped": lambda stores, good: _flip(good, _padding_byte(good)),
}


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x10
    return bytes(out)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_file_is_fetched_again_and_replaced(
    stores: Stores, source: Switchable, damage: str
) -> None:
    """A cache file truncated, emptied, cut inside its header or with a flipped padding byte:
    the next load fetches the pack again, serves the published pack and rewrites the file whole."""
    path, good = _cached(stores, source)
    path.write_bytes(DAMAGE[damage](stores, good))
    before = source.documents
    pack = PackCache(stores.root / "cache", source).load(PID, 1)
    assert pack.content_hash == stores.packs[1].content_hash
    assert source.documents == before + 1
    assert path.read_bytes() == good
    assert PackCache(stores.root / "cache").load(PID, 1).content_hash == stores.packs[1].content_hash


def test_flipped_matrix_byte_is_healed_on_first_touch(stores: Stores, source: Switchable) -> None:
    """A bit flipped inside a cached embedding matrix is found when the matrix is first read:
    the pack is fetched again, the published matrix returned and the file rewritten whole."""
    path, good = _cached(stores, source)
    path.write_bytes(_flip(good, _matrix_byte(stores, good)))
    cache = PackCache(stores.root / "cache", source)
    pack = cache.load(PID, 1)
    ref = stores.packs[1].identity.centroid_ref
    np.testing.assert_array_equal(pack.matrix(ref), stores.matrix(ref))
    assert path.read_bytes() == good
    healed = cache.load(PID, 1)
    assert healed is not pack  # the good copy replaced the damaged one in memory
    np.testing.assert_array_equal(healed.matrix(ref), stores.matrix(ref))


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_damaged_file_with_the_source_down_raises_cache_damaged(
    stores: Stores, source: Switchable, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the registry down, a damaged file is reported as CacheDamagedError (an IntegrityError,
    never a pack), and healed by the first load after the registry is back."""
    path, good = _cached(stores, source)
    path.write_bytes(DAMAGE[damage](stores, good))
    source.down = True
    cache = PackCache(stores.root / "cache", source)
    with pytest.raises(CacheDamagedError) as caught:
        cache.load(PID, 1)
    assert "unreachable" in str(caught.value)
    with pytest.raises(CacheDamagedError):
        cache.load(PID)  # latest falls back to the disk copy, which is damaged: reported too
    source.down = False
    with caplog.at_level(logging.WARNING, logger="persona_core.runtime.cache"):
        assert cache.load(PID, 1).content_hash == stores.packs[1].content_hash
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() == good


_HOLDER = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    from persona_core.runtime import PackCache, StorePackSource
    from persona_core.store.local import LocalBlobStore
    from persona_core.store.metadata import SqlMetadataStore

    root = Path(sys.argv[1])
    blobs = LocalBlobStore(root / "blobs", b"test-secret", "http://127.0.0.1:8000")
    meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")
    source = StorePackSource(meta, blobs)
    pack = PackCache(root / "cache", source).load("ada", 1)  # from the disk copy
    print("LOADED", flush=True)
    sys.stdin.readline()  # the test truncates the file in place now
    held = {
        "sums": {ref: float(pack.matrix(ref).sum()) for ref in pack.matrix_refs},
        "document": hashlib.sha256(pack.document_bytes).hexdigest(),
    }
    again = PackCache(root / "cache", source).load("ada", 1)  # a fresh cache: the file is damaged
    held["again"] = again.content_hash
    held["again_sums"] = {ref: float(again.matrix(ref).sum()) for ref in again.matrix_refs}
    print(json.dumps(held), flush=True)
    """
)


def test_truncating_the_file_under_a_loaded_pack_does_not_kill_the_process(
    stores: Stores, source: Switchable
) -> None:
    """A renderer process holds a pack loaded from disk; another truncates the cache file in place.
    The renderer survives (no SIGBUS), still serves the published pack it verified, and its next
    fresh load finds the damage and fetches the pack again."""
    path, good = _cached(stores, source)
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(stores.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "LOADED"
        os.truncate(path, 4096)  # same inode: what a careless copy or a full disk does
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, f"renderer died with {child.returncode}: {err[-2000:]}"
    held = json.loads(out)
    pack = stores.packs[1]
    published = {
        ref: float(stores.matrix(ref).sum())
        for ref in {
            parse_ref(r).blob for r in [pack.identity.centroid_ref, *pack.identity.face_embedding_refs]
        }
    }
    assert {k: held["sums"][k] for k in published} == published
    assert held["again"] == pack.content_hash
    assert held["again_sums"] == held["sums"]
    assert path.read_bytes() == good


class AlteredLatest:
    """A compromised mirror: answers ``latest`` with v1 altered (the identity drift fail line
    lowered from its value to 0.01) and its content hash recomputed to match."""

    def __init__(self, inner: PackSource) -> None:
        self.inner = inner

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        data = self.inner.pack_document(persona_id, version)
        if version is not None:
            return data
        doc = json.loads(data)
        doc["refresh_policy"]["identity_drift_fail"] = 0.01
        doc["content_hash"] = content_hash(doc)
        return canonical_json(doc)

    def blob(self, ref: str) -> bytes:
        return self.inner.blob(ref)


@pytest.mark.parametrize("held_in", ["memory", "disk"])
def test_a_second_content_hash_for_a_held_version_is_refused(
    stores: Stores, source: Switchable, held_in: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With v1 held, a ``latest`` answer carrying an altered v1 (hash recomputed) raises
    PackConflictError with a warning; the verified copy stays on disk and loads by number
    (in this cache and a fresh one) return the published pack."""
    path, good = _cached(stores, source)
    fail_line = stores.packs[1].refresh_policy.identity_drift_fail
    cache = PackCache(stores.root / "cache", AlteredLatest(source), latest_ttl_s=0)
    if held_in == "memory":
        cache.load(PID, 1)
    with (
        caplog.at_level(logging.WARNING, logger="persona_core.runtime.cache"),
        pytest.raises(PackConflictError),
    ):
        cache.load(PID)
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() == good
    for loader in (cache, PackCache(stores.root / "cache")):
        pack = loader.load(PID, 1)
        assert pack.content_hash == stores.packs[1].content_hash
        assert pack.refresh_policy.identity_drift_fail == fail_line != 0.01


def test_unwritable_cache_folder_serves_the_verified_pack_from_memory(
    stores: Stores, source: Switchable
) -> None:
    """When the cache folder cannot be written (here one the kernel refuses even to root), the
    fetched, verified pack is still served, from memory, with a CacheWriteWarning."""
    folder = Path("/sys/persona-core-test-cache")
    try:
        folder.mkdir()
    except OSError:
        pass
    else:
        folder.rmdir()
        pytest.skip("this kernel lets /sys be written; no unwritable folder to test with")
    cache = PackCache(folder, source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pack = cache.load(PID, 1)
    assert pack.content_hash == stores.packs[1].content_hash
    assert pack.path is None
    assert [w.category for w in caught] == [CacheWriteWarning]
    assert "serving the verified pack from memory" in str(caught[0].message)
    assert cache.load(PID, 1) is pack
    assert cache.load(PID).version == 1
