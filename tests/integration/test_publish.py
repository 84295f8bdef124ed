"""publish_pack on every store combination: verified blobs, one transaction, immutability."""

from __future__ import annotations

import json

import numpy as np
import pytest
from store_helpers import delete_blob, overwrite_blob

from persona_core.embeddings import matrix_to_bytes
from persona_core.errors import (
    BlobNotFoundError,
    ImmutableVersionError,
    IntegrityError,
    PackValidationError,
    VersionNotFoundError,
)
from persona_core.pack import PersonaPack, canonical_json
from persona_core.publish import publish_pack
from persona_core.refs import parse_ref, ref_for, row_ref
from persona_core.store.base import BlobStore, VersionStatus
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack


@pytest.fixture
def version(metadata_store: SqlMetadataStore) -> int:
    metadata_store.create_persona("alice", {})
    return metadata_store.create_version("alice", {"files": []}).version


def _assert_unpublished(meta: SqlMetadataStore, version: int) -> None:
    assert meta.get_version("alice", version).status != VersionStatus.PUBLISHED
    assert meta.list_versions("alice")[version - 1].pack_ref is None


def test_publish_stores_canonical_pack_and_flips_version(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=6)
    rec = publish_pack(metadata_store, blob_store, pack)
    assert rec.status == VersionStatus.PUBLISHED
    assert rec.content_hash == pack.compute_content_hash()
    published = metadata_store.get_published("alice")
    stored = blob_store.get(published.pack_ref)
    assert stored == canonical_json(json.loads(stored))
    assert PersonaPack.model_validate_json(stored) == pack.sealed()
    assert set(published.blob_refs) == pack.all_blob_refs()
    assert all(blob_store.exists(r) for r in published.blob_refs)


def test_a_ref_outside_ref_fields_is_verified_and_recorded(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    """Publish records as the pack's blobs exactly what it verified: a blob named only inside
    provenance config too (retention and export rely on that list)."""
    extra = blob_store.put(b"calibration table")
    base = make_pack(blob_store, "alice", version, n_anchors=3)
    pack = base.model_copy(
        update={"provenance": base.provenance.model_copy(update={"config": {"calibration": extra}})}
    )
    assert extra in pack.all_blob_refs()
    publish_pack(metadata_store, blob_store, pack)
    published = metadata_store.get_published("alice", version)
    assert extra in published.blob_refs
    assert set(published.blob_refs) == pack.all_blob_refs() == base.all_blob_refs() | {extra}


def test_a_missing_blob_outside_ref_fields_blocks_publish(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    base = make_pack(blob_store, "alice", version, n_anchors=3)
    never_stored = ref_for(b"never stored")
    pack = base.model_copy(
        update={"provenance": base.provenance.model_copy(update={"config": {"calibration": never_stored}})}
    )
    with pytest.raises(BlobNotFoundError):
        publish_pack(metadata_store, blob_store, pack)
    _assert_unpublished(metadata_store, version)


def test_republishing_is_refused_and_changes_nothing(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    publish_pack(metadata_store, blob_store, make_pack(blob_store, "alice", version, n_anchors=3))
    before = (metadata_store.get_version("alice", version), metadata_store.get_published("alice", version))
    different = make_pack(blob_store, "alice", version, n_anchors=4, seed=1)
    with pytest.raises(ImmutableVersionError):
        publish_pack(metadata_store, blob_store, different)
    assert (
        metadata_store.get_version("alice", version),
        metadata_store.get_published("alice", version),
    ) == before


def test_missing_blob_blocks_publish(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=3)
    delete_blob(blob_store, pack.anchor_sets["B_MIRROR"][0].image_ref)
    with pytest.raises(BlobNotFoundError):
        publish_pack(metadata_store, blob_store, pack)
    _assert_unpublished(metadata_store, version)


def test_tampered_blob_blocks_publish(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=3)
    overwrite_blob(blob_store, parse_ref(pack.identity.centroid_ref).blob, b"not the centroid")
    with pytest.raises(IntegrityError):
        publish_pack(metadata_store, blob_store, pack)
    _assert_unpublished(metadata_store, version)


def test_row_past_the_matrix_end_blocks_publish(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=3)
    anchors = dict(pack.anchor_sets)
    first = anchors["A_SELFIE"][0]
    anchors["A_SELFIE"] = [first.model_copy(update={"embedding_ref": row_ref(first.embedding_ref, 99)})]
    with pytest.raises(PackValidationError, match="row"):
        publish_pack(metadata_store, blob_store, pack.model_copy(update={"anchor_sets": anchors}))
    _assert_unpublished(metadata_store, version)


def test_embedding_width_must_match_declared_dim(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=3)
    narrow = blob_store.put(matrix_to_bytes(np.ones((1, 64), dtype=np.float32)))
    identity = pack.identity.model_copy(update={"centroid_ref": row_ref(narrow, 0)})
    with pytest.raises(PackValidationError, match="embedding_dim"):
        publish_pack(metadata_store, blob_store, pack.model_copy(update={"identity": identity}))
    _assert_unpublished(metadata_store, version)


def test_schema_violation_blocks_publish(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version, n_anchors=3)
    # model_copy skips pydantic validation, like a pack assembled by buggy code would.
    broken = pack.model_copy(update={"persona_id": "Not A Valid Id"})
    with pytest.raises(PackValidationError):
        publish_pack(metadata_store, blob_store, broken)
    _assert_unpublished(metadata_store, version)


def test_publish_for_unknown_version_leaves_no_row(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, version: int
) -> None:
    pack = make_pack(blob_store, "alice", version + 5, n_anchors=3)
    with pytest.raises(VersionNotFoundError):
        publish_pack(metadata_store, blob_store, pack)
    assert [v.version for v in metadata_store.list_versions("alice")] == [version]
    assert blob_store.exists(
        ref_for(pack.sealed().canonical_bytes())
    )  # orphan blob: harmless, reused on retry
