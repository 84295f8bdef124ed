"""The API docs (/docs, /redoc, /openapi.json) are off unless PERSONA_API_DOCS asks for them:
otherwise they answered without a key, although every route but health and signed blob URLs
needs one, and /docs loads Swagger UI from a CDN (blank where there is no internet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from registry_api.config import ApiSettings
from registry_api.main import create_app

DOC_ROUTES = ("/docs", "/redoc", "/openapi.json")


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docs: str | None) -> TestClient:
    if docs is None:
        monkeypatch.delenv("PERSONA_API_DOCS", raising=False)
    else:
        monkeypatch.setenv("PERSONA_API_DOCS", docs)
    settings = ApiSettings(env="test", home=tmp_path, public_base_url="http://testserver")
    meta = SqlMetadataStore.open("sqlite://")
    blobs = LocalBlobStore(tmp_path / "blobs", b"secret-for-tests-0123456789", settings.public_base_url)
    return TestClient(create_app(settings, metadata=meta, blobs=blobs))


def test_docs_are_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    http = _client(tmp_path, monkeypatch, None)
    for route in DOC_ROUTES:
        r = http.get(route)
        assert r.status_code == 404, route
        assert r.json()["code"] == "route_not_found"
    assert http.get("/healthz").status_code == 200


def test_docs_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    http = _client(tmp_path, monkeypatch, "1")
    for route in DOC_ROUTES:
        assert http.get(route).status_code == 200, route
    assert "/v1/personas" in http.get("/openapi.json").json()["paths"]
