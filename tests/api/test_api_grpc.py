"""The gRPC service: same five calls, same answers, same keys and error codes as HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import grpc
import pytest
from registry_support import PUBLISHED, Registry, fixture_bytes, png_claiming

from persona_core.publish import publish_pack
from persona_core.refs import sha256_hex
from persona_core.signing import MAX_TTL_S
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server


@pytest.fixture
def stub(registry: Registry) -> Iterator[pb_grpc.PersonaRegistryStub]:
    server, port = start_grpc_server(registry.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.PersonaRegistryStub(channel)
    channel.close()
    server.stop(grace=None)


def _md(registry: Registry, kind: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", registry.keys[kind]),)


def _code(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ())["error-code"]  # type: ignore[attr-defined]


def test_pack_over_grpc_is_byte_identical_to_http(
    registry: Registry, stub: pb_grpc.PersonaRegistryStub
) -> None:
    for version in ("1", "latest"):
        http = registry.http.get(
            f"/v1/personas/{PUBLISHED}/versions/{version}/pack", headers=registry.headers("read")
        )
        reply = stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, version=version), metadata=_md(registry, "read")
        )
        assert reply.pack_json == http.content
        assert reply.etag == http.headers["etag"]
        assert reply.version == 1
    cached = stub.GetPersonaPack(
        pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="1", if_none_match=http.headers["etag"]),
        metadata=_md(registry, "read"),
    )
    assert cached.not_modified
    assert cached.pack_json == b""


def test_grpc_latest_etag_names_the_version(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    """As over HTTP: with v2 identical in content to v1, v1's `latest` etag is not current."""
    md = _md(registry, "read")
    old = stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id=PUBLISHED), metadata=md)
    assert old.etag == f'"{registry.pack.content_hash}.v1"'
    same = registry.pack.model_copy(update={"version": 2}).sealed()  # v1's content, version 2
    publish_pack(registry.meta, registry.blobs, same)
    time.sleep(registry.settings.latest_cache_ttl_s + 0.05)
    for stale in (old.etag, registry.pack.content_hash, f'"{registry.pack.content_hash}"'):
        moved = stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, if_none_match=stale), metadata=md
        )
        assert (moved.not_modified, moved.version) == (False, 2), stale
        assert json.loads(moved.pack_json)["version"] == 2
    current = stub.GetPersonaPack(
        pb.GetPersonaPackRequest(persona_id=PUBLISHED, if_none_match=moved.etag), metadata=md
    )
    assert current.not_modified


def test_versions_over_grpc_match_http(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    http = registry.http.get(f"/v1/personas/{PUBLISHED}/versions", headers=registry.headers("read")).json()
    reply = stub.ListPersonaVersions(
        pb.ListPersonaVersionsRequest(persona_id=PUBLISHED), metadata=_md(registry, "read")
    )
    assert [(v.version, v.status, v.content_hash or None) for v in reply.versions] == [
        (v["version"], v["status"], v["content_hash"]) for v in http["items"]
    ]
    assert json.loads(reply.versions[0].checks_json) == http["items"][0]["checks"]


def _anchor_ref(registry: Registry) -> str:
    return next(iter(registry.pack.anchor_sets.values()))[0].image_ref


def test_resolve_asset_over_grpc(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    ref = _anchor_ref(registry)
    url_reply = stub.ResolveAsset(pb.ResolveAssetRequest(ref=ref, ttl_s=60), metadata=_md(registry, "read"))
    url = urlparse(url_reply.url)
    fetched = registry.http.get(f"{url.path}?{url.query}")
    assert f"sha256:{sha256_hex(fetched.content)}" == ref
    data_reply = stub.ResolveAsset(
        pb.ResolveAssetRequest(ref=ref, mode=pb.RESOLVE_MODE_BYTES), metadata=_md(registry, "read")
    )
    assert data_reply.data == fetched.content


def test_create_persona_and_version_over_grpc(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    persona = stub.CreatePersona(
        pb.CreatePersonaRequest(persona_id="carol", metadata_json='{"a": 1}'), metadata=_md(registry, "admin")
    )
    assert (persona.persona_id, json.loads(persona.metadata_json)) == ("carol", {"a": 1})
    version = stub.CreatePersonaVersion(
        pb.CreatePersonaVersionRequest(
            persona_id="carol",
            files=[pb.UploadFile(name="front.jpg", data=fixture_bytes("faces", "obama1.jpg"))],
            manifest_json=json.dumps({"files": {"front.jpg": {"camera_mode": "B_MIRROR"}}}),
        ),
        metadata=_md(registry, "build"),
    )
    assert (version.version, version.status) == (1, "pending")
    http = registry.http.get("/v1/personas/carol/versions/1", headers=registry.headers("read")).json()
    assert http["status"] == "pending"


@pytest.mark.parametrize(
    ("call", "kind", "status", "code"),
    [
        ("pack_no_key", None, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ("pack_other_persona", "other", grpc.StatusCode.PERMISSION_DENIED, "persona_forbidden"),
        ("pack_pending", "read", grpc.StatusCode.NOT_FOUND, "pack_not_published"),
        ("create_read_key", "read", grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope"),
        ("create_exists", "admin", grpc.StatusCode.ALREADY_EXISTS, "already_exists"),
        ("upload_traversal", "build", grpc.StatusCode.INVALID_ARGUMENT, "invalid_name"),
        ("upload_text", "build", grpc.StatusCode.INVALID_ARGUMENT, "unsupported_media_type"),
        ("resolve_bad_ref", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("resolve_ttl_too_long", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("resolve_ttl_negative", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("pack_superscript_version", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("pack_huge_version", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("upload_image_bomb", "build", grpc.StatusCode.RESOURCE_EXHAUSTED, "image_too_large"),
    ],
)
def test_grpc_errors_carry_status_and_code(
    registry: Registry,
    stub: pb_grpc.PersonaRegistryStub,
    call: str,
    kind: str | None,
    status: grpc.StatusCode,
    code: str,
) -> None:
    """Refusals map to gRPC statuses with the HTTP API's stable code in `error-code`."""
    md = _md(registry, kind) if kind else ()
    before = registry.meta.list_versions(PUBLISHED)
    calls = {
        "pack_no_key": lambda: stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED), metadata=md
        ),
        "pack_other_persona": lambda: stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="1"), metadata=md
        ),
        "pack_pending": lambda: stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="2"), metadata=md
        ),
        "create_read_key": lambda: stub.CreatePersona(pb.CreatePersonaRequest(persona_id="x"), metadata=md),
        "create_exists": lambda: stub.CreatePersona(
            pb.CreatePersonaRequest(persona_id=PUBLISHED), metadata=md
        ),
        "upload_traversal": lambda: stub.CreatePersonaVersion(
            pb.CreatePersonaVersionRequest(
                persona_id=PUBLISHED,
                files=[pb.UploadFile(name="../x.jpg", data=fixture_bytes("faces", "obama1.jpg"))],
            ),
            metadata=md,
        ),
        "upload_text": lambda: stub.CreatePersonaVersion(
            pb.CreatePersonaVersionRequest(
                persona_id=PUBLISHED, files=[pb.UploadFile(name="x.jpg", data=b"just text, not a photo")]
            ),
            metadata=md,
        ),
        "resolve_bad_ref": lambda: stub.ResolveAsset(pb.ResolveAssetRequest(ref="nope"), metadata=md),
        "upload_image_bomb": lambda: stub.CreatePersonaVersion(
            pb.CreatePersonaVersionRequest(
                persona_id=PUBLISHED, files=[pb.UploadFile(name="bomb.png", data=png_claiming(30000, 30000))]
            ),
            metadata=md,
        ),
        "resolve_ttl_too_long": lambda: stub.ResolveAsset(
            pb.ResolveAssetRequest(ref=_anchor_ref(registry), ttl_s=MAX_TTL_S + 1), metadata=md
        ),
        "resolve_ttl_negative": lambda: stub.ResolveAsset(
            pb.ResolveAssetRequest(ref=_anchor_ref(registry), ttl_s=-5), metadata=md
        ),
        "pack_superscript_version": lambda: stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="²"), metadata=md
        ),
        "pack_huge_version": lambda: stub.GetPersonaPack(
            pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="9" * 30), metadata=md
        ),
    }
    with pytest.raises(grpc.RpcError) as info:
        calls[call]()
    assert info.value.code() == status  # type: ignore[attr-defined]
    assert _code(info.value) == code
    assert registry.meta.list_versions(PUBLISHED) == before
