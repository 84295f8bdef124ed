"""S3-only behaviour: credentials, buckets, listing pages, healing a tampered blob."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from services import S3Service, free_ports
from store_helpers import overwrite_blob

from persona_core.errors import IntegrityError, InvalidInputError, StoreUnavailableError
from persona_core.refs import ref_for
from persona_core.store.from_settings import open_blob_store
from persona_core.store.s3 import S3BlobStore

pytestmark = pytest.mark.s3


def _store(s3_server: S3Service, bucket: str, **kwargs: object) -> S3BlobStore:
    args: dict[str, object] = {
        "endpoint_url": s3_server.endpoint_url,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
        "region": s3_server.region,
    }
    args.update(kwargs)
    return S3BlobStore(bucket, **args)  # type: ignore[arg-type]


def test_wrong_secret_is_a_typed_unavailable_error(s3_server: S3Service, s3_bucket: str) -> None:
    good = _store(s3_server, s3_bucket)
    ref = good.put(b"private")
    bad = _store(s3_server, s3_bucket, secret_key="not-the-secret", max_attempts=1)
    with pytest.raises(StoreUnavailableError, match="credentials"):
        bad.ping()
    with pytest.raises(StoreUnavailableError):
        bad.get(ref)
    with pytest.raises(StoreUnavailableError):
        bad.put(b"intruder")
    assert not good.exists(ref_for(b"intruder"))


def test_unreachable_endpoint_is_unavailable(s3_server: S3Service) -> None:
    port = free_ports(1)[0]  # nothing listens there
    store = _store(s3_server, "some-bucket", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    with pytest.raises(StoreUnavailableError):
        store.ping()


def test_missing_bucket_is_not_created_implicitly(s3_server: S3Service) -> None:
    name = f"t-{uuid.uuid4().hex[:20]}"
    store = _store(s3_server, name)
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        store.ping()
    with pytest.raises(StoreUnavailableError):
        store.put(b"x")
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    try:
        store.ping()
        assert store.get(store.put(b"x")) == b"x"
    finally:
        s3_server.delete_bucket(name)


def test_list_objects_follows_pagination(s3_server: S3Service, s3_bucket: str) -> None:
    store = _store(s3_server, s3_bucket, list_page_size=2)
    keys = [f"manifests/{i:03d}.json" for i in range(7)]
    for key in reversed(keys):
        store.put_object(key, b"{}")
    assert store.list_objects("manifests/") == keys


def test_key_prefix_keeps_everything_under_it(s3_server: S3Service, s3_bucket: str, tmp_path: Path) -> None:
    settings = s3_server.settings(s3_bucket, home=tmp_path).model_copy(
        update={"blob_url": f"s3://{s3_bucket}/tenant-a/packs"}
    )
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    ref = store.put(b"blob")
    store.put_object("manifests/m.json", b"{}")
    raw = sorted(o["Key"] for o in store.client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert all(k.startswith("tenant-a/packs/") for k in raw)
    assert store.list_objects("manifests/") == ["manifests/m.json"]
    assert store.get(ref) == b"blob"


def test_put_heals_a_tampered_blob(s3_blob_store: S3BlobStore) -> None:
    ref = s3_blob_store.put(b"good bytes")
    overwrite_blob(s3_blob_store, ref, b"bad bytes")
    with pytest.raises(IntegrityError):
        s3_blob_store.get(ref)
    assert s3_blob_store.put(b"good bytes") == ref
    assert s3_blob_store.get(ref) == b"good bytes"


def test_signed_url_ttl_is_bounded(s3_blob_store: S3BlobStore) -> None:
    ref = s3_blob_store.put(b"x")
    for ttl in (0, -1, 8 * 24 * 3600):
        with pytest.raises(InvalidInputError):
            s3_blob_store.signed_url(ref, ttl_s=ttl)
