"""Erasure through every door (HTTP, gRPC, the CLI, the client), on SQLite + folder and
PostgreSQL + S3: the erased subject answers 410 Gone with the erasure's times, a second call
reports it done, only an admin with a reason may erase, a refused call changes nothing, and a
persona sharing one photo with the erased one keeps its pack and every blob."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from registry_support import FIXTURES
from services import settings_env
from typer.testing import CliRunner

from persona_cli.common import ExitCode
from persona_cli.main import app as cli
from persona_core.api_models import ErasureOut
from persona_core.client import RegistryClient, RegistryError
from persona_core.errors import InvalidInputError, PersonaErasedError, VersionErasedError
from persona_core.ingest import submit_version
from persona_core.publish import publish_pack
from persona_core.refs import sha256_hex
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore, VersionStatus
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app
from registry_api.server import BackgroundServer, reserve_socket
from registry_api.service import RegistryService

ALICE_ONLY, SHARED, BOB_ONLY = "obama.jpg", "obama1.jpg", "biden.jpg"
REASON = "data subject request 42"
runner = CliRunner()


@dataclass
class World:
    """alice: v1 published (her own photo and one shared with bob), v2 published (her photo);
    bob: v1 published (the shared photo and his own)."""

    settings: ApiSettings
    meta: MetadataStore
    blobs: BlobStore
    http: TestClient
    service: RegistryService
    keys: dict[str, str]

    def h(self, kind: str | None) -> dict[str, str]:
        return {} if kind is None else {"X-API-Key": self.keys[kind]}

    def get(self, path: str, kind: str | None = "read") -> Any:
        return self.http.get(path, headers=self.h(kind))

    def delete(self, path: str, kind: str | None = "admin", **body: Any) -> Any:
        return self.http.request("DELETE", path, headers=self.h(kind), **body)


def _photo(name: str) -> tuple[str, bytes, str]:
    return name, (FIXTURES / "faces" / name).read_bytes(), "image"


def _ref(name: str) -> str:
    return f"sha256:{sha256_hex((FIXTURES / 'faces' / name).read_bytes())}"


@pytest.fixture(
    params=[
        pytest.param("embedded", id="sqlite-folder"),
        pytest.param("servers", id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ]
)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> ApiSettings:
    base: dict[str, Any] = {"env": "test", "home": tmp_path, "public_base_url": "http://testserver"}
    if request.param == "servers":
        s3: Settings = request.getfixturevalue("s3_settings")
        base |= {**s3.model_dump(), **base, "database_url": request.getfixturevalue("postgres_url")}
    return ApiSettings(**base)


@pytest.fixture
def world(store_settings: ApiSettings) -> Iterator[World]:
    meta, blobs = open_metadata_store(store_settings), open_blob_store(store_settings)
    keys = {
        "read": ApiKeyStore.of(meta).create_api_key("reader", ["read"])[1],
        "build": ApiKeyStore.of(meta).create_api_key("builder", ["build"])[1],
        "admin": ApiKeyStore.of(meta).create_api_key("admin", ["admin"])[1],
        "bob-admin": ApiKeyStore.of(meta).create_api_key("bob-admin", ["admin"], persona_ids=["bob"])[1],
    }
    meta.create_persona("alice", {"display_name": "Alice A."})
    meta.create_persona("bob", {})
    submit_version(meta, blobs, "alice", [_photo(ALICE_ONLY), _photo(SHARED)])
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1, seed=1))
    submit_version(meta, blobs, "alice", [_photo(ALICE_ONLY)])
    publish_pack(meta, blobs, make_pack(blobs, "alice", 2, seed=3))
    submit_version(meta, blobs, "bob", [_photo(SHARED), _photo(BOB_ONLY)])
    publish_pack(meta, blobs, make_pack(blobs, "bob", 1, seed=2))
    app = create_app(store_settings, metadata=meta, blobs=blobs)
    with TestClient(app) as http:
        yield World(store_settings, meta, blobs, http, app.state.service, keys)
    meta.close()
    blobs.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures root logging; put it back for the tests that follow."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def _warm(w: World, persona_id: str = "alice") -> dict[str, bytes]:
    """Read every pack of the persona (so this worker caches it) and resolve a blob of each."""
    packs = {}
    for version in ("1", "2", "latest") if persona_id == "alice" else ("1", "latest"):
        r = w.get(f"/v1/personas/{persona_id}/versions/{version}/pack")
        assert r.status_code == 200, r.text
        packs[version] = r.content
        anchor = next(iter(json.loads(r.content)["anchor_sets"].values()))[0]
        assert _resolve(w, anchor["image_ref"]).status_code == 200
    return packs


def _resolve(w: World, ref: str, mode: str = "url") -> Any:
    return w.http.post("/v1/assets/resolve", headers=w.h("read"), json={"ref": ref, "mode": mode})


def _bob_is_whole(w: World, packs: dict[str, bytes]) -> None:
    """Bob's pack is served as it was and every blob it names, and his photos, are there."""
    r = w.get("/v1/personas/bob/versions/1/pack")
    assert (r.status_code, r.content) == (200, packs["1"])
    record = w.meta.get_published("bob", 1)
    for ref in [record.pack_ref, *record.blob_refs]:
        assert w.blobs.exists(ref.partition("#")[0]), ref
    assert w.blobs.exists(_ref(SHARED))
    assert w.blobs.exists(_ref(BOB_ONLY))


def _gone(response: Any, code: str) -> dict[str, Any]:
    assert response.status_code == 410, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["code"] == code
    datetime.fromisoformat(doc["started_at"])
    return doc


def test_erasing_a_persona_over_http(world: World) -> None:
    """Refused calls change nothing; an admin's DELETE with a reason erases alice: every read of
    her answers 410 with the erasure's times, her own blobs are gone, bob (who shares a photo)
    is whole, a second DELETE reports the finished erasure and her id is never reused."""
    w = world
    alice = _warm(w)
    bob = _warm(w, "bob")
    refused = [
        (w.delete("/v1/personas/alice"), 422, "invalid_request"),  # no body: no reason
        (w.delete("/v1/personas/alice", json={}), 422, "invalid_request"),
        (w.delete("/v1/personas/alice", json={"reason": "  "}), 400, "invalid_input"),
        (w.delete("/v1/personas/alice", json={"reason": "x" * 1001}), 400, "invalid_input"),
        (w.delete("/v1/personas/alice", kind=None, json={"reason": REASON}), 401, "unauthenticated"),
        (w.delete("/v1/personas/alice", kind="read", json={"reason": REASON}), 403, "insufficient_scope"),
        (w.delete("/v1/personas/alice", kind="build", json={"reason": REASON}), 403, "insufficient_scope"),
        (w.delete("/v1/personas/alice", kind="bob-admin", json={"reason": REASON}), 403, "persona_forbidden"),
        (w.delete("/v1/personas/nobody", json={"reason": REASON}), 404, "persona_not_found"),
    ]
    for response, status, code in refused:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert w.meta.tombstones.job_for("alice") is None  # nothing started
    assert w.get("/v1/personas/alice/versions/latest/pack").content == alice["latest"]
    assert w.blobs.exists(_ref(ALICE_ONLY))

    started = time.monotonic()
    r = w.delete("/v1/personas/alice", json={"reason": REASON})
    assert r.status_code == 200, r.text
    report = ErasureOut.model_validate(r.json())
    assert (report.state, report.versions, report.version) == ("erased", [1, 2], None)
    assert not report.already_erased
    assert report.actor == "key:admin"
    assert report.blobs_deleted > 0
    assert report.kept_shared >= 1  # the photo bob holds too
    assert ".personapack" in report.note
    assert time.monotonic() - started >= w.settings.erasure_wait_s  # waited out the workers' looks

    p = "/v1/personas/alice"
    for path in (p, f"{p}/versions", f"{p}/versions/1", f"{p}/versions/2", f"{p}/versions/latest",
                 f"{p}/versions/1/pack", f"{p}/versions/2/pack", f"{p}/versions/latest/pack"):
        doc = _gone(w.get(path), "persona_erased")
        assert datetime.fromisoformat(doc["started_at"]) == report.started_at, path
        assert datetime.fromisoformat(doc["erased_at"]) == report.finished_at, path
    assert "Alice" not in w.get(p).text
    for anchor_sets in (json.loads(alice["1"])["anchor_sets"], json.loads(alice["2"])["anchor_sets"]):
        ref = next(iter(anchor_sets.values()))[0]["image_ref"]
        for mode in ("url", "bytes"):
            resolved = _resolve(w, ref, mode)
            assert (resolved.status_code, resolved.json()["code"]) == (404, "blob_not_found"), mode
    assert not w.blobs.exists(_ref(ALICE_ONLY))
    _bob_is_whole(w, bob)

    again = w.delete("/v1/personas/alice", json={"reason": "again"})
    assert again.status_code == 200
    assert again.json()["already_erased"] is True
    assert again.json()["finished_at"] == r.json()["finished_at"]
    covered = w.delete("/v1/personas/alice/versions/1", json={"reason": "again"})
    assert covered.json()["already_erased"] is True

    created = w.http.post("/v1/personas", headers=w.h("admin"), json={"persona_id": "alice"})
    assert (created.status_code, created.json()["code"]) == (409, "already_exists")
    assert "not reused" in created.json()["detail"]
    listed = w.get("/v1/personas").json()["items"]
    assert [p["persona_id"] for p in listed] == ["bob"]


def test_erasing_a_version_over_http(world: World) -> None:
    """DELETE of alice v2: v2 answers 410 version_erased, `latest` moves to v1, what v1 also
    holds stays, the list keeps v2 as a tombstone without content."""
    w = world
    alice = _warm(w)
    assert w.delete("/v1/personas/alice/versions/latest", json={"reason": REASON}).status_code == 400
    missing = w.delete("/v1/personas/alice/versions/9", json={"reason": REASON})
    assert (missing.status_code, missing.json()["code"]) == (404, "version_not_found")
    assert w.delete("/v1/personas/alice/versions/2", kind="read", json={"reason": REASON}).status_code == 403
    assert w.delete("/v1/personas/alice/versions/2", json={"reason": ""}).status_code == 400
    assert w.get("/v1/personas/alice/versions/2").json()["status"] == "published"

    r = w.delete("/v1/personas/alice/versions/2", json={"reason": REASON})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["version"], report["versions"], report["state"]) == (2, [2], "erased")

    for path in ("/v1/personas/alice/versions/2", "/v1/personas/alice/versions/2/pack"):
        doc = _gone(w.get(path), "version_erased")
        assert datetime.fromisoformat(doc["started_at"]) == datetime.fromisoformat(report["started_at"])
        assert datetime.fromisoformat(doc["erased_at"]) == datetime.fromisoformat(report["finished_at"])
    latest = w.get("/v1/personas/alice/versions/latest/pack")
    assert (latest.status_code, latest.content) == (200, alice["1"])
    assert latest.headers["content-location"].endswith("/versions/1/pack")
    assert w.get("/v1/personas/alice/versions/latest").json()["version"] == 1
    assert w.get("/v1/personas/alice/versions/1/pack").content == alice["1"]
    assert w.get("/v1/personas/alice").status_code == 200
    items = {v["version"]: v for v in w.get("/v1/personas/alice/versions").json()["items"]}
    assert (items[2]["status"], items[2]["inputs"], items[2]["checks"], items[2]["content_hash"]) == (
        "erased", {}, [], None)
    assert items[1]["status"] == "published"
    assert w.blobs.exists(_ref(ALICE_ONLY))  # v1 holds it too

    again = w.delete("/v1/personas/alice/versions/2", json={"reason": REASON})
    assert (again.status_code, again.json()["already_erased"]) == (200, True)


def test_reads_are_gone_from_the_start_of_an_erasure(world: World) -> None:
    """An erasure that started (and then stopped: a crash) already answers 410 with no end time,
    the cached pack and resolve included; DELETE then resumes that same job."""
    w = world
    alice = _warm(w)
    anchor = next(iter(json.loads(alice["1"])["anchor_sets"].values()))[0]
    job = w.meta.tombstones.start("alice", None, actor="test", reason=REASON)
    time.sleep(w.settings.erasure_wait_s)  # the workers' look at the erasure log
    doc = _gone(w.get("/v1/personas/alice/versions/1/pack"), "persona_erased")
    assert doc["erased_at"] is None
    _gone(w.get("/v1/personas/alice/versions/latest/pack"), "persona_erased")
    assert w.blobs.exists(anchor["image_ref"])  # not deleted yet, but never handed out again
    _gone(_resolve(w, anchor["image_ref"]), "persona_erased")
    feed = w.get("/v1/erasures").json()
    assert feed["items"] == []  # lists finished erasures only

    r = w.delete("/v1/personas/alice", json={"reason": "resumed"})
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["started_at"]) == job.started_at
    assert r.json()["already_erased"] is False


def test_erasure_feed_for_renderer_fleets(world: World) -> None:
    """GET /v1/erasures lists finished erasures (no reason, no actor) for a read key; a key
    restricted to bob does not see alice's; `since` pages forward."""
    w = world
    before = datetime.now().astimezone() - timedelta(seconds=1)
    assert w.delete("/v1/personas/alice/versions/2", json={"reason": REASON}).status_code == 200
    assert w.delete("/v1/personas/alice", json={"reason": REASON}).status_code == 200
    feed = w.get("/v1/erasures").json()
    assert [(i["persona_id"], i["version"], i["versions"]) for i in feed["items"]] == [
        ("alice", 2, [2]), ("alice", None, [1, 2])]
    assert REASON not in json.dumps(feed)
    assert set(feed["items"][0]) == {"persona_id", "version", "versions", "started_at", "erased_at"}
    assert feed["next_since"] is None
    first = w.get("/v1/erasures?limit=1").json()
    assert len(first["items"]) == 1
    rest = w.http.get("/v1/erasures", params={"since": first["next_since"]}, headers=w.h("read")).json()
    assert [i["version"] for i in rest["items"]] == [None]
    since_before = w.http.get("/v1/erasures", params={"since": before.isoformat()}, headers=w.h("read"))
    assert len(since_before.json()["items"]) == 2
    assert w.get("/v1/erasures", kind="bob-admin").json()["items"] == []
    assert w.get("/v1/erasures", kind=None).status_code == 401


def _md(w: World, kind: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", w.keys[kind]),)


def _trailing(err: grpc.RpcError) -> dict[str, str]:
    return dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]


def test_erasure_over_grpc(world: World) -> None:
    """ErasePersona: admin and a reason required (same codes as HTTP); afterwards the reads
    answer NOT_FOUND persona_erased / version_erased with the times in trailing metadata."""
    w = world
    bob = _warm(w, "bob")
    server, port = start_grpc_server(w.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.PersonaRegistryStub(channel)
    read = _md(w, "read")
    try:
        for kind, request, status, code in (
            ("read", pb.ErasePersonaRequest(persona_id="alice", reason=REASON),
             grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope"),
            ("admin", pb.ErasePersonaRequest(persona_id="alice", reason=" "),
             grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
            ("admin", pb.ErasePersonaRequest(persona_id="alice", version=0, reason=REASON),
             grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
            ("admin", pb.ErasePersonaRequest(persona_id="nobody", reason=REASON),
             grpc.StatusCode.NOT_FOUND, "persona_not_found"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ErasePersona(request, metadata=_md(w, kind))
            assert (refused.value.code(), _trailing(refused.value)["error-code"]) == (status, code)  # type: ignore[attr-defined]
        assert w.meta.tombstones.job_for("alice") is None

        v2 = stub.ErasePersona(pb.ErasePersonaRequest(persona_id="alice", version=2, reason=REASON),
                               metadata=_md(w, "admin"))
        assert (v2.HasField("version"), v2.version, list(v2.versions), v2.state) == (True, 2, [2], "erased")
        with pytest.raises(grpc.RpcError) as gone:
            stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id="alice", version="2"), metadata=read)
        meta = _trailing(gone.value)
        assert (gone.value.code(), meta["error-code"]) == (grpc.StatusCode.NOT_FOUND, "version_erased")  # type: ignore[attr-defined]
        assert datetime.fromisoformat(meta["erasure-started-at"]) == datetime.fromisoformat(v2.started_at)
        assert datetime.fromisoformat(meta["erased-at"]) == datetime.fromisoformat(v2.finished_at)
        latest = stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id="alice"), metadata=_md(w, "read"))
        assert latest.version == 1

        report = stub.ErasePersona(pb.ErasePersonaRequest(persona_id="alice", reason=REASON),
                                   metadata=_md(w, "admin"))
        assert (report.HasField("version"), list(report.versions)) == (False, [1, 2])
        assert not report.already_erased
        assert report.kept_shared >= 1
        assert ".personapack" in report.note
        for call in (
            lambda: stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id="alice"), metadata=read),
            lambda: stub.ListPersonaVersions(pb.ListPersonaVersionsRequest(persona_id="alice"),
                                             metadata=read),
        ):
            with pytest.raises(grpc.RpcError) as gone:
                call()
            meta = _trailing(gone.value)
            assert (gone.value.code(), meta["error-code"]) == (grpc.StatusCode.NOT_FOUND, "persona_erased")  # type: ignore[attr-defined]
            started = datetime.fromisoformat(meta["erasure-started-at"])
            assert started == datetime.fromisoformat(report.started_at)
        again = stub.ErasePersona(pb.ErasePersonaRequest(persona_id="alice", reason="again"),
                                  metadata=_md(w, "admin"))
        assert again.already_erased
        reply = stub.GetPersonaPack(pb.GetPersonaPackRequest(persona_id="bob", version="1"), metadata=read)
        assert reply.pack_json == bob["1"]
    finally:
        channel.close()
        server.stop(grace=None)
    _bob_is_whole(w, bob)


def _cli(w: World, *args: str, **env: str) -> Any:
    return runner.invoke(cli, list(args), env={**settings_env(w.settings), **env})


def test_erasure_through_the_cli(world: World) -> None:
    """`persona-core erase` on the configured stores: documented exit codes, one JSON document
    with --json, the archives note in its output; the registry (another process's caches)
    answers 410 afterwards."""
    w = world
    bob = _warm(w, "bob")
    _warm(w)
    blank = _cli(w, "--json", "erase", "alice", "--reason", " ")
    assert blank.exit_code == ExitCode.USAGE
    assert json.loads(blank.stdout)["error"]["code"] == "invalid_input"
    assert _cli(w, "erase", "alice").exit_code == ExitCode.USAGE  # --reason is required
    assert _cli(w, "erase", "nobody", "--reason", REASON).exit_code == ExitCode.NOT_FOUND
    assert _cli(w, "erase", "alice", "--version", "9", "--reason", REASON).exit_code == ExitCode.NOT_FOUND
    assert w.get("/v1/personas/alice/versions/2").json()["status"] == "published"

    v2 = _cli(w, "--json", "erase", "alice", "--version", "2", "--reason", REASON)
    assert v2.exit_code == 0, v2.output
    doc = json.loads(v2.stdout)
    assert (doc["version"], doc["versions"], doc["state"]) == (2, [2], "erased")
    assert doc["actor"].startswith("cli")
    assert ".personapack" in doc["note"]
    _gone(w.get("/v1/personas/alice/versions/2/pack"), "version_erased")
    assert w.get("/v1/personas/alice/versions/latest/pack").headers["x-persona-version"] == "1"

    whole = _cli(w, "erase", "alice", "--reason", REASON)
    assert whole.exit_code == 0, whole.output
    assert "erased alice (versions 1, 2)" in whole.stdout
    assert "note: exported .personapack archives are outside" in whole.stdout
    _gone(w.get("/v1/personas/alice/versions/1/pack"), "persona_erased")
    again = _cli(w, "erase", "alice", "--reason", REASON)
    assert (again.exit_code, "already erased" in again.stdout) == (0, True)
    versions = _cli(w, "--json", "versions", "alice")
    assert versions.exit_code == ExitCode.NOT_FOUND
    assert json.loads(versions.stdout)["error"]["code"] == "persona_erased"
    _bob_is_whole(w, bob)


def test_gc_through_the_cli(world: World) -> None:
    """`persona-core gc --dry-run` says what would go and deletes nothing; `gc` erases a
    never-published version past retention and an unheld blob past the grace period, and
    leaves every published pack whole."""
    w = world
    bob = _warm(w, "bob")
    alice = _warm(w)
    failed = submit_version(w.meta, w.blobs, "alice", [_photo("biden2.jpg")])
    w.meta.transition("alice", failed.version, VersionStatus.FAILED, reasons=["step failed"])
    orphan = w.blobs.put(b"nobody holds these bytes")
    time.sleep(1.0)
    env = {"PERSONA_RETENTION_DAYS": str(0.5 / 86400), "PERSONA_GC_GRACE_S": "0"}
    dry = _cli(w, "--json", "gc", "--dry-run", **env)
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True
    assert planned["expired_versions"] == [f"alice v{failed.version}"]
    assert planned["blobs_deleted"] >= 1
    assert w.blobs.exists(orphan)
    assert w.blobs.exists(_ref("biden2.jpg"))

    ran = _cli(w, "gc", **env)
    assert ran.exit_code == 0, ran.output
    assert f"expired: alice v{failed.version}" in ran.stdout
    assert "blobs deleted" in ran.stdout
    assert not w.blobs.exists(orphan)
    assert not w.blobs.exists(_ref("biden2.jpg"))
    assert w.get(f"/v1/personas/alice/versions/{failed.version}").status_code == 410
    assert w.get("/v1/personas/alice/versions/1/pack").content == alice["1"]
    _bob_is_whole(w, bob)


@pytest.fixture
def live(world: World) -> Iterator[tuple[World, str]]:
    """The world's stores behind a real uvicorn on loopback."""
    sock = reserve_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with BackgroundServer(world.settings, metadata=world.meta, blobs=world.blobs, sock=sock, with_grpc=False):
        yield world, url


def test_erasure_through_the_client(live: tuple[World, str]) -> None:
    """RegistryClient.erase_persona returns the typed report; reads of the erased subject raise
    PersonaErasedError / VersionErasedError with the erasure's times parsed."""
    w, url = live
    with (RegistryClient(url, w.keys["admin"]) as admin, RegistryClient(url, w.keys["read"]) as reader):
        assert reader.get_pack("alice", 2).version == 2
        with pytest.raises(RegistryError) as denied:
            reader.erase_persona("alice", reason=REASON)
        assert (denied.value.status, denied.value.code) == (403, "insufficient_scope")
        with pytest.raises(InvalidInputError):
            admin.erase_persona("alice", reason="")

        v2 = admin.erase_persona("alice", 2, reason=REASON)
        assert isinstance(v2, ErasureOut)
        assert (v2.version, v2.versions, v2.already_erased) == (2, [2], False)
        with pytest.raises(VersionErasedError) as gone:
            reader.get_pack("alice", 2)
        assert (gone.value.started_at, gone.value.erased_at) == (v2.started_at, v2.finished_at)
        assert reader.get_pack("alice").version == 1

        whole = admin.erase_persona("alice", reason=REASON)
        assert whole.versions == [1, 2]
        for call in (lambda: reader.get_pack("alice"), lambda: reader.get_persona("alice"),
                     lambda: reader.list_versions("alice")):
            with pytest.raises(PersonaErasedError) as erased:
                call()
            assert erased.value.started_at == whole.started_at
            assert erased.value.erased_at == whole.finished_at
        assert admin.erase_persona("alice", reason=REASON).already_erased
        feed = reader.erasures()
        assert [(e.persona_id, e.version) for e in feed.items] == [("alice", 2), ("alice", None)]
        assert reader.erasures(since=feed.items[-1].erased_at).items == []
