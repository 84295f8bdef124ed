"""make_pack builds real, schema-valid, deterministic packs; the matrix blob format round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from persona_core.embeddings import matrix_from_bytes, matrix_row, matrix_to_bytes
from persona_core.errors import InvalidInputError
from persona_core.pack import CameraMode
from persona_core.refs import parse_ref
from persona_core.schema import validate_pack_document
from persona_core.store.local import LocalBlobStore
from persona_core.testing import make_pack


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path, signing_secret=b"s", public_base_url="http://x")


def test_pack_validates_and_every_ref_exists(blobs: LocalBlobStore) -> None:
    pack = make_pack(blobs, "alice", 3, n_anchors=7)
    validate_pack_document(pack.to_json_dict())
    assert pack.content_hash == pack.compute_content_hash()
    assert all(blobs.exists(r) for r in pack.all_blob_refs())
    assert {m: len(a) for m, a in pack.anchor_sets.items()} == {
        CameraMode.A_SELFIE: 3,
        CameraMode.B_MIRROR: 2,
        CameraMode.C_CUTAWAY: 2,
    }
    assert [a.canonical for a in pack.anchor_sets[CameraMode.A_SELFIE]] == [True, False, False]


def test_anchor_embeddings_are_rows_of_one_matrix_per_kind(blobs: LocalBlobStore) -> None:
    pack = make_pack(blobs, "alice", 1, n_anchors=200, identity_dim=128, style_dim=1280)
    anchors = [a for mode in pack.anchor_sets.values() for a in mode]
    assert len(anchors) == 200
    assert len({parse_ref(a.embedding_ref).blob for a in anchors}) == 1
    assert len({parse_ref(a.style_embedding_ref).blob for a in anchors}) == 1
    ident = matrix_from_bytes(blobs.get(parse_ref(anchors[0].embedding_ref).blob))
    assert ident.shape == (200, 128)
    assert np.allclose(np.linalg.norm(ident, axis=1), 1.0, atol=1e-5)
    # Anchors of one persona agree with each other, as real ones do.
    assert float((ident @ ident.T).mean()) > 0.5
    assert len({a.image_ref for a in anchors}) == 200


def test_same_seed_same_pack_other_seed_other_pack(tmp_path: Path) -> None:
    a = make_pack(LocalBlobStore(tmp_path / "a", b"s", "http://x"), "alice", 1, n_anchors=5, seed=4)
    b = make_pack(LocalBlobStore(tmp_path / "b", b"s", "http://x"), "alice", 1, n_anchors=5, seed=4)
    c = make_pack(LocalBlobStore(tmp_path / "c", b"s", "http://x"), "alice", 1, n_anchors=5, seed=5)
    assert a == b
    assert a.content_hash != c.content_hash


def test_modes_subset_and_too_few_anchors(blobs: LocalBlobStore) -> None:
    pack = make_pack(blobs, "bob", 1, n_anchors=2, modes=["A_SELFIE"], with_voice=False)
    assert list(pack.anchor_sets) == [CameraMode.A_SELFIE]
    assert pack.voice_profile is None
    with pytest.raises(ValueError, match="at least one anchor per mode"):
        make_pack(blobs, "bob", 1, n_anchors=2)


def test_matrix_format_round_trips_and_rejects_other_bytes() -> None:
    m = np.arange(12, dtype=np.float64).reshape(3, 4)
    data = matrix_to_bytes(m)
    back = matrix_from_bytes(data)
    assert back.dtype == np.float32
    assert back.shape == (3, 4)
    assert matrix_row(data, 2).tolist() == [8.0, 9.0, 10.0, 11.0]
    with pytest.raises(InvalidInputError):
        matrix_row(data, 3)
    with pytest.raises(InvalidInputError):
        matrix_to_bytes(np.zeros(3))
    for junk in [b"", b"not npy", matrix_to_bytes(m)[:20]]:
        with pytest.raises(InvalidInputError):
            matrix_from_bytes(junk)
