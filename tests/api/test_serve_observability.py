"""A real ``persona-core serve --workers 2`` as an operator runs it, with PERSONA_LOG_JSON=1:
one /metrics scrape counts the requests every worker answered, every line it logs is one JSON
object (workers included), requests carry an id in the response and in their log lines, and a
client that drops an upload half way is one INFO line, not an ERROR with tracebacks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from services import free_ports

from persona_core.store.metadata import SqlMetadataStore
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.key_store import ApiKeyStore

pytestmark = pytest.mark.slow

REQUESTS = 120
ROUTE = "/v1/personas"


@dataclass
class Served:
    base_url: str
    grpc_target: str
    read_key: str
    build_key: str
    metrics_key: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    lines: list[str] = field(default_factory=list)

    def stop(self) -> list[dict]:
        """SIGINT, wait, and every non-blank stderr line parsed (fails on a plain-text line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        self.lines = [ln for ln in self.log_path.read_text().splitlines() if ln.strip()]
        docs = []
        for line in self.lines:
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line!r}")
        return docs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("serve-home")
    meta = SqlMetadataStore.open(ApiSettings(home=home).resolved_database_url)
    keys = ApiKeyStore.of(meta)
    read_key = keys.create_api_key("reader", ["read"])[1]
    build_key = keys.create_api_key("builder", ["build"])[1]
    metrics_key = keys.create_api_key("prometheus", ["metrics"])[1]
    meta.create_persona("alice", {})
    meta.close()
    port, grpc_port = free_ports(2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "PROMETHEUS_"))},
        "PERSONA_LOG_JSON": "1",
        "PERSONA_LOG_LEVEL": "INFO",
    }
    cli = Path(sys.executable).with_name("persona-core")
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(cli),
                "--home",
                str(home),
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--grpc-port",
                str(grpc_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(
        f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", read_key, build_key, metrics_key, proc, log_path
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{served.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _count(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_one_scrape_counts_every_workers_requests(served: Served) -> None:
    """N requests on fresh connections (the kernel spreads them over both workers): one scrape
    counts N, and so does the next (no worker's share alone, no alternating counter)."""
    headers = {"X-API-Key": served.read_key}
    for _ in range(REQUESTS):  # a new connection each: both workers accept some
        assert httpx.get(served.base_url + ROUTE, headers=headers, timeout=10).status_code == 200
    with grpc.insecure_channel(served.grpc_target) as channel:  # gRPC: served by the parent process
        stub = pb_grpc.PersonaRegistryStub(channel)
        for _ in range(3):
            stub.ListPersonaVersions(
                pb.ListPersonaVersionsRequest(persona_id="alice"), metadata=(("x-api-key", served.read_key),)
            )
    scrapes = []
    for _ in range(3):
        r = httpx.get(served.base_url + "/metrics", headers={"X-API-Key": served.metrics_key}, timeout=10)
        assert r.status_code == 200
        scrapes.append(
            _count(
                r.text, "persona_http_request_duration_seconds_count", route=ROUTE, method="GET", status="200"
            )
        )
    assert scrapes == [REQUESTS] * 3
    assert (
        _count(r.text, "persona_grpc_request_duration_seconds_count", method="ListPersonaVersions", code="OK")
        == 3
    )
    assert _count(r.text, "persona_versions", status="pending") == 0
    assert _count(r.text, "persona_metadata_up") == 1


def test_request_ids_json_logs_and_a_dropped_upload(served: Served) -> None:
    base = served.base_url
    mine = httpx.get(base + ROUTE, headers={"X-API-Key": served.read_key, "X-Request-ID": "req-abc.123"})
    assert mine.headers["x-request-id"] == "req-abc.123"
    minted = httpx.get(base + ROUTE, headers={"X-API-Key": "pk_0123456789abcdef_not-a-real-secret-000"})
    assert minted.status_code == 401
    refused_id = minted.headers["x-request-id"]
    assert len(refused_id) == 32
    forged = 'x", "level": "ERROR' + "-" * 200  # quotes, spaces, too long: replaced
    assert len(httpx.get(base + "/healthz", headers={"X-Request-ID": forged}).headers["x-request-id"]) == 32
    _drop_an_upload(base, served.build_key)
    time.sleep(1)  # the worker notices the dropped connection

    docs = served.stop()
    # Both workers and the parent logged, each line JSON.
    assert len({d["pid"] for d in docs}) >= 3, docs
    ready = [d for d in docs if d["message"].startswith("registry worker")]
    assert len(ready) == 2
    access = [d for d in docs if d["logger"] == "registry_api.access"]
    assert all(d.get("request_id") for d in access)
    http_access = [d for d in access if "route" in d]  # gRPC's are the parent's
    assert len({d["pid"] for d in http_access}) == 2, "requests went to one worker only"
    assert any(d.get("grpc_method") == "ListPersonaVersions" for d in access)
    by_id = [d for d in docs if d.get("request_id") == "req-abc.123"]
    assert [(d["logger"], d["status"]) for d in by_id] == [("registry_api.access", 200)]
    refused = [d for d in docs if d.get("request_id") == refused_id]
    assert {d["logger"] for d in refused} == {"registry_api.auth", "registry_api.access"}
    assert any("wrong API key" in d["message"] for d in refused)
    assert "not-a-real-secret-000" not in served.log_path.read_text()
    # The dropped upload: one INFO line, no ERROR, no traceback anywhere.
    dropped = [d for d in docs if "client disconnected" in d["message"]]
    assert len(dropped) == 1, [d["message"] for d in docs]
    assert dropped[0]["level"] == "INFO"
    assert dropped[0]["request_id"]
    assert not [d for d in docs if d["level"] in ("ERROR", "CRITICAL") or "exception" in d], docs


def _drop_an_upload(base_url: str, key: str) -> None:
    """Send the headers and half of a multipart upload's body, then hang up."""
    host, port = base_url.removeprefix("http://").split(":")
    boundary = "persona-test-boundary"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + b"\xff\xd8"
        + b"\0" * 200_000
    )
    head = (
        f"POST /v1/personas/alice/versions HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(part) * 2}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + part)
        time.sleep(0.5)
