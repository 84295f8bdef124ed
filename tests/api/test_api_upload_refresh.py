"""Drift lines given with an HTTP upload reach the build manifest as given (only the fields
set, so the others stay calibrated); invalid ones are refused before anything is stored."""

from __future__ import annotations

import json

from registry_support import PUBLISHED, Registry, fixture_bytes

from persona_core.ingest import read_manifest

URL = f"/v1/personas/{PUBLISHED}/versions"
JPEG = fixture_bytes("faces", "obama1.jpg")


def _post(reg: Registry, manifest: dict) -> object:
    return reg.http.post(URL, files=[("files", ("front.jpg", JPEG, "image/jpeg"))],
                         data={"manifest": json.dumps(manifest)}, headers=reg.headers("build"))


def test_upload_carries_the_uploaders_drift_lines(registry: Registry) -> None:
    response = _post(registry, {"refresh": {"identity_drift_warn": 0.7, "identity_drift_fail": 0.5}})
    assert response.status_code == 202, response.text
    (key,) = registry.blobs.list_objects("manifests/")
    written = read_manifest(registry.blobs, key)
    assert written.inputs.refresh_policy == {"identity_drift_warn": 0.7, "identity_drift_fail": 0.5}


def test_invalid_drift_lines_are_refused_and_nothing_is_stored(registry: Registry) -> None:
    before = registry.blobs.list_objects("manifests/")
    response = _post(registry, {"refresh": {"identity_drift_warn": 2.0}})
    assert 400 <= response.status_code < 500
    assert "refresh" in response.text
    assert registry.blobs.list_objects("manifests/") == before
