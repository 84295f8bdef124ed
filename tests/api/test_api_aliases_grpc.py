"""Aliases and retraction over gRPC, on the same service as HTTP: set, move, resolve, history,
rollback, delete; a lost race is ABORTED alias_conflict; a retracted version is served by its
number with the retraction in the reply, skipped by latest, and alias rules hold."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from registry_support import PUBLISHED, Registry

from persona_core.publish import publish_pack
from persona_core.testing import make_pack
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server
from registry_api.key_store import ApiKeyStore


@pytest.fixture
def stub(registry: Registry) -> Iterator[pb_grpc.PersonaRegistryStub]:
    server, port = start_grpc_server(registry.service)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.PersonaRegistryStub(channel)
    channel.close()
    server.stop(None)


def _code(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ())["error-code"]  # type: ignore[attr-defined]


def test_aliases_and_retraction_over_grpc(registry: Registry, stub: pb_grpc.PersonaRegistryStub) -> None:
    reg = registry
    reg.meta.create_version(PUBLISHED, {"files": []})
    publish_pack(reg.meta, reg.blobs, make_pack(reg.blobs, PUBLISHED, 3, n_anchors=6, seed=3))
    ops = (("x-api-key", ApiKeyStore.of(reg.meta).create_api_key("ops", ["promote"])[1]),)
    read = (("x-api-key", reg.keys["read"]),)
    build = (("x-api-key", reg.keys["build"]),)

    with pytest.raises(grpc.RpcError) as denied:
        stub.SetAlias(
            pb.SetAliasRequest(persona_id=PUBLISHED, name="live", version="1", reason="r"), metadata=build
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    made = stub.SetAlias(
        pb.SetAliasRequest(persona_id=PUBLISHED, name="live", version="1", reason="go"), metadata=ops
    )
    assert (made.HasField("from_version"), made.to_version) == (False, 1)
    assert made.actor.startswith("key:")
    pack = stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="live"), metadata=read)
    assert (pack.version, pack.etag) == (1, f'"{pack.content_hash}.v1"')

    with pytest.raises(grpc.RpcError) as lost:
        stub.SetAlias(
            pb.SetAliasRequest(persona_id=PUBLISHED, name="live", version="3", reason="r"), metadata=ops
        )
    assert (lost.value.code(), _code(lost.value)) == (grpc.StatusCode.ABORTED, "alias_conflict")
    stub.SetAlias(
        pb.SetAliasRequest(persona_id=PUBLISHED, name="live", version="3", expected_version=1, reason="v3"),
        metadata=ops,
    )
    assert stub.GetAlias(pb.GetAliasRequest(persona_id=PUBLISHED, name="live"), metadata=read).version == 3
    with pytest.raises(grpc.RpcError) as in_use:
        stub.RetractVersion(
            pb.RetractVersionRequest(persona_id=PUBLISHED, version=3, reason="bad"), metadata=ops
        )
    assert (in_use.value.code(), _code(in_use.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "alias_in_use")
    assert "live" in (in_use.value.details() or "")

    back = stub.RollbackAlias(
        pb.RollbackAliasRequest(persona_id=PUBLISHED, name="live", reason="back"), metadata=ops
    )
    assert (back.from_version, back.to_version) == (3, 1)
    history = stub.AliasHistory(pb.AliasHistoryRequest(persona_id=PUBLISHED, name="live"), metadata=read)
    assert [(m.to_version, m.reason) for m in history.moves] == [(1, "back"), (3, "v3"), (1, "go")]

    retracted = stub.RetractVersion(
        pb.RetractVersionRequest(persona_id=PUBLISHED, version=3, reason="bad"), metadata=ops
    )
    assert (retracted.status, retracted.retraction_reason) == ("retracted", "bad")
    assert retracted.retracted_at
    by_number = stub.GetPersonaPack(
        pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="3"), metadata=read
    )
    http = reg.http.get(f"/v1/personas/{PUBLISHED}/versions/3/pack", headers=reg.headers("read"))
    assert by_number.pack_json == http.content
    assert (by_number.retracted_at, by_number.retraction_reason) == (retracted.retracted_at, "bad")
    latest = stub.GetPersonaPack(
        pb.GetPersonaPackRequest(persona_id=PUBLISHED, version="latest"), metadata=read
    )
    assert (latest.version, latest.retracted_at) == (1, "")
    with pytest.raises(grpc.RpcError) as onto:
        stub.SetAlias(
            pb.SetAliasRequest(
                persona_id=PUBLISHED, name="live", version="3", expected_version=1, reason="r"
            ),
            metadata=ops,
        )
    assert _code(onto.value) == "invalid_status_transition"

    gone = stub.DeleteAlias(
        pb.DeleteAliasRequest(persona_id=PUBLISHED, name="live", expected_version=1, reason="done"),
        metadata=ops,
    )
    assert gone.HasField("to_version") is False
    listed = stub.ListAliases(pb.ListAliasesRequest(persona_id=PUBLISHED), metadata=read)
    assert list(listed.aliases) == []
