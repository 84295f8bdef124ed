"""A version's build that reuses what another version's build wrote (a step-cache hit on the same
photo, the crops it names) holds it from its first read or existence check, so erasing the
writer keeps it; what nobody else read goes with the writer."""

from __future__ import annotations

import pytest

from persona_core.erasure import erase
from persona_core.errors import BlobNotFoundError
from persona_core.store.base import BlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.ref_index import BLOB, OBJECT, Held
from persona_core.store.tracked import TrackedBlobStore

KEY = "cache/faces/" + "ab" * 32


@pytest.fixture
def stores(metadata_store: SqlMetadataStore, blob_store: BlobStore) -> tuple[SqlMetadataStore, BlobStore]:
    for persona in ("writer", "reader"):
        metadata_store.create_persona(persona, {})
        metadata_store.create_version(persona, {"files": []})
    return metadata_store, blob_store


@pytest.mark.parametrize("touch", ["get", "exists"])
def test_what_another_build_read_stays_when_its_writer_is_erased(
    stores: tuple[SqlMetadataStore, BlobStore], touch: str
) -> None:
    """Both reads count; the crop only the writer used is deleted with it."""
    meta, blobs = stores
    writer = TrackedBlobStore(blobs, meta.refs, "writer", 1)
    crop = writer.put(b"a face crop the writer's build made")
    other = writer.put(b"a crop nobody else used")
    writer.put_object(KEY, b'{"crop_ref": "..."}')

    reader = TrackedBlobStore(blobs, meta.refs, "reader", 1)
    assert reader.get_object(KEY)
    assert reader.get(crop) if touch == "get" else reader.exists(crop)
    assert {Held(OBJECT, KEY), Held(BLOB, crop)} <= set(meta.refs.held_by("reader"))

    report = erase(meta, blobs, "writer", actor="test", reason="asked to be forgotten")
    assert report.kept_shared == 2
    assert blobs.get(crop) == b"a face crop the writer's build made"
    assert blobs.get_object(KEY)
    with pytest.raises(BlobNotFoundError):
        blobs.get(other)
