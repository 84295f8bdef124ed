"""Settings pick the store implementations; manifest keys and persona ids are well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_core.errors import InvalidInputError, InvalidNameError
from persona_core.ingest import manifest_key
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.s3 import S3BlobStore


def test_embedded_default_is_sqlite_and_a_local_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    blobs = open_blob_store(settings)
    assert isinstance(blobs, LocalBlobStore)
    assert blobs.root == (tmp_path / "blobs").resolve()
    meta = open_metadata_store(settings)
    assert isinstance(meta, SqlMetadataStore)
    assert (tmp_path / "persona.db").is_file()
    meta.ping()
    meta.close()


def test_s3_url_maps_bucket_prefix_and_credentials(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        blob_url="s3://packs/prod/eu",
        s3_endpoint_url="http://127.0.0.1:1",
        s3_access_key="ak",
        s3_secret_key="sk",  # type: ignore[arg-type]
    )
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert store.bucket == "packs"
    assert store.blob_key("sha256:" + "ab" * 32) == "prod/eu/blobs/sha256/ab/" + "ab" * 32
    assert store.object_key("manifests/m.json") == "prod/eu/objects/manifests/m.json"


@pytest.mark.parametrize("url", ["ftp://host/x", "file://remote-host/x", "http://bucket"])
def test_unsupported_blob_urls_are_rejected(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidInputError):
        open_blob_store(Settings(home=tmp_path, blob_url=url))


def test_s3_prefix_segments_are_validated() -> None:
    with pytest.raises(InvalidNameError):
        S3BlobStore("packs", prefix="../other")


def test_manifest_keys_sort_by_time_and_name_the_version() -> None:
    assert manifest_key("alice", 3, now_ns=42) == "manifests/00000000000000000042-alice-v3.json"
    assert manifest_key("alice", 10, now_ns=2) < manifest_key("alice", 9, now_ns=10)
    with pytest.raises(InvalidNameError):
        manifest_key("../alice", 1)
