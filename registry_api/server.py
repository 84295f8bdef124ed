"""Running the registry: HTTP (uvicorn) and gRPC side by side over one service.

``serve`` blocks (the ``persona-core serve`` command); ``BackgroundServer`` runs both in
threads of the current process, for tests, demos and notebooks.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import grpc
import uvicorn

from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.engine import Database
from persona_core.webhooks import DispatcherThread
from registry_api import metrics
from registry_api.config import ApiSettings
from registry_api.grpc_server import start_grpc_server
from registry_api.http_protocol import GuardedHttpToolsProtocol, ServingLimits, raise_open_file_limit
from registry_api.main import close_app_stores, create_app
from registry_api.request_context import GrpcRequestContext

log = logging.getLogger("registry_api.server")
# Measured fastest on this stack: httptools parser, uvloop, no per-request access log line.
# The parser with the registry's header and body timeouts and connection cap (http_protocol).
# Lifespan off: serve() and BackgroundServer.stop() close the stores themselves, after gRPC
# has stopped using them (the app's lifespan does it under a bare `uvicorn --factory`).
UVICORN_OPTIONS = {"http": GuardedHttpToolsProtocol, "loop": "uvloop", "access_log": False, "lifespan": "off"}


def default_workers() -> int:
    """One HTTP worker process per core: one worker's p99 grows past 25 ms at 64 connections."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def serve(
    settings: ApiSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    grpc_port: int | None = None,
    workers: int | None = None,
) -> None:
    """Serve HTTP on ``host:port`` with ``workers`` processes (default: one per core) and, when
    ``grpc_port`` (or ``settings.grpc_port``) is set, gRPC on ``host:grpc_port``, until interrupted.

    With more than one worker each process builds its app from the environment (``PERSONA_*``;
    ``settings.home`` is passed on as ``PERSONA_HOME``) and closes its own stores.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # Every process (this one serves gRPC, the workers HTTP) writes its metrics to one folder
    # of this server's, emptied now, so one scrape sums them all (registry_api.metrics).
    given = metrics.multiprocess_dir()
    metrics_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="persona-metrics-"))
    metrics.use_multiprocess_dir(metrics_dir)
    # Room for http_max_connections (the soft limit is often 1024); workers inherit it.
    raise_open_file_limit()
    app = create_app(settings)
    limits = ServingLimits.of(settings)
    log.info("HTTP limits per worker: headers within %g s, a body 1 KiB every %g s, %d connections",
             limits.header_timeout_s, limits.body_timeout_s, limits.max_connections)
    grpc_port = settings.grpc_port if grpc_port is None else grpc_port
    grpc_server: grpc.Server | None = None
    if grpc_port:
        observe = (GrpcRequestContext(app.state.metrics),)
        grpc_server, bound = start_grpc_server(app.state.service, grpc_port, host, interceptors=observe)
        log.info("gRPC listening on %s:%d", host, bound)
    # In this process, whatever the number of HTTP workers; the lease keeps it the only one
    # dispatching among registries that share the database.
    dispatcher = start_dispatcher(settings, app.state.service.metadata)
    try:
        # log_config=None keeps persona-core's own (redacting) logging setup for uvicorn too.
        if workers == 1:
            uvicorn.run(app, host=host, port=port, log_config=None, proxy_headers=True, **UVICORN_OPTIONS)  # type: ignore[arg-type]
        else:
            os.environ["PERSONA_HOME"] = str(settings.home)
            options = {**UVICORN_OPTIONS, "lifespan": "on"}  # each worker closes its own stores
            uvicorn.run(
                "registry_api.main:app_from_env",
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_config=None,
                proxy_headers=True,
                **options,  # type: ignore[arg-type]
            )
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        if grpc_server is not None:
            grpc_server.stop(grace=2).wait()
        close_app_stores(app)
        if not given:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def start_dispatcher(settings: ApiSettings, metadata: MetadataStore) -> DispatcherThread | None:
    """The webhook dispatcher in a thread, when ``settings.webhook_dispatch`` and the metadata
    store is SQL (the webhook tables live there)."""
    database = getattr(metadata, "database", None)
    if not settings.webhook_dispatch or not isinstance(database, Database):
        return None
    return DispatcherThread(database, settings).start()


def reserve_socket(host: str = "127.0.0.1") -> socket.socket:
    """A bound TCP socket on a free port (``getsockname()[1]``), to hand to BackgroundServer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class BackgroundServer:
    """HTTP and gRPC on free loopback ports in background threads; a context manager.

    ``base_url`` and ``grpc_target`` are set once started. Stores may be passed in (tests);
    otherwise they are opened from ``settings``. Pass ``sock`` from :func:`reserve_socket`
    when ``settings.public_base_url`` must name this server (signed blob URLs), and
    ``dispatch=True`` to deliver webhooks from this process as ``serve`` does.
    """

    def __init__(
        self,
        settings: ApiSettings,
        *,
        metadata: MetadataStore | None = None,
        blobs: BlobStore | None = None,
        with_grpc: bool = True,
        sock: socket.socket | None = None,
        dispatch: bool = False,
    ) -> None:
        self.app = create_app(settings, metadata=metadata, blobs=blobs)
        self.service = self.app.state.service
        self._sock = sock or reserve_socket()
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", **UVICORN_OPTIONS)  # type: ignore[arg-type]
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name="registry-http", daemon=True
        )
        self._with_grpc = with_grpc
        self._grpc: grpc.Server | None = None
        self.grpc_target = ""
        self._dispatch = dispatch
        self._dispatcher: DispatcherThread | None = None

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        if self._with_grpc:
            observe = (GrpcRequestContext(self.app.state.metrics),)
            self._grpc, grpc_port = start_grpc_server(self.service, 0, interceptors=observe)
            self.grpc_target = f"127.0.0.1:{grpc_port}"
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("registry HTTP server did not start")
            time.sleep(0.01)
        if self._dispatch:
            self._dispatcher = start_dispatcher(self.service.settings, self.service.metadata)
        return self

    def stop(self) -> None:
        """Stop both servers, then close the stores they were opened with (not ones passed in)."""
        if self._dispatcher is not None:
            self._dispatcher.stop()
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
        close_app_stores(self.app)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
