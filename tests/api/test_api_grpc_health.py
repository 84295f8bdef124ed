"""The gRPC port's infrastructure services: grpc.health.v1 follows the stores as /readyz does,
server reflection describes the registry to a client without the .proto, and TLS."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from pydantic import ValidationError
from registry_support import PUBLISHED, Registry, make_registry, registry_settings

from persona_core.store.engine import Database
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server
from registry_api.service import RegistryService

REGISTRY = "persona.registry.v1.PersonaRegistry"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTERVAL_S = 0.1


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Registry]:
    """A registry whose gRPC health looks at the stores every 0.1 s."""
    reg = make_registry(tmp_path, grpc_health_interval_s=INTERVAL_S)
    yield reg
    reg.http.close()
    reg.meta.close()


@contextmanager
def _serve(service: RegistryService) -> Iterator[grpc.Channel]:
    server, port = start_grpc_server(service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(grace=None)


def _status(channel: grpc.Channel, service: str = "") -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return reply.status


def _await(channel: grpc.Channel, want: int, service: str = "", within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while (got := _status(channel, service)) != want:
        assert time.monotonic() < deadline, f"health of {service!r} stayed {got}, wanted {want}"
        time.sleep(INTERVAL_S / 2)


def test_health_follows_the_blob_store(fast: Registry) -> None:
    """SERVING while both stores answer; NOT_SERVING (like /readyz's 503) once the blob folder is
    gone, for the server and for the registry service; SERVING again when it is back."""
    with _serve(fast.service) as channel:
        _await(channel, SERVING)
        assert _status(channel, REGISTRY) == SERVING
        shutil.rmtree(fast.blobs.root)  # the blob volume is gone
        assert fast.http.get("/readyz").status_code == 503
        _await(channel, NOT_SERVING)
        assert _status(channel, REGISTRY) == NOT_SERVING
        fast.blobs.root.mkdir()
        _await(channel, SERVING)
        assert fast.http.get("/readyz").status_code == 200
        with pytest.raises(grpc.RpcError) as unknown:
            _status(channel, "no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_is_not_serving_without_the_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A PostgreSQL URL where nothing listens: the port is up, the health answer is NOT_SERVING,
    and the log says which store did not answer."""
    meta = SqlMetadataStore(Database.connect("postgresql+psycopg://u:p@127.0.0.1:9/none?connect_timeout=2"))
    settings = registry_settings(tmp_path, grpc_health_interval_s=INTERVAL_S)
    blobs = LocalBlobStore(tmp_path / "blobs", b"secret", settings.public_base_url)
    with _serve(RegistryService(settings, meta, blobs)) as channel:
        time.sleep(0.5)  # a few looks at the stores (each refused at once)
        assert _status(channel) == NOT_SERVING
        assert _status(channel, REGISTRY) == NOT_SERVING
    looks = [r.getMessage() for r in caplog.records if r.name == "registry_api.grpc"]
    assert looks
    assert "NOT_SERVING" in looks[0]
    assert "u:p" not in "".join(looks)  # the URL's password stays out of the log


def test_reflection_lists_and_resolves_the_registry(fast: Registry) -> None:
    """A client without the .proto (grpcurl, a reflection client) finds the services and types."""
    with _serve(fast.service) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {REGISTRY, "grpc.health.v1.Health"} <= services
        pool = DescriptorPool(database)
        method = pool.FindServiceByName(REGISTRY).methods_by_name["ListPersonas"]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            "persona.registry.v1.ListPersonasRequest",
            "persona.registry.v1.ListPersonasResponse",
        )
        check = pool.FindMessageTypeByName("persona.registry.v1.CheckResult")
        assert check.fields_by_name["metadata"].message_type.full_name == "google.protobuf.Struct"
        assert pool.FindMethodByName(f"{REGISTRY}.WatchEvents").server_streaming  # its file is loaded now


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_round_trip(tmp_path: Path) -> None:
    """With a certificate and key set, the port speaks TLS only: a client trusting that
    certificate gets the persona and the health answer; a plaintext client gets nowhere."""
    cert, key = _self_signed(tmp_path)
    reg = make_registry(tmp_path / "home", grpc_tls_cert=cert, grpc_tls_key=key)
    server, port = start_grpc_server(reg.service, 0)
    trusted = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    secure = grpc.secure_channel(f"localhost:{port}", trusted)
    plain = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.PersonaRegistryStub(secure)
        reply = stub.GetPersona(
            pb.GetPersonaRequest(persona_id=PUBLISHED), metadata=(("x-api-key", reg.keys["read"]),)
        )
        assert (reply.persona_id, json.loads(reply.metadata_json)) == (PUBLISHED, {"display_name": "Alice"})
        _await(secure, SERVING)
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.PersonaRegistryStub(plain).GetPersona(
                pb.GetPersonaRequest(persona_id=PUBLISHED),
                metadata=(("x-api-key", reg.keys["read"]),),
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        secure.close()
        plain.close()
        server.stop(grace=None)
        reg.http.close()
        reg.meta.close()


def test_tls_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_GRPC_TLS_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("PERSONA_GRPC_TLS_KEY", str(tmp_path / "key.pem"))
    settings = ApiSettings(home=tmp_path)
    assert (settings.grpc_tls_cert, settings.grpc_tls_key) == (tmp_path / "cert.pem", tmp_path / "key.pem")
    monkeypatch.delenv("PERSONA_GRPC_TLS_KEY")
    with pytest.raises(ValidationError, match="PERSONA_GRPC_TLS_KEY go together"):
        ApiSettings(home=tmp_path)
