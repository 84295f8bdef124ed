"""Prometheus metrics for the registry, with ``prometheus_client``.

``register(app)`` adds a pure-ASGI middleware that times every HTTP request into a histogram
labelled by route *template* (``/v1/personas/{persona_id}``, never the raw path, so label
cardinality stays bounded), method and status, and mounts ``GET /metrics``.
:class:`registry_api.request_context.GrpcRequestContext` does the same for gRPC calls
(method, status code).
Versions by status and build durations are read from the metadata store at scrape time
(aggregate queries in :mod:`persona_core.store.version_stats`), cached for a few seconds
so fast scrapers cannot load the DB.

``persona-core serve`` runs several processes (HTTP workers, and the parent serving gRPC), so
it calls :func:`use_multiprocess_dir` first: every process then writes its samples to files
in that folder, and a scrape, whichever worker answers it, sums them all
(``prometheus_client``'s multiprocess mode). Without it (tests, ``BackgroundServer``) each
:class:`Metrics` keeps its samples in memory, in a registry of its own.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persona_core.errors import PersonaCoreError
from persona_core.store.base import MetadataStore, VersionStatus
from persona_core.store.version_stats import (
    OUTCOMES,
    DurationBuckets,
    build_durations,
    count_versions_by_status,
)
from registry_api.deps import PrincipalDep
from registry_api.errors import PersonaForbiddenError
from registry_api.routes.common import PROBLEMS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Builds take seconds to hours (a queue included): upload to outcome.
BUILD_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
UNMATCHED_ROUTE = "<unmatched>"  # 404s for unknown paths share one label value
STATUS_CACHE_S = 5.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No ``_created`` series: multiprocess mode has none, and one server answers the same either way.
disable_created_metrics()

HTTP_HISTOGRAM = "persona_http_request_duration_seconds"
GRPC_HISTOGRAM = "persona_grpc_request_duration_seconds"


def multiprocess_dir() -> str | None:
    """The shared samples folder of this server, when it runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def use_multiprocess_dir(path: Path) -> None:
    """Make this process, and the workers it starts, write samples to ``path`` (emptied first).

    Call it before the first :class:`Metrics` is made in this process: a metric picks where
    its samples live when it is created.
    """
    if _shared.get("instruments") is not None:
        raise RuntimeError("use_multiprocess_dir() must come before the first Metrics of this process")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client chose its value class when first imported; choose again now.
    values.ValueClass = values.get_value_class()


def mark_process_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (its counters stay: they are part of the totals)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)


class Instruments:
    """The metrics a process records into (HTTP and gRPC latency, its start time)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.http = Histogram(
            HTTP_HISTOGRAM,
            "HTTP request latency by route template, method and status.",
            ("route", "method", "status"),
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        self.grpc = Histogram(
            GRPC_HISTOGRAM,
            "gRPC call latency by method and status code (OK, NOT_FOUND, ...).",
            ("method", "code"),
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        # The oldest live process of the server: when it started serving.
        self.started = Gauge(
            "persona_process_start_time_seconds",
            "Start time of the registry's oldest live process since unix epoch.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.started.set(time.time())


# One set of instruments per process in multiprocess mode (their samples go to one file).
_shared: dict[str, Instruments | None] = {"instruments": None}
_shared_lock = threading.Lock()


class Metrics:
    """What ``/metrics`` reports: request latency, plus version counts from the store."""

    def __init__(
        self, metadata: Callable[[], MetadataStore | None] | None = None, *, cache_s: float = STATUS_CACHE_S
    ) -> None:
        self._metadata = metadata
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, int], dict[str, DurationBuckets], bool] | None = None
        self._lock = threading.Lock()
        if multiprocess_dir() is not None:
            with _shared_lock:
                shared = _shared["instruments"]
                if shared is None:
                    shared = _shared["instruments"] = Instruments(None)
                self.instruments: Instruments = shared
            self._registry: CollectorRegistry | None = None
        else:
            self._registry = CollectorRegistry()
            self.instruments = Instruments(self._registry)
            self._registry.register(_StoreCollector(self))

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.instruments.http.labels(route, method, str(status)).observe(seconds)

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        self.instruments.grpc.labels(method, code).observe(seconds)

    def store_stats(self) -> tuple[dict[str, int], dict[str, DurationBuckets], bool]:
        """Versions per status (every status present, zeros included), build durations per
        outcome, and whether the read worked."""
        now = time.monotonic()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1], self._cached[2], self._cached[3]
        store = self._metadata() if self._metadata else None
        counts = dict.fromkeys((s.value for s in VersionStatus), 0)
        durations: dict[str, DurationBuckets] = {}
        ok = store is not None
        if store is not None:
            try:
                counts.update(count_versions_by_status(store))
                durations = build_durations(store, BUILD_BUCKETS)
            except PersonaCoreError:
                ok = False
        with self._lock:
            self._cached = (now, counts, durations, ok)
        return counts, durations, ok

    def version_counts(self) -> tuple[dict[str, int], bool]:
        counts, _, ok = self.store_stats()
        return counts, ok

    def render(self) -> bytes:
        """The text exposition: this process's samples, or every process's in multiprocess mode."""
        registry = self._registry
        if registry is None:  # a registry per scrape, over every process's files
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(_StoreCollector(self))
        return generate_latest(registry)


class _StoreCollector(Collector):
    """Version counts and build durations, read from the metadata store at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counts, durations, ok = self.metrics.store_stats()
        versions = GaugeMetricFamily(
            "persona_versions",
            "Persona versions (builds) by status, read from the metadata store.",
            labels=["status"],
        )
        for status, n in sorted(counts.items()):
            versions.add_metric([status], n)
        yield versions
        builds = GaugeHistogramMetricFamily(
            "persona_build_duration_seconds",
            "Seconds from a version's upload to its build outcome (queue included), by outcome, "
            "over the version records in the metadata store.",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            d = durations.get(outcome)
            if d is None:
                continue
            bounds = [repr(float(b)) for b in d.bounds] + ["+Inf"]
            builds.add_metric([outcome], list(zip(bounds, d.cumulative, strict=True)), d.total_s)
        yield builds
        up = GaugeMetricFamily("persona_metadata_up", "1 when the last read of version counts succeeded.")
        up.add_metric([], 1 if ok else 0)
        yield up


class MetricsMiddleware:
    """Times each HTTP request; the route template is known only after routing, in the scope."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_http(
                route_template(scope), scope.get("method", ""), status, time.perf_counter() - start
            )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def build_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses=PROBLEMS(401, 403),
    )
    def metrics_endpoint(who: PrincipalDep) -> PlainTextResponse:
        """Prometheus text exposition: HTTP and gRPC latency histograms, versions by status
        and build durations by outcome. Under ``persona-core serve`` one scrape covers every
        worker process.

        Needs a key with the ``metrics`` (or ``admin``) scope that is not restricted to some
        personas: the counts cover every persona.
        """
        who.require("metrics")
        if who.persona_ids is not None:
            raise PersonaForbiddenError("metrics cover every persona: use a key not restricted to some")
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return router


def register(app: FastAPI, metadata: MetadataStore | None = None) -> Metrics:
    """Add the timing middleware and ``GET /metrics`` to ``app`` (once; later calls return the
    app's :class:`Metrics`).

    Version counts come from ``metadata`` or, when None, from the registry's service
    (``app.state.service.metadata``) at scrape time.
    """
    existing = getattr(app.state, "metrics", None)
    if isinstance(existing, Metrics):
        return existing

    def store() -> MetadataStore | None:
        if metadata is not None:
            return metadata
        service: Any = getattr(app.state, "service", None)
        return getattr(service, "metadata", None)

    metrics = Metrics(store)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(build_router(metrics))
    app.state.metrics = metrics
    return metrics
