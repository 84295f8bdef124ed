"""A hung database or S3 server (SIGSTOP) gives a quick 503 with Retry-After, never a hang;
once it thaws, the same registry answers again. Private servers: freezing the shared ones
would stall other tests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import PostgresService, S3Service, start_postgres, start_seaweedfs
from test_faults import outage_row

from persona_core.errors import StoreUnavailableError
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow, pytest.mark.faults]
TIMEOUT_S = 1.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def freeze(pid: int, sig: signal.Signals) -> None:
    """Stop (or continue) a server and every process it forked (PostgreSQL's backends)."""
    for p in [pid, *_children(pid)]:
        os.kill(p, sig)


def _settings(pg: PostgresService, s3: S3Service, home: Path) -> ApiSettings:
    return ApiSettings(
        env="test",
        home=home,
        database_url=pg.create_database(),
        blob_url=f"s3://{s3.create_bucket()}",
        s3_endpoint_url=s3.endpoint_url,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,  # type: ignore[arg-type]
        store_timeout_s=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresService, S3Service]]:
    pg, s3 = start_postgres(), start_seaweedfs()
    yield pg, s3
    for service in (pg, s3):
        freeze(service.pid, signal.SIGCONT)
        service.stop()


@pytest.fixture
def app_client(
    servers: tuple[PostgresService, S3Service], tmp_path: Path
) -> Iterator[tuple[TestClient, str]]:
    pg, s3 = servers
    settings = _settings(pg, s3, tmp_path)
    meta = open_metadata_store(settings)
    key = ApiKeyStore.of(meta).create_api_key("reader", ["admin"])[1]
    meta.create_persona("alice", {})
    meta.close()
    with TestClient(create_app(settings)) as client:
        yield client, key


def _wait_ready(client: TestClient, why: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


@pytest.mark.parametrize("which", ["postgres", "s3"])
def test_a_frozen_store_answers_503_quickly_and_recovers(
    servers: tuple[PostgresService, S3Service], app_client: tuple[TestClient, str], which: str
) -> None:
    client, key = app_client
    headers = {"X-API-Key": key}
    assert client.get("/readyz").status_code == 200
    pid = servers[0].pid if which == "postgres" else servers[1].pid
    freeze(pid, signal.SIGSTOP)
    try:
        for path in ("/readyz", "/v1/personas/alice/versions"):
            started = time.monotonic()
            r = client.get(path, headers=headers)
            took = time.monotonic() - started
            if which == "s3" and path != "/readyz":
                continue  # listing versions needs no blob
            assert r.status_code == 503, (path, r.text)
            assert r.json()["code"] == "store_unavailable"
            assert r.headers["retry-after"] == "1"
            # Two tries of the store timeout at most (S3 retries once), far below 10 s.
            assert took < 4 * TIMEOUT_S + 1, (path, took)
    finally:
        freeze(pid, signal.SIGCONT)
    _wait_ready(client, "the registry did not recover after the server thawed")
    assert client.get("/v1/personas/alice/versions", headers=headers).status_code == 200
    outage_row(f"{which} frozen", recovered=True)


@pytest.mark.parametrize("which", ["postgres", "s3"])
def test_a_stopped_store_answers_503_at_once_and_recovers_when_it_restarts(
    servers: tuple[PostgresService, S3Service], app_client: tuple[TestClient, str], which: str
) -> None:
    client, key = app_client
    headers = {"X-API-Key": key}
    service = servers[0] if which == "postgres" else servers[1]
    assert service.server is not None, "needs a server this test run started"
    stored = client.get("/v1/personas/alice", headers=headers).json()
    service.server.halt()
    try:
        started = time.monotonic()
        r = client.get("/readyz")
        assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (503, "store_unavailable", "1")
        assert time.monotonic() - started < 4 * TIMEOUT_S + 1
        if which == "postgres":
            r = client.get("/v1/personas/alice", headers=headers)
            assert (r.status_code, r.json()["code"]) == (503, "store_unavailable")
    finally:
        service.server.resume()
        service.pid = service.server.proc.pid
    _wait_ready(client, "the registry did not recover after the server restarted")
    # Nothing stored was lost across the stop.
    assert client.get("/v1/personas/alice", headers=headers).json() == stored
    outage_row(f"{which} stopped", recovered=True)


def test_store_calls_raise_typed_errors_when_frozen(
    servers: tuple[PostgresService, S3Service], tmp_path: Path
) -> None:
    pg, s3 = servers
    settings = _settings(pg, s3, tmp_path)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    ref = blobs.put(b"hello")
    for pid, call in ((pg.pid, meta.list_personas), (s3.pid, lambda: blobs.get(ref))):
        freeze(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError):
                call()
            assert time.monotonic() - started < 4 * TIMEOUT_S + 1
        finally:
            freeze(pid, signal.SIGCONT)
    assert blobs.get(ref) == b"hello"
    meta.close()
