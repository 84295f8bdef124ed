"""GET /metrics: a Prometheus text exposition a real parser accepts, with request latency by
route template, gRPC call latency, and build counts and durations read from the metadata store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from persona_core.publish import publish_pack
from persona_core.store import tables
from persona_core.store.base import VersionStatus
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.version_stats import build_durations, count_versions_by_status
from persona_core.testing import make_pack
from registry_api import metrics
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app
from registry_api.server import BackgroundServer

# /metrics needs a key with the metrics scope (the fixture makes one per test).
SCRAPER: dict[str, str] = {}


@pytest.fixture
def client(tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    settings = ApiSettings(env="test", home=tmp_path, public_base_url="http://testserver")
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    blobs = LocalBlobStore(tmp_path / "blobs", b"secret-for-tests-0123456789", settings.public_base_url)
    meta.create_persona("alice", {})
    meta.create_version("alice", {})
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1))
    meta.create_version("alice", {})  # v2 pending
    meta.create_version("alice", {})
    meta.transition("alice", 3, VersionStatus.BLOCKED, reasons=["too few anchors in A_SELFIE"])
    meta.create_version("alice", {})
    meta.transition("alice", 4, VersionStatus.FAILED, reasons=["boom"])
    app = create_app(settings, metadata=meta, blobs=blobs)
    metrics.register(app)
    key = ApiKeyStore.of(meta).create_api_key("reader", ["read"])[1]
    SCRAPER["X-API-Key"] = ApiKeyStore.of(meta).create_api_key("prometheus", ["metrics"])[1]
    return TestClient(app), {"X-API-Key": key}


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def test_request_histogram_by_route_template(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    for _ in range(3):
        assert http.get("/v1/personas/alice/versions", headers=headers).status_code == 200
    assert http.get("/v1/personas/nobody/versions", headers=headers).status_code == 404
    assert http.get("/v1/personas/alice/versions").status_code == 401
    assert http.get("/no/such/path").status_code == 404

    response = http.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    fams = _families(response.text)
    samples = fams["persona_http_request_duration_seconds"]

    def count(route: str, status: str) -> float:
        return next(
            v
            for n, labels, v in samples
            if n.endswith("_count") and labels["route"] == route and labels["status"] == status
        )

    route = "/v1/personas/{persona_id}/versions"
    assert count(route, "200") == 3
    assert count(route, "404") == 1
    assert count(route, "401") == 1
    assert count(metrics.UNMATCHED_ROUTE, "404") == 1
    # No raw path ever becomes a label value (bounded cardinality).
    assert not any("alice" in labels.get("route", "") for _, labels, _ in samples)
    buckets = [
        (labels["le"], v)
        for n, labels, v in samples
        if n.endswith("_bucket") and labels["route"] == route and labels["status"] == "200"
    ]
    values = [v for _, v in buckets]
    assert values == sorted(values)
    assert buckets[-1] == ("+Inf", 3)


def test_build_counts_by_status(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    fams = _families(http.get("/metrics", headers=SCRAPER).text)
    by_status = {labels["status"]: v for _, labels, v in fams["persona_versions"]}
    assert by_status == {
        "pending": 1,
        "building": 0,
        "blocked": 1,
        "failed": 1,
        "published": 1,
        "erasing": 0,
        "erased": 0,
        "retracted": 0,
    }
    assert fams["persona_metadata_up"][0][2] == 1


def test_store_walk_matches_group_by(client: tuple[TestClient, dict[str, str]]) -> None:
    """Stores without SQL are counted persona by persona; both ways agree."""
    http, _ = client
    store = http.app.state.service.metadata  # type: ignore[attr-defined]

    class Plain:
        list_personas = store.list_personas
        list_versions = store.list_versions

    assert count_versions_by_status(Plain()) == count_versions_by_status(store)  # type: ignore[arg-type]
    buckets = metrics.BUILD_BUCKETS
    walked, queried = build_durations(Plain(), buckets), build_durations(store, buckets)  # type: ignore[arg-type]
    assert {o: d.cumulative for o, d in walked.items()} == {o: d.cumulative for o, d in queried.items()}
    # SQLite's julianday() keeps about a millisecond.
    totals = {o: d.total_s for o, d in queried.items()}
    assert {o: d.total_s for o, d in walked.items()} == pytest.approx(totals, abs=0.01)


def test_build_durations_by_outcome(client: tuple[TestClient, dict[str, str]]) -> None:
    """Upload-to-outcome seconds per outcome, from the version records: v3 blocked 90 minutes
    after its upload, v1 published and v4 failed at once; pending v2 is not a finished build."""
    http, _ = client
    store = http.app.state.service.metadata  # type: ignore[attr-defined]
    v = tables.persona_versions
    with store.engine.begin() as conn:
        blocked_at = conn.execute(sa.select(v.c.updated_at).where(v.c.version == 3)).scalar_one()
        conn.execute(
            sa.update(v).where(v.c.version == 3).values(created_at=blocked_at - timedelta(minutes=90))
        )
    fams = _families(http.get("/metrics", headers=SCRAPER).text)
    buckets = {
        (labels["outcome"], labels["le"]): value
        for name, labels, value in fams["persona_build_duration_seconds"]
        if name.endswith("_bucket")
    }
    assert {o: buckets[(o, "+Inf")] for o in ("published", "blocked", "failed")} == {
        "published": 1,
        "blocked": 1,
        "failed": 1,
    }
    assert buckets[("blocked", "3600.0")] == 0
    assert buckets[("blocked", "14400.0")] == 1
    assert buckets[("published", "5.0")] == buckets[("failed", "5.0")] == 1
    gsum = {labels["outcome"]: value for _, labels, value in fams["persona_build_duration_seconds_gsum"]}
    assert gsum["blocked"] == pytest.approx(5400, abs=1)


def test_grpc_calls_are_counted(tmp_path: Path) -> None:
    """gRPC calls are timed by method and status code, and carry a request id back."""
    settings = ApiSettings(env="test", home=tmp_path, public_base_url="http://testserver")
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    meta.create_persona("alice", {})
    keys = ApiKeyStore.of(meta)
    read = (("x-api-key", keys.create_api_key("reader", ["read"])[1]),)
    scraper = {"X-API-Key": keys.create_api_key("prometheus", ["metrics"])[1]}
    server = BackgroundServer(settings, metadata=meta)
    with server, grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.PersonaRegistryStub(channel)
        for _ in range(2):
            stub.ListPersonaVersions(pb.ListPersonaVersionsRequest(persona_id="alice"), metadata=read)
        request = pb.ListPersonaVersionsRequest(persona_id="alice")
        tagged = (*read, ("x-request-id", "grpc-req-1"))
        _, call = stub.ListPersonaVersions.with_call(request, metadata=tagged)
        assert ("x-request-id", "grpc-req-1") in call.initial_metadata()
        with pytest.raises(grpc.RpcError) as missing:
            stub.ListPersonaVersions(pb.ListPersonaVersionsRequest(persona_id="nobody"), metadata=read)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        text = httpx.get(server.base_url + "/metrics", headers=scraper).text
    samples = _families(text)["persona_grpc_request_duration_seconds"]
    counts = {(labels["method"], labels["code"]): v for name, labels, v in samples if name.endswith("_count")}
    assert counts == {("ListPersonaVersions", "OK"): 3, ("ListPersonaVersions", "NOT_FOUND"): 1}
    meta.close()
