"""A full local store (a 2 MB tmpfs) refuses an upload with 503 store_unavailable and stores
no partial blob; what was stored before stays readable, and once space is freed it works."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_faults import outage_row

from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app

pytestmark = [pytest.mark.faults]
PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "obama.jpg").read_bytes()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a tmpfs and needs root (as CI runs)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_blob_folder_is_503_and_leaves_nothing_half_written(small_disk: Path, tmp_path: Path) -> None:
    settings = ApiSettings(env="test", home=tmp_path, max_upload_file_bytes=8 * 1024 * 1024)
    meta = SqlMetadataStore.open(settings.resolved_database_url)  # the database is not on the small disk
    blobs = LocalBlobStore(small_disk / "blobs", b"secret-for-tests-0123456789", settings.public_base_url)
    key = ApiKeyStore.of(meta).create_api_key("b", ["admin"])[1]
    meta.create_persona("alice", {})
    kept = blobs.put(b"stored before the disk filled")
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - len(PHOTO) // 2 - 64 * 1024))
    with TestClient(create_app(settings, metadata=meta, blobs=blobs)) as client:
        headers = {"X-API-Key": key}
        r = client.post(
            "/v1/personas/alice/versions", files=[("files", ("a.jpg", PHOTO, "image/jpeg"))], headers=headers
        )
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "store_unavailable"
        assert r.headers["retry-after"] == "1"
        assert meta.list_versions("alice") == []
        stray = [p for p in (small_disk / "blobs").rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
        assert stray == []
        assert blobs.get(kept) == b"stored before the disk filled"
        filler.unlink()
        r = client.post(
            "/v1/personas/alice/versions", files=[("files", ("a.jpg", PHOTO, "image/jpeg"))], headers=headers
        )
        assert r.status_code == 202, r.text
    meta.close()
    outage_row("local disk full", recovered=True)
