"""A renderer's PackCache over RegistryPackSource when what answers is not the registry: a proxy
answering 502/503/504 without a problem document, or a registry that accepts and never answers.
Both count as unreachable, so the cache serves its disk copy; the renderer's default timeouts
(connect 2 s, read 5 s) bound how long a hung registry holds a load up. The servers here are
real HTTP servers on loopback that fail the way a gateway or a hung process does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from persona_core.client import (
    RENDERER_CONNECT_TIMEOUT_S,
    RENDERER_READ_TIMEOUT_S,
    RegistryClient,
    RegistryPackSource,
)
from persona_core.errors import CacheDamagedError, StoreUnavailableError
from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, StorePackSource
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

PID = "ada"


class Gateway(ThreadingHTTPServer):
    """Answers every request with ``status`` and an HTML page, as nginx does when its upstream
    is down; ``status=None`` reads the request and never answers (a hung registry)."""

    daemon_threads = True

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.release = threading.Event()
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Gateway

    def _answer(self) -> None:
        self.server.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.server.status is None:
            self.server.release.wait(60)
            return
        body = b"<html><body><h1>%d Bad Gateway</h1>nginx</body></html>" % self.server.status
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *_args: object) -> None:
        pass


def _serve(status: int | None) -> Iterator[Gateway]:
    server = Gateway(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A renderer cache folder already holding ada v1, fetched from a real store."""
    blobs = LocalBlobStore(tmp_path / "blobs", b"test-secret", "http://127.0.0.1:8000")
    meta = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")
    meta.create_persona(PID, {})
    meta.create_version(PID, {})
    publish_pack(meta, blobs, make_pack(blobs, PID, 1, n_anchors=4))
    PackCache(tmp_path / "cache", StorePackSource(meta, blobs)).load(PID, 1)
    meta.close()
    return tmp_path / "cache"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_error_without_problem_document_falls_back_to_disk(cache_dir: Path, status: int) -> None:
    """A proxy's 502/503/504 HTML page is 'registry unreachable': latest is served from disk,
    and the client raises StoreUnavailableError with the status, not a generic error."""
    for gateway in _serve(status):
        with RegistryClient(gateway.url, "key") as client:
            cache = PackCache(cache_dir, RegistryPackSource(client))
            assert cache.load(PID).version == 1
            assert gateway.requests == 1
            with pytest.raises(StoreUnavailableError) as caught:
                client.get_pack(PID, 1)
            assert caught.value.status == status  # type: ignore[attr-defined]


def test_gateway_error_with_a_damaged_disk_copy_is_reported_typed(cache_dir: Path) -> None:
    """Behind a 502, a damaged cache file cannot be fetched again: CacheDamagedError, not a pack."""
    (cache_dir / PID / "v1.pcpk").write_bytes(b"")
    for gateway in _serve(502):
        with RegistryClient(gateway.url, "key") as client:
            cache = PackCache(cache_dir, RegistryPackSource(client))
            with pytest.raises(CacheDamagedError):
                cache.load(PID, 1)


def test_hung_registry_falls_back_to_disk_within_the_renderer_timeouts(cache_dir: Path) -> None:
    """A registry that accepts the request and never answers holds a load up for the default
    read timeout (5 s), not the client's 30 s, and then the disk copy serves."""
    assert (RENDERER_CONNECT_TIMEOUT_S, RENDERER_READ_TIMEOUT_S) == (2.0, 5.0)
    for hung in _serve(None):
        with RegistryClient(hung.url, "key") as client:
            cache = PackCache(cache_dir, RegistryPackSource(client))
            started = time.monotonic()
            assert cache.load(PID).version == 1
            waited = time.monotonic() - started
    assert RENDERER_READ_TIMEOUT_S - 0.5 < waited < RENDERER_READ_TIMEOUT_S + 3


def test_renderer_timeouts_can_be_set(cache_dir: Path) -> None:
    """Shorter timeouts are taken as given; a non-positive one is refused at construction."""
    for hung in _serve(None):
        with RegistryClient(hung.url, "key") as client:
            cache = PackCache(cache_dir, RegistryPackSource(client, read_timeout_s=0.3))
            started = time.monotonic()
            assert cache.load(PID).version == 1
            assert time.monotonic() - started < 2.5
            with pytest.raises(ValueError, match="timeouts"):
                RegistryPackSource(client, connect_timeout_s=0)
