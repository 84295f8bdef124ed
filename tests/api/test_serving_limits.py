"""What the registry gives a client that misbehaves: wrong keys are logged and throttled per
client IP (429 + Retry-After; gRPC RESOURCE_EXHAUSTED), uploads over gRPC never hold the
threads reads need, HEAD answers wherever GET does, and a blob URL without its signature is
the documented 403 ``bad_signature``. (Slow clients against a real ``serve``:
test_slow_clients.py.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi.testclient import TestClient
from registry_support import OTHER, PUBLISHED, Registry, fixture_bytes, make_registry

from persona_core.signing import sign_blob_url
from registry_api.errors import PROBLEM_JSON
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server
from registry_api.server import BackgroundServer

WRONG = "pk_0123456789abcdef_notthesecretatall"


def test_wrong_keys_are_logged_by_key_id_then_throttled_per_client(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    limit = registry.settings.auth_failure_limit
    url = f"/v1/personas/{PUBLISHED}/versions/latest/pack"
    with caplog.at_level(logging.WARNING, logger="registry_api.auth"):
        codes = [registry.http.get(url, headers={"X-API-Key": WRONG}).status_code for _ in range(limit)]
    assert codes == [401] * limit
    lines = [r.getMessage() for r in caplog.records if r.name == "registry_api.auth"]
    assert len(lines) == limit
    assert all("0123456789abcdef" in line and "testclient" in line for line in lines)
    assert not any("notthesecret" in line for line in caplog.text.splitlines())
    # Past the limit: 429 with Retry-After, even for a good key from the same client...
    for headers in ({"X-API-Key": WRONG}, registry.headers("read")):
        r = registry.http.get(url, headers=headers)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith(PROBLEM_JSON)
        assert r.json()["code"] == "too_many_auth_failures"
        assert int(r.headers["Retry-After"]) == int(registry.settings.auth_failure_window_s)
    # ...and for a body-carrying route, refused before its body is read.
    r = registry.http.post("/v1/personas", json={"persona_id": "x"}, headers=registry.headers("admin"))
    assert r.status_code == 429
    assert "Retry-After" in r.headers
    # Another client IP is not throttled.
    other = TestClient(registry.http.app, client=("10.1.2.3", 40000))
    assert other.get(url, headers=registry.headers("read")).status_code == 200
    assert other.get(url, headers={"X-API-Key": WRONG}).status_code == 401


def test_a_missing_key_is_401_and_never_throttled(registry: Registry) -> None:
    for _ in range(registry.settings.auth_failure_limit + 5):
        assert registry.http.get("/v1/personas").status_code == 401
    assert registry.http.get("/v1/personas", headers=registry.headers("read")).status_code == 200


def test_throttle_lifts_after_a_quiet_window(tmp_path: Path) -> None:
    reg = make_registry(tmp_path, auth_failure_limit=2, auth_failure_window_s=0.5)
    try:
        for _ in range(2):
            assert reg.http.get("/v1/personas", headers={"X-API-Key": WRONG}).status_code == 401
        assert reg.http.get("/v1/personas", headers=reg.headers("read")).status_code == 429
        time.sleep(0.7)
        assert reg.http.get("/v1/personas", headers=reg.headers("read")).status_code == 200
    finally:
        reg.http.close()
        reg.meta.close()


@pytest.fixture
def grpc_registry(tmp_path: Path) -> Iterator[tuple[Registry, pb_grpc.PersonaRegistryStub]]:
    reg = make_registry(tmp_path, auth_failure_limit=3)
    server, port = start_grpc_server(reg.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield reg, pb_grpc.PersonaRegistryStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)
        reg.http.close()
        reg.meta.close()


def test_grpc_throttles_wrong_keys_with_resource_exhausted(
    grpc_registry: tuple[Registry, pb_grpc.PersonaRegistryStub],
) -> None:
    reg, stub = grpc_registry
    request = pb.GetPersonaPackRequest(persona_id=PUBLISHED)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetPersonaPack(request, metadata=(("x-api-key", WRONG),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPersonaPack(request, metadata=(("x-api-key", reg.keys["read"]),))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    trailing = dict(err.value.trailing_metadata() or ())  # type: ignore[attr-defined]
    assert trailing["error-code"] == "too_many_auth_failures"
    assert trailing["retry-after"] == str(int(reg.settings.auth_failure_window_s))


def test_grpc_reads_answer_while_uploads_hold_their_threads(
    grpc_registry: tuple[Registry, pb_grpc.PersonaRegistryStub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten uploads that do not finish (a stalled check) leave GetPersonaPack its threads: it
    answered after 17 s when uploads and reads shared the server's 8 threads."""
    reg, stub = grpc_registry
    release = threading.Event()
    started = threading.Semaphore(0)
    check = reg.service.check_can_upload

    def stalled(*args: object) -> None:
        started.release()
        release.wait(30)
        check(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reg.service, "check_can_upload", stalled)
    upload = pb.CreatePersonaVersionRequest(
        persona_id=OTHER,
        files=[
            pb.UploadFile(name="a.jpg", data=fixture_bytes("faces", "obama.jpg"), content_type="image/jpeg")
        ],
    )
    build = (("x-api-key", reg.keys["build"]),)
    pool = ThreadPoolExecutor(10)
    try:
        uploads = [
            pool.submit(stub.CreatePersonaVersion, upload, metadata=build, timeout=60) for _ in range(10)
        ]
        assert started.acquire(timeout=10)  # at least one upload is inside the service
        time.sleep(0.3)  # and the rest have had time to take whatever threads they get
        reply = stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED),
            metadata=(("x-api-key", reg.keys["read"]),),
            timeout=5,
        )
        assert reply.version == 1
    finally:
        release.set()
        for future in uploads:
            future.exception(timeout=60)
        pool.shutdown()


def test_head_answers_wherever_get_does(registry: Registry) -> None:
    pack_url = f"/v1/personas/{PUBLISHED}/versions/1/pack"
    get = registry.http.get(pack_url, headers=registry.headers("read"))
    head = registry.http.head(pack_url, headers=registry.headers("read"))
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == get.headers["content-length"]
    # No key: the same 401 a GET gets.
    assert registry.http.head(pack_url).status_code == 401
    # A POST-only path: 405 naming what it allows; a GET path's Allow names HEAD too.
    r = registry.http.head("/v1/assets/resolve")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    r = registry.http.delete("/v1/personas", headers=registry.headers("admin"))
    assert {"GET", "HEAD", "POST"} <= set(r.headers["allow"].replace(" ", "").split(","))


def test_head_healthz_through_the_real_server(tmp_path: Path) -> None:
    """What a load balancer sends, over a real socket to uvicorn."""
    reg = make_registry(tmp_path)
    try:
        with BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs, with_grpc=False) as server:
            for path in ("/healthz", "/readyz"):
                r = httpx.head(server.base_url + path, timeout=5)
                assert (r.status_code, r.content) == (200, b""), path
    finally:
        reg.http.close()
        reg.meta.close()


def _digest(reg: Registry) -> str:
    return next(iter(reg.pack.anchor_sets.values()))[0].image_ref.removeprefix("sha256:").split("#")[0]


@pytest.mark.parametrize(
    "query",
    ["", "?exp=9999999999", "?sig=" + "0" * 64, "?exp=soon&sig=" + "0" * 64, "?exp=-1&sig=" + "0" * 64],
    ids=["no_exp_no_sig", "no_sig", "no_exp", "exp_not_a_number", "negative_exp"],
)
def test_blob_url_without_a_valid_signature_is_403_bad_signature(registry: Registry, query: str) -> None:
    r = registry.http.get(f"/v1/blobs/{_digest(registry)}{query}")
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "bad_signature"


def test_blob_url_with_a_digest_that_is_not_hex_is_403(registry: Registry) -> None:
    signed = sign_blob_url(
        "", registry.settings.signing_secret.get_secret_value().encode(), f"sha256:{_digest(registry)}", 60
    )
    assert registry.http.get(signed).status_code == 200
    r = registry.http.get(signed.replace(_digest(registry), "Z" * 64))
    assert (r.status_code, r.json()["code"]) == (403, "bad_signature")
