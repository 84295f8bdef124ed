"""Helpers for the store tests: what a backend holds, seen from outside the store API."""

from __future__ import annotations

from persona_core.store.base import BlobStore
from persona_core.store.local import LocalBlobStore
from persona_core.store.s3 import S3BlobStore


def stored_keys(store: BlobStore) -> list[str]:
    """Every file / object the backend holds (blobs and named objects alike)."""
    if isinstance(store, LocalBlobStore):
        return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3BlobStore)
    keys: list[str] = []
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def overwrite_blob(store: BlobStore, ref: str, data: bytes) -> None:
    """Replace a blob's bytes behind the store's back, as a disk fault or an attacker would."""
    if isinstance(store, LocalBlobStore):
        store.blob_path(ref).write_bytes(data)
        return
    assert isinstance(store, S3BlobStore)
    store.client.put_object(Bucket=store.bucket, Key=store.blob_key(ref), Body=data)


def delete_blob(store: BlobStore, ref: str) -> None:
    if isinstance(store, LocalBlobStore):
        store.blob_path(ref).unlink()
        return
    assert isinstance(store, S3BlobStore)
    store.client.delete_object(Bucket=store.bucket, Key=store.blob_key(ref))
