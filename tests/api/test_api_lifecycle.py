"""Store lifecycle: what the registry opens itself it closes on shutdown; stores passed in
stay the caller's (open and usable)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from open_files import open_files_under
from registry_support import registry_settings

from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from registry_api.main import create_app
from registry_api.server import BackgroundServer


def test_app_closes_the_stores_it_opened_on_shutdown(tmp_path: Path) -> None:
    """create_app(settings) opens the database itself; app shutdown (lifespan) releases it."""
    settings = registry_settings(tmp_path)
    with TestClient(create_app(settings)) as http:
        assert http.get("/readyz").status_code == 200
        assert open_files_under(tmp_path), "the database should be open while serving"
    assert open_files_under(tmp_path) == []


def test_app_leaves_stores_passed_in_open(tmp_path: Path) -> None:
    settings = registry_settings(tmp_path)
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    blobs = LocalBlobStore(tmp_path / "blobs", b"secret", settings.public_base_url)
    with TestClient(create_app(settings, metadata=meta, blobs=blobs)) as http:
        assert http.get("/readyz").status_code == 200
    meta.create_persona("still-usable", {})  # the caller's store still works after shutdown
    assert open_files_under(tmp_path)
    meta.close()
    assert open_files_under(tmp_path) == []


def test_background_server_stop_closes_the_stores_it_opened(tmp_path: Path) -> None:
    """HTTP and gRPC over stores opened from settings: stop() releases the database."""
    server = BackgroundServer(registry_settings(tmp_path)).start()
    try:
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
        assert open_files_under(tmp_path)
    finally:
        server.stop()
    assert open_files_under(tmp_path) == []
