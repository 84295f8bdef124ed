"""PackCache follows an alias: where it points is asked at most once per latest_ttl_s, a move is
seen after the TTL or at once after refresh(), a pack already held is not fetched again, and a
source that is down serves the alias's last target."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_core.errors import InvalidInputError, StoreUnavailableError
from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.aliases import UNSET
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack


class CountingSource(StorePackSource):
    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        super().__init__(meta, blobs)
        self.alias_asks = 0
        self.down = False

    def alias_document(self, persona_id: str, alias: str) -> bytes:
        if self.down:
            raise StoreUnavailableError("registry down")
        self.alias_asks += 1
        return super().alias_document(persona_id, alias)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[MetadataStore, BlobStore]:
    s = Settings(home=tmp_path / "home")
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    meta.create_persona("alice", {})
    for n in (1, 2):
        meta.create_version("alice", {"files": []})
        publish_pack(meta, blobs, make_pack(blobs, "alice", n, n_anchors=6, seed=n))
    meta.aliases.move("alice", "live", 1, expected=UNSET, actor="t", reason="go")
    return meta, blobs


def test_alias_is_followed_with_a_ttl_and_refresh(
    stores: tuple[MetadataStore, BlobStore], tmp_path: Path
) -> None:
    meta, blobs = stores
    source = CountingSource(meta, blobs)
    cache = PackCache(tmp_path / "cache", source, latest_ttl_s=3600)
    assert cache.load("alice", alias="live").version == 1
    assert cache.load("alice", alias="live").version == 1
    assert source.alias_asks == 1  # within the TTL: no question asked
    meta.aliases.move("alice", "live", 2, expected=1, actor="t", reason="up")
    assert cache.load("alice", alias="live").version == 1  # the TTL holds until told
    cache.refresh("alice", "live")
    assert cache.load("alice", alias="live").version == 2
    assert source.alias_asks == 2
    meta.aliases.move("alice", "live", 1, expected=2, actor="t", reason="back")
    cache.refresh("alice", "live")
    one = cache.load("alice", 1)
    assert cache.load("alice", alias="live") is one  # held already: same object, nothing fetched
    source.down = True
    cache.refresh("alice", "live")
    with pytest.raises(StoreUnavailableError):
        cache.load("alice", alias="live")  # forgotten by refresh and nothing to fall back on


def test_alias_ttl_expires_and_a_down_source_serves_the_last_target(
    stores: tuple[MetadataStore, BlobStore], tmp_path: Path
) -> None:
    meta, blobs = stores
    source = CountingSource(meta, blobs)
    cache = PackCache(tmp_path / "cache", source, latest_ttl_s=0)
    assert cache.load("alice", alias="live").version == 1
    meta.aliases.move("alice", "live", 2, expected=1, actor="t", reason="up")
    assert cache.load("alice", alias="live").version == 2  # TTL 0: asks every time
    source.down = True
    assert cache.load("alice", alias="live").version == 2
    with pytest.raises(InvalidInputError):
        cache.load("alice", 1, alias="live")
