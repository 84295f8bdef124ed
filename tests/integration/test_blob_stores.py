"""Blob store contract, run on the local folder and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_helpers import delete_blob, overwrite_blob, stored_keys

from persona_core.errors import BlobNotFoundError, IntegrityError, InvalidInputError, InvalidNameError
from persona_core.refs import ref_for
from persona_core.signing import verify_blob_signature
from persona_core.store.base import BlobStore
from persona_core.store.local import LocalBlobStore


def test_put_returns_content_ref_and_get_returns_same_bytes(blob_store: BlobStore) -> None:
    data = b"\x00\x01 persona bytes \xff" * 100
    ref = blob_store.put(data)
    assert ref == ref_for(data)
    assert blob_store.exists(ref)
    assert blob_store.get(ref) == data


def test_put_is_idempotent(blob_store: BlobStore) -> None:
    first = blob_store.put(b"same")
    keys = stored_keys(blob_store)
    assert blob_store.put(b"same") == first
    assert stored_keys(blob_store) == keys


def test_missing_blob_is_not_found(blob_store: BlobStore) -> None:
    ref = ref_for(b"never stored")
    assert not blob_store.exists(ref)
    with pytest.raises(BlobNotFoundError):
        blob_store.get(ref)


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 64, "../../etc/passwd", ""])
def test_malformed_ref_is_rejected(blob_store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        blob_store.get(bad)


def test_blob_altered_in_storage_is_detected_on_load(blob_store: BlobStore) -> None:
    ref = blob_store.put(b"original anchor image")
    overwrite_blob(blob_store, ref, b"swapped anchor image")
    with pytest.raises(IntegrityError):
        blob_store.get(ref)


def test_row_ref_reads_its_whole_blob(blob_store: BlobStore) -> None:
    ref = blob_store.put(b"matrix bytes")
    assert blob_store.get(f"{ref}#3") == b"matrix bytes"


def test_named_objects_round_trip_and_list_sorted(blob_store: BlobStore) -> None:
    blob_store.put_object("manifests/002-b.json", b"2")
    blob_store.put_object("manifests/001-a.json", b"1")
    blob_store.put_object("uploads/alice/v1/photo.jpg", b"jpg")
    assert blob_store.get_object("manifests/001-a.json") == b"1"
    assert blob_store.list_objects("manifests/") == ["manifests/001-a.json", "manifests/002-b.json"]
    assert blob_store.list_objects("uploads/alice/") == ["uploads/alice/v1/photo.jpg"]
    assert blob_store.list_objects("nothing/") == []


def test_list_objects_matches_by_prefix_whatever_its_folder_part(blob_store: BlobStore) -> None:
    """Prefixes that end mid-name, at a folder, or are empty list exactly the matching keys."""
    keys = ["cache/qc/ab/0001.json", "manifests-old/x.json", "manifests/001-a.json", "manifests/002-b.json",
            "uploads/alice/v1/photo.jpg", "uploads/alicia/v1/photo.jpg", "uploads/bob/v1/photo.jpg"]
    for key in keys:
        blob_store.put_object(key, b"x")
    assert blob_store.list_objects("") == keys
    assert blob_store.list_objects("manifests") == keys[1:4]
    assert blob_store.list_objects("manifests/") == keys[2:4]
    assert blob_store.list_objects("uploads/ali") == keys[4:6]
    assert blob_store.list_objects("uploads/alice/v1/photo.jpg") == [keys[4]]
    assert blob_store.list_objects("uploads/carol/") == []
    for bad in ("../", "/etc/", "manifests/../cache/"):
        with pytest.raises(InvalidInputError):
            blob_store.list_objects(bad)


def test_list_objects_starts_after_a_cursor(blob_store: BlobStore) -> None:
    """``start_after`` is a cursor: only keys greater than it, whether or not it exists."""
    keys = [f"manifests/00{i}-a.json" for i in range(1, 4)]
    for key in [*keys, "cache/qc/zz.json"]:
        blob_store.put_object(key, b"x")
    assert blob_store.list_objects("manifests/", start_after=keys[0]) == keys[1:]
    assert blob_store.list_objects("manifests/", start_after="manifests/002") == keys[1:]
    assert blob_store.list_objects("manifests/", start_after=keys[-1]) == []
    assert blob_store.list_objects("manifests/", start_after="a") == keys  # before the prefix
    assert blob_store.list_objects("manifests/", start_after=None) == keys


def test_local_listing_reads_only_the_prefix_folder(
    local_blob_store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor lists manifests/ every few seconds: the step cache (cache/, thousands of
    entries on a busy deployment) must not be walked for it."""
    local_blob_store.put_object("manifests/001-a.json", b"1")
    local_blob_store.put_object("cache/qc/ab/0001.json", b"c")
    walked: list[str] = []
    real_walk = os.walk

    def recording_walk(top: str, *args: Any, **kwargs: Any) -> Iterator[tuple[str, list[str], list[str]]]:
        for entry in real_walk(top, *args, **kwargs):
            walked.append(Path(entry[0]).relative_to(local_blob_store.root / "objects").as_posix())
            yield entry

    monkeypatch.setattr(os, "walk", recording_walk)
    assert local_blob_store.list_objects("manifests/") == ["manifests/001-a.json"]
    assert walked == ["manifests"]


def test_named_object_overwrite_replaces_content(blob_store: BlobStore) -> None:
    blob_store.put_object("state/cursor", b"1")
    blob_store.put_object("state/cursor", b"2")
    assert blob_store.get_object("state/cursor") == b"2"


def test_missing_named_object_is_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        blob_store.get_object("manifests/none.json")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a/\x00b", "a//b", ".hidden", "a/b/"])
def test_malicious_object_keys_are_rejected_and_nothing_written(blob_store: BlobStore, key: str) -> None:
    before = stored_keys(blob_store)
    with pytest.raises(InvalidNameError):
        blob_store.put_object(key, b"evil")
    with pytest.raises(InvalidNameError):
        blob_store.get_object(key)
    assert stored_keys(blob_store) == before


def test_signed_url_serves_or_verifies_the_blob(blob_store: BlobStore) -> None:
    data = b"signed content"
    ref = blob_store.put(data)
    url = blob_store.signed_url(ref, ttl_s=60)
    if isinstance(blob_store, LocalBlobStore):
        # The registry serves these; here we check the signature it will verify.
        digest = ref.removeprefix("sha256:")
        query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
        assert f"/v1/blobs/{digest}" in url
        verify_blob_signature(blob_store._secret, digest, int(query["exp"]), query["sig"])
        assert int(query["exp"]) <= time.time() + 61
    else:
        resp = httpx.get(url)
        assert resp.status_code == 200
        assert resp.content == data
        tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=999")
        assert httpx.get(tampered).status_code == 403


def test_deleted_blob_reports_not_found(blob_store: BlobStore) -> None:
    ref = blob_store.put(b"to be lost")
    delete_blob(blob_store, ref)
    assert not blob_store.exists(ref)
    with pytest.raises(BlobNotFoundError):
        blob_store.get(ref)


def test_ping_on_healthy_store(blob_store: BlobStore) -> None:
    blob_store.ping()
