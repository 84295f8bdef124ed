"""Packs, versions and assets over HTTP: exact bytes, ETag/304, immutable caching, `latest`,
404 until published, signed URLs that expire and refuse tampering."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlparse

import pytest
from fastapi.testclient import TestClient
from registry_support import PUBLISHED, Registry, make_registry, registry_settings

from persona_core.publish import publish_pack
from persona_core.refs import sha256_hex
from persona_core.schema import validate_pack_document
from persona_core.signing import sign_blob_url
from persona_core.store.engine import Database
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from registry_api.main import create_app

V = f"/v1/personas/{PUBLISHED}/versions"


def test_pack_is_the_published_document_with_etag_and_immutable_caching(registry: Registry) -> None:
    """GET pack serves exactly the published canonical JSON; ETag is the content hash."""
    r = registry.http.get(f"{V}/1/pack", headers=registry.headers("read"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == registry.pack.canonical_bytes()
    assert r.headers["etag"] == f'"{registry.pack.content_hash}"'
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    validate_pack_document(r.json())


def test_if_none_match_gives_304_without_a_body(registry: Registry) -> None:
    headers = registry.headers("read")
    etag = registry.http.get(f"{V}/1/pack", headers=headers).headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = registry.http.get(f"{V}/1/pack", headers={**headers, "If-None-Match": value})
        assert r.status_code == 304, value
        assert r.content == b""
        assert r.headers["etag"] == etag
    stale = registry.http.get(f"{V}/1/pack", headers={**headers, "If-None-Match": '"deadbeef"'})
    assert stale.status_code == 200


def test_latest_follows_new_publishes_and_must_be_revalidated(registry: Registry) -> None:
    """`latest` names its version in Content-Location, is not cached as immutable, and moves
    to a newly published version within latest_cache_ttl_s."""
    headers = registry.headers("read")
    first = registry.http.get(f"{V}/latest/pack", headers=headers)
    assert first.status_code == 200
    assert first.headers["x-persona-version"] == "1"
    assert first.headers["content-location"] == f"{V}/1/pack"
    assert first.headers["cache-control"] == "no-cache"

    pack2 = make_pack(registry.blobs, PUBLISHED, 2, n_anchors=4, seed=2)
    publish_pack(registry.meta, registry.blobs, pack2)
    time.sleep(registry.settings.latest_cache_ttl_s + 0.05)
    second = registry.http.get(f"{V}/latest/pack", headers=headers)
    assert second.headers["x-persona-version"] == "2"
    assert second.content == pack2.canonical_bytes()
    assert registry.http.get(f"{V}/latest", headers=headers).json()["version"] == 2


def test_pack_is_404_until_published(registry: Registry) -> None:
    """A pending version has a status but no pack: 404 pack_not_published; unknown ones differ."""
    headers = registry.headers("read")
    status = registry.http.get(f"{V}/2", headers=headers)
    assert status.status_code == 200
    assert status.json()["status"] == "pending"
    assert status.json()["pack_url"] is None
    pending = registry.http.get(f"{V}/2/pack", headers=headers)
    assert (pending.status_code, pending.json()["code"]) == (404, "pack_not_published")
    missing = registry.http.get(f"{V}/99/pack", headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "version_not_found")
    nobody = registry.http.get("/v1/personas/nobody/versions/latest/pack", headers=headers)
    assert (nobody.status_code, nobody.json()["code"]) == (404, "persona_not_found")
    bob = registry.http.get("/v1/personas/bob/versions/latest/pack", headers=headers)
    assert (bob.status_code, bob.json()["code"]) == (404, "pack_not_published")
    junk = registry.http.get(f"{V}/first/pack", headers=headers)
    assert (junk.status_code, junk.json()["code"]) == (400, "invalid_input")


def test_versions_list_shows_status_checks_and_times(registry: Registry) -> None:
    items = registry.http.get(V, headers=registry.headers("read")).json()["items"]
    assert [(v["version"], v["status"]) for v in items] == [(1, "published"), (2, "pending")]
    published = items[0]
    assert published["published_at"] is not None
    assert published["content_hash"] == registry.pack.content_hash
    assert published["checks"][0]["name"] == "enough_anchors"
    assert published["pack_url"] == f"{V}/1/pack"


def test_persona_routes_create_get_paginate_and_conflict(registry: Registry) -> None:
    admin = registry.headers("admin")
    for i in range(5):
        r = registry.http.post(
            "/v1/personas", json={"persona_id": f"p{i}", "metadata": {"i": i}}, headers=admin
        )
        assert r.status_code == 201
        assert r.headers["location"] == f"/v1/personas/p{i}"
    dup = registry.http.post("/v1/personas", json={"persona_id": "p0"}, headers=admin)
    assert (dup.status_code, dup.json()["code"]) == (409, "already_exists")
    bad = registry.http.post("/v1/personas", json={"persona_id": "Not Valid!"}, headers=admin)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_name")  # as gRPC and the CLI say
    bad = registry.http.post("/v1/personas", json={"persona_id": 5}, headers=admin)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")  # not a string at all
    assert registry.http.get("/v1/personas/p3", headers=admin).json()["metadata"] == {"i": 3}

    seen, after = [], None
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        page = registry.http.get("/v1/personas", params=params, headers=admin).json()
        seen += [p["persona_id"] for p in page["items"]]
        after = page["next_after"]
        if not after:
            break
    assert seen == sorted(["alice", "bob", "p0", "p1", "p2", "p3", "p4"])


def _anchor_refs(registry: Registry) -> list[str]:
    return [a.image_ref for anchors in registry.pack.anchor_sets.values() for a in anchors]


def test_resolve_url_gives_a_signed_url_whose_bytes_hash_to_the_ref(registry: Registry) -> None:
    for ref in _anchor_refs(registry):
        r = registry.http.post(
            "/v1/assets/resolve",
            json={"ref": ref, "mode": "url", "ttl_s": 120},
            headers=registry.headers("read"),
        )
        assert r.status_code == 200
        body = r.json()
        assert body["expires_at"] >= int(time.time()) + 119
        url = urlparse(body["url"])
        blob = registry.http.get(f"{url.path}?{url.query}")  # no API key: the signature is the credential
        assert blob.status_code == 200
        assert f"sha256:{sha256_hex(blob.content)}" == ref
        assert blob.headers["content-type"] == "image/png"  # typed by its bytes: a browser shows it


def test_resolve_bytes_and_row_refs(registry: Registry) -> None:
    """mode=bytes returns the blob; a row ref (sha256:..#n) resolves to its matrix blob."""
    ref = _anchor_refs(registry)[0]
    r = registry.http.post(
        "/v1/assets/resolve", json={"ref": ref, "mode": "bytes"}, headers=registry.headers("read")
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"  # what its bytes are, as a signed URL serves it
    assert f"sha256:{sha256_hex(r.content)}" == ref
    row = registry.pack.identity.face_embedding_refs[2]
    matrix = registry.http.post(
        "/v1/assets/resolve", json={"ref": row, "mode": "bytes"}, headers=registry.headers("read")
    )
    assert f"sha256:{sha256_hex(matrix.content)}" == row.split("#")[0]
    assert matrix.headers["content-type"] == "application/octet-stream"  # not an image or a clip


def test_asset_bytes_route_answers_octet_stream_as_the_old_mode_did_bytes(registry: Registry) -> None:
    """POST /v1/assets/bytes: the blob (or a row's matrix) as application/octet-stream, one
    content type for every blob, and the same bytes the older resolve mode=bytes still returns."""
    headers = registry.headers("read")
    for ref in (_anchor_refs(registry)[0], registry.pack.identity.face_embedding_refs[2]):
        r = registry.http.post("/v1/assets/bytes", json={"ref": ref}, headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-blob-ref"] == ref
        assert f"sha256:{sha256_hex(r.content)}" == ref.split("#")[0]
        old = registry.http.post("/v1/assets/resolve", json={"ref": ref, "mode": "bytes"}, headers=headers)
        assert old.content == r.content
    gone = registry.http.post("/v1/assets/bytes", json={"ref": "sha256:" + "0" * 64}, headers=headers)
    assert (gone.status_code, gone.json()["code"]) == (404, "blob_not_found")
    extra = registry.http.post("/v1/assets/bytes", json={"ref": ref, "mode": "url"}, headers=headers)
    assert (extra.status_code, extra.json()["code"]) == (422, "invalid_request")


def test_a_signed_url_serves_a_jpeg_as_image_jpeg(registry: Registry) -> None:
    """A JPEG behind a signed URL answers image/jpeg, so a browser shows it instead of saving it."""
    jpeg = (Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "obama.jpg").read_bytes()
    ref = registry.blobs.put(jpeg)
    secret = registry.settings.signing_secret.get_secret_value().encode()
    url = urlparse(sign_blob_url("", secret, ref, 60))
    r = registry.http.get(f"{url.path}?{url.query}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content == jpeg


def test_resolve_refuses_unknown_and_malformed_refs(registry: Registry) -> None:
    headers = registry.headers("read")
    missing = registry.http.post("/v1/assets/resolve", json={"ref": "sha256:" + "0" * 64}, headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "blob_not_found")
    bad = registry.http.post("/v1/assets/resolve", json={"ref": "../../etc/passwd"}, headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    long_ttl = registry.http.post(
        "/v1/assets/resolve", json={"ref": _anchor_refs(registry)[0], "ttl_s": 10**9}, headers=headers
    )
    assert long_ttl.status_code == 422


def _signed(registry: Registry, ttl_s: int = 60, now: float | None = None) -> tuple[str, dict[str, str]]:
    secret = registry.settings.signing_secret.get_secret_value().encode()
    url = urlparse(sign_blob_url("", secret, _anchor_refs(registry)[0], ttl_s, now=now))
    return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


@pytest.mark.parametrize(
    "tamper",
    ["sig", "exp", "digest", "expired", "missing_sig"],
)
def test_tampered_or_expired_signed_urls_are_403(registry: Registry, tamper: str) -> None:
    """Any change to a signed URL, or its expiry passing, gives 403 bad_signature."""
    path, query = _signed(registry)
    ok = registry.http.get(f"{path}?{urlencode(query)}")
    assert ok.status_code == 200
    if tamper == "sig":
        query["sig"] = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
    elif tamper == "exp":
        query["exp"] = str(int(query["exp"]) + 3600)
    elif tamper == "digest":
        other = _anchor_refs(registry)[1].removeprefix("sha256:")
        path = f"/v1/blobs/{other}"
    elif tamper == "expired":
        path, query = _signed(registry, ttl_s=10, now=time.time() - 60)
    elif tamper == "missing_sig":
        del query["sig"]
    r = registry.http.get(f"{path}?{urlencode(query)}")
    # A missing signature is a bad signature too (as documented), not a malformed request.
    assert (r.status_code, r.json()["code"]) == (403, "bad_signature")


def test_health_and_readiness(registry: Registry) -> None:
    """/readyz is 200 while both stores answer and 503 store_unavailable when one does not."""
    assert registry.http.get("/healthz").json() == {"status": "ok"}
    assert registry.http.get("/readyz").json() == {"status": "ready"}
    shutil.rmtree(registry.blobs.root)  # the blob folder disappears (e.g. an unmounted volume)
    r = registry.http.get("/readyz")
    assert (r.status_code, r.json()["code"]) == (503, "store_unavailable")
    assert registry.http.get("/healthz").status_code == 200  # alive, just not ready


def test_readiness_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # A PostgreSQL URL on a port where nothing listens.
    meta = SqlMetadataStore(Database.connect("postgresql+psycopg://u:p@127.0.0.1:9/none?connect_timeout=2"))
    settings = registry_settings(tmp_path)
    blobs = LocalBlobStore(tmp_path / "blobs", b"secret", settings.public_base_url)
    with TestClient(create_app(settings, metadata=meta, blobs=blobs)) as http:
        r = http.get("/readyz")
    assert (r.status_code, r.json()["code"]) == (503, "store_unavailable")
    assert "u:p" not in r.text  # the URL (and its password) stays in the server log


def test_unknown_route_is_a_problem_document(registry: Registry) -> None:
    r = registry.http.get("/v1/nothing-here", headers=registry.headers("read"))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert json.loads(r.content)["code"] == "route_not_found"


def test_latest_etag_names_the_version_even_when_content_is_identical(registry: Registry) -> None:
    """v2 with v1's exact content: a client holding `latest` = v1 must get v2 (200), not a 304
    that leaves it with a body saying version 1. Numbered versions keep the content-hash ETag."""
    headers = registry.headers("read")
    old = registry.http.get(f"{V}/latest/pack", headers=headers)
    assert old.headers["etag"] == f'"{registry.pack.content_hash}.v1"'
    # make_pack stamps the version into its images; a re-sealed copy differs only in version.
    same = registry.pack.model_copy(update={"version": 2}).sealed()
    assert same.content_hash == registry.pack.content_hash
    publish_pack(registry.meta, registry.blobs, same)
    time.sleep(registry.settings.latest_cache_ttl_s + 0.05)

    moved = registry.http.get(f"{V}/latest/pack", headers={**headers, "If-None-Match": old.headers["etag"]})
    assert moved.status_code == 200
    assert moved.headers["x-persona-version"] == "2"
    assert json.loads(moved.content)["version"] == 2
    assert moved.headers["etag"] == f'"{same.content_hash}.v2"'
    # A bare content hash says nothing about which version the client holds.
    bare = {**headers, "If-None-Match": f'"{same.content_hash}"'}
    assert registry.http.get(f"{V}/latest/pack", headers=bare).status_code == 200
    cond = {**headers, "If-None-Match": moved.headers["etag"]}
    current = registry.http.get(f"{V}/latest/pack", headers=cond)
    assert (current.status_code, current.headers["etag"]) == (304, moved.headers["etag"])

    for number in (1, 2):
        numbered = registry.http.get(f"{V}/{number}/pack", headers=headers)
        assert numbered.headers["etag"] == f'"{same.content_hash}"'
        assert json.loads(numbered.content)["version"] == number
    # The latest validator of v2 is current for /2 (same bytes) but not for /1 (another version).
    assert registry.http.get(f"{V}/2/pack", headers=cond).status_code == 304
    assert registry.http.get(f"{V}/1/pack", headers=cond).status_code == 200


@pytest.mark.parametrize("spec", ["²", "١", "1_0", " 1", "+1", "0", "-1", "1.0", "9" * 10, "9" * 30])
@pytest.mark.parametrize("route", ["/pack", ""])
def test_odd_version_specs_are_400_invalid_input(registry: Registry, spec: str, route: str) -> None:
    """Only `latest` or 1..9 ASCII digits name a version: superscripts, other scripts' digits,
    signs, underscores and huge numbers are a 400, never a 500 or another version's pack."""
    r = registry.http.get(f"{V}/{quote(spec)}{route}", headers=registry.headers("read"))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_input"), r.text


@pytest.mark.parametrize("sig", ["é", "%C3%A9", "A" * 64, "g" * 64, "0" * 63, "0" * 65])
def test_malformed_signature_is_403_bad_signature(registry: Registry, sig: str) -> None:
    """A signature that is not 64 lowercase hex characters is refused as bad_signature."""
    path, query = _signed(registry)
    r = registry.http.get(f"{path}?exp={query['exp']}&sig={quote(sig, safe='')}")
    assert (r.status_code, r.json()["code"]) == (403, "bad_signature")


def test_resolve_bytes_over_the_limit_is_refused_without_reading_the_blob(tmp_path: Path) -> None:
    """With the local store the size decides before any read: a blob over the limit answers 413
    even when its stored bytes are damaged (reading them would have been a 500)."""
    reg = make_registry(tmp_path, resolve_bytes_max=64)
    try:
        ref = _anchor_refs(reg)[0]
        reg.blobs.blob_path(ref).write_bytes(b"\x00" * 1000)  # damaged, and larger than 64 bytes
        body = {"ref": ref, "mode": "bytes"}
        r = reg.http.post("/v1/assets/resolve", json=body, headers=reg.headers("read"))
        assert (r.status_code, r.json()["code"]) == (413, "request_too_large")
    finally:
        reg.http.close()
        reg.meta.close()
