"""End to end through the registry: create a persona, upload the fixture photos and voices
over HTTP, let the upload manifest trigger the build, and use the published pack over HTTP
and gRPC, through signed URLs, and in PackCache.

Once on real PostgreSQL + a real S3 server (SeaweedFS), once on the embedded default
(SQLite + local folder) served by ``python -m registry_api`` in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import grpc
import httpx
import pytest

from persona_core.client import PackNotPublishedError, RegistryClient, RegistryPackSource, UploadItem
from persona_core.refs import parse_ref, sha256_hex
from persona_core.runtime import PackCache
from persona_core.schema import validate_pack_document
from persona_core.settings import Settings
from persona_core.store.metadata import SqlMetadataStore
from persona_pipeline.build import build_version
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.defs.sensors import upload_manifest_sensor
from persona_pipeline.partition_keys import partition_key
from registry_api.api_keys import create_key
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.server import BackgroundServer, reserve_socket

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.dagster, pytest.mark.models]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PHOTOS = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg"]
VOICES = ["a1.wav", "a2.wav"]
PERSONA = "obama"


def _flow(
    settings: Settings, base_url: str, grpc_target: str, keys: tuple[str, str], tmp: Path, url_prefix: str
) -> None:
    admin_key, read_key = keys
    with RegistryClient(base_url, admin_key) as admin, RegistryClient(base_url, read_key) as reader:
        assert admin.ready()
        admin.create_persona(PERSONA, {"display_name": "Barack Obama"})
        files = [UploadItem(n, (FIXTURES / "faces" / n).read_bytes(), "image/jpeg") for n in PHOTOS]
        files += [UploadItem(n, (FIXTURES / "voices" / n).read_bytes(), "audio/wav") for n in VOICES]
        manifest = {"files": {n: {"camera_mode": "A_SELFIE"} for n in PHOTOS}}
        accepted = admin.create_version(PERSONA, files, manifest=manifest)
        version = accepted.version
        assert accepted.status == "pending"
        with pytest.raises(PackNotPublishedError):
            reader.get_pack(PERSONA, version)

        # The upload wrote a manifest: the sensor turns it into a run request for this version.
        stores = StoresResource.from_settings(settings)
        with (
            dg.instance_for_test() as instance,
            dg.build_sensor_context(instance=instance, resources={"stores": stores}) as ctx,
        ):
            tick = upload_manifest_sensor(ctx)
        assert [r.partition_key for r in tick.run_requests] == [partition_key(PERSONA, version)]
        result = build_version(PERSONA, version, settings)
        assert result.success, result.record.reasons

        status = reader.wait_for_version(PERSONA, version, timeout_s=30)
        assert status.status == "published", status
        assert status.published_at
        assert status.content_hash

        http_pack = reader.get_pack(PERSONA, "latest")
        assert http_pack.version == version
        assert reader.get_pack(PERSONA, version, if_none_match=http_pack.etag).not_modified
        with grpc.insecure_channel(grpc_target) as channel:
            reply = pb_grpc.PersonaRegistryStub(channel).GetPersonaPack(
                pb.GetPersonaPackRequest(persona_id=PERSONA, version=str(version)),
                metadata=(("x-api-key", read_key),),
            )
        assert reply.pack_json == http_pack.body
        # A numbered version's ETag is its content hash; `latest` adds the version to it.
        assert reply.etag == f'"{status.content_hash}"'
        assert http_pack.etag == f'"{status.content_hash}.v{version}"'
        doc = json.loads(http_pack.body)
        validate_pack_document(doc)
        assert doc["content_hash"] == status.content_hash

        anchors = [a for mode in doc["anchor_sets"].values() for a in mode]
        assert len(anchors) >= 3
        for anchor in anchors:
            signed = reader.resolve_url(anchor["image_ref"], ttl_s=120)
            assert signed.url.startswith(url_prefix)
            data = httpx.get(signed.url, timeout=30).content  # no API key: the URL is the credential
            assert sha256_hex(data) == parse_ref(anchor["image_ref"]).digest

        cache = PackCache(tmp / "pack-cache", RegistryPackSource(reader))
        loaded = cache.load(PERSONA)
        assert loaded.version == version
        assert loaded.pack_ref == f"sha256:{sha256_hex(http_pack.body)}"


@pytest.mark.postgres
@pytest.mark.s3
def test_registry_end_to_end_on_postgres_and_s3(
    s3_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    """Upload -> sensor/build -> published -> HTTP == gRPC, schema-valid, S3-presigned anchors
    hash to their refs -> PackCache loads it; all on real PostgreSQL and real S3."""
    settings = ApiSettings(**{**s3_settings.model_dump(), "database_url": postgres_url, "home": tmp_path})
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    admin_key = create_key(meta, "e2e-admin", ["admin"])[1]
    read_key = create_key(meta, "e2e-reader", ["read"], persona_ids=[PERSONA])[1]
    meta.close()
    with BackgroundServer(settings) as server:
        keys = (admin_key, read_key)
        _flow(settings, server.base_url, server.grpc_target, keys, tmp_path, str(settings.s3_endpoint_url))


def test_registry_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    """The same flow on SQLite + a local folder, the registry started as its own process
    with the documented command (python -m registry_api); signed URLs are the registry's HMAC ones."""
    held = [reserve_socket(), reserve_socket()]  # two distinct free ports, released just before use
    http_port, grpc_port = (sock.getsockname()[1] for sock in held)
    base_url = f"http://127.0.0.1:{http_port}"
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")},
        "PERSONA_HOME": str(home),
        "PERSONA_ENV": "test",
        "PERSONA_PUBLIC_BASE_URL": base_url,
    }
    settings = ApiSettings(home=home, env="test", public_base_url=base_url)
    meta = SqlMetadataStore.open(settings.resolved_database_url)  # creates the schema, as `migrate` would
    admin_key = create_key(meta, "e2e-admin", ["admin"])[1]
    read_key = create_key(meta, "e2e-reader", ["read"])[1]
    meta.close()
    log_path = tmp_path / "registry.log"
    for sock in held:
        sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry_api", "--port", str(http_port), "--grpc-port", str(grpc_port)],
        env=env,
        cwd=tmp_path,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        grpc_target = f"127.0.0.1:{grpc_port}"
        _flow(settings, base_url, grpc_target, (admin_key, read_key), tmp_path, f"{base_url}/v1/blobs/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
