"""The gRPC service: same calls, same answers, same keys and error codes as HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlparse

import grpc
import pytest
from google.protobuf import json_format
from registry_support import OTHER, PUBLISHED, Registry, fixture_bytes, png_claiming

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


def test_version_checks_are_typed_messages(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    """Each check is a CheckResult message with the HTTP check's fields; checks_json stays for
    older clients."""
    http = registry.http.get(f"/v1/personas/{PUBLISHED}/versions/1", headers=registry.headers("read")).json()
    reply = stub.ListPersonaVersions(
        pb.ListPersonaVersionsRequest(persona_id=PUBLISHED), metadata=_md(registry, "read")
    )
    published = next(v for v in reply.versions if v.version == 1)
    typed = [
        {
            "name": c.name,
            "passed": c.passed,
            "severity": pb.CheckSeverity.Name(c.severity).removeprefix("CHECK_SEVERITY_"),
            "description": c.description,
            "metadata": json_format.MessageToDict(c.metadata),
        }
        for c in published.checks
    ]
    assert typed == http["checks"]
    assert typed[0]["metadata"] == {"observed": 6, "threshold": 3}  # numbers, not a JSON string
    assert json.loads(published.checks_json) == http["checks"]


def test_list_personas_over_grpc_pages_like_http(
    registry: Registry, stub: pb_grpc.PersonaRegistryStub
) -> None:
    """Same items, order and cursors as GET /v1/personas, page by page; a restricted key sees its own."""
    for pid in ("carol", "dave", "erin"):
        registry.meta.create_persona(pid, {"secret": pid})

    def http_pages(kind: str) -> list[tuple[list[tuple[str, datetime]], str | None]]:
        pages, after = [], None
        while True:
            params = {"limit": 2} | ({"after": after} if after else {})
            body = registry.http.get("/v1/personas", params=params, headers=registry.headers(kind)).json()
            pages.append(
                ([(i["persona_id"], _dt(i["created_at"])) for i in body["items"]], body["next_after"])
            )
            after = body["next_after"]
            if after is None:
                return pages

    def grpc_pages(kind: str) -> list[tuple[list[tuple[str, datetime]], str | None]]:
        pages, after = [], ""
        while True:
            reply = stub.ListPersonas(
                pb.ListPersonasRequest(limit=2, after=after), metadata=_md(registry, kind)
            )
            pages.append(([(i.persona_id, _dt(i.created_at)) for i in reply.items], reply.next_after or None))
            after = reply.next_after
            if not after:
                return pages

    pages = grpc_pages("read")
    assert pages == http_pages("read")
    assert [p for items, _ in pages for p, _ in items] == ["alice", "bob", "carol", "dave", "erin"]
    assert grpc_pages("other") == http_pages("other") == [([("bob", pages[0][0][1][1])], None)]
    default = stub.ListPersonas(pb.ListPersonasRequest(), metadata=_md(registry, "read"))
    assert (len(default.items), default.next_after) == (5, "")  # limit 0 = the HTTP default, 50


def test_get_persona_over_grpc_matches_http(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    http = registry.http.get(f"/v1/personas/{PUBLISHED}", headers=registry.headers("read")).json()
    reply = stub.GetPersona(pb.GetPersonaRequest(persona_id=PUBLISHED), metadata=_md(registry, "read"))
    assert (reply.persona_id, json.loads(reply.metadata_json), _dt(reply.created_at)) == (
        http["persona_id"],
        http["metadata"],
        _dt(http["created_at"]),
    )


def test_get_persona_over_grpc_after_erasure(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    """An erased persona: HTTP 410 persona_erased, gRPC NOT_FOUND with the same code and times."""
    stub.ErasePersona(
        pb.ErasePersonaRequest(persona_id=OTHER, reason="asked"), metadata=_md(registry, "admin")
    )
    http = registry.http.get(f"/v1/personas/{OTHER}", headers=registry.headers("read"))
    with pytest.raises(grpc.RpcError) as gone:
        stub.GetPersona(pb.GetPersonaRequest(persona_id=OTHER), metadata=_md(registry, "read"))
    trailing = dict(gone.value.trailing_metadata() or ())
    assert (http.status_code, http.json()["code"]) == (410, "persona_erased")
    assert (gone.value.code(), trailing["error-code"]) == (grpc.StatusCode.NOT_FOUND, "persona_erased")
    assert _dt(trailing["erased-at"]) == _dt(http.json()["erased_at"])
    listed = stub.ListPersonas(pb.ListPersonasRequest(), metadata=_md(registry, "read"))
    http_listed = registry.http.get("/v1/personas", headers=registry.headers("read")).json()
    assert [i.persona_id for i in listed.items] == [i["persona_id"] for i in http_listed["items"]]


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


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
        ("persona_no_key", None, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ("persona_unknown", "read", grpc.StatusCode.NOT_FOUND, "persona_not_found"),
        ("persona_other_key", "other", grpc.StatusCode.PERMISSION_DENIED, "persona_forbidden"),
        ("list_no_key", None, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ("list_limit_too_big", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ("list_limit_negative", "read", grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
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
        "persona_no_key": lambda: stub.GetPersona(pb.GetPersonaRequest(persona_id=PUBLISHED), metadata=md),
        "persona_unknown": lambda: stub.GetPersona(pb.GetPersonaRequest(persona_id="nobody"), metadata=md),
        "persona_other_key": lambda: stub.GetPersona(pb.GetPersonaRequest(persona_id=PUBLISHED), metadata=md),
        "list_no_key": lambda: stub.ListPersonas(pb.ListPersonasRequest(), metadata=md),
        "list_limit_too_big": lambda: stub.ListPersonas(pb.ListPersonasRequest(limit=501), metadata=md),
        "list_limit_negative": lambda: stub.ListPersonas(pb.ListPersonasRequest(limit=-1), metadata=md),
    }
    with pytest.raises(grpc.RpcError) as info:
        calls[call]()
    assert info.value.code() == status  # type: ignore[attr-defined]
    assert _code(info.value) == code
    assert registry.meta.list_versions(PUBLISHED) == before
