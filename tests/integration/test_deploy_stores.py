"""What a deployment's store settings do against the real servers: signed asset URLs name the
public S3 endpoint while the store itself reads and writes through the internal one, and a
process never holds more PostgreSQL connections than its pool settings allow."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from services import PostgresService, S3Service

from persona_core.errors import StoreUnavailableError
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store


class Relay:
    """A TCP forwarder on a loopback port of its own, standing in for the public address of an
    S3 server (a published port, a load balancer); it counts the connections it carried."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                self.connections += 1
                upstream = socket.create_connection(self._target)
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def relay(s3_server: S3Service) -> Iterator[Relay]:
    relay = Relay(s3_server.endpoint_url)
    yield relay
    relay.close()


@pytest.mark.s3
def test_signed_urls_name_the_public_endpoint_reads_and_writes_use_the_internal_one(
    s3_server: S3Service, s3_bucket: str, relay: Relay, tmp_path: Path
) -> None:
    public = f"http://127.0.0.1:{relay.port}"
    settings = s3_server.settings(s3_bucket, home=tmp_path, s3_public_endpoint_url=public)
    store = open_blob_store(settings)
    ref = store.put(b"anchor bytes")
    assert store.get(ref) == b"anchor bytes"
    store.put_object("manifests/m.json", b"{}")
    assert store.list_objects("manifests/") == ["manifests/m.json"]
    assert relay.connections == 0  # every read and write went to PERSONA_S3_ENDPOINT_URL

    url = store.signed_url(ref, ttl_s=60)
    assert urlsplit(url).netloc == f"127.0.0.1:{relay.port}"
    fetched = httpx.get(url, timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == b"anchor bytes"
    assert relay.connections >= 1  # the client's fetch came through the public address
    # The signature covers the host: the same URL sent to the internal endpoint is refused, so
    # a URL signed for the internal name could never have been fetched from outside either.
    internal = urlsplit(s3_server.endpoint_url).netloc
    moved = urlunsplit(urlsplit(url)._replace(netloc=internal))
    assert httpx.get(moved, timeout=10).status_code == 403


@pytest.mark.s3
def test_without_a_public_endpoint_urls_name_the_store_endpoint(
    s3_server: S3Service, s3_bucket: str, tmp_path: Path
) -> None:
    store = open_blob_store(s3_server.settings(s3_bucket, home=tmp_path))
    url = store.signed_url(store.put(b"x"), ttl_s=60)
    assert urlsplit(url).netloc == urlsplit(s3_server.endpoint_url).netloc
    assert httpx.get(url, timeout=10).content == b"x"


def _connections(server: PostgresService, database: str) -> int:
    with psycopg.connect(server._libpq(sa.make_url(server.admin_url))) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_a_process_holds_at_most_pool_size_plus_overflow_connections(
    postgres_server: PostgresService, postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path, database_url=postgres_url, db_pool_size=2, db_max_overflow=1, store_timeout_s=1.0
    )
    meta = open_metadata_store(settings)
    try:
        with contextlib.ExitStack() as held:
            for _ in range(3):
                held.enter_context(meta.database.tx(write=False))
            assert _connections(postgres_server, sa.make_url(postgres_url).database or "") == 3
            # A fourth concurrent call waits for a connection, then answers "unavailable" (503).
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError), meta.database.tx(write=False):
                pass
            assert time.monotonic() - started < 5
        # Given back, the pool serves again.
        with meta.database.tx(write=False) as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        meta.close()
