"""Prometheus metrics for the registry, in the text exposition format (no client library).

``register(app)`` adds a pure-ASGI middleware that times every HTTP request into a
histogram labelled by route *template* (``/v1/personas/{persona_id}``, never the raw path,
so label cardinality stays bounded), method and status, and mounts ``GET /metrics``.
Build counts by version status are read from the metadata store at scrape time (one
``GROUP BY`` on SQL stores), cached for a few seconds so fast scrapers cannot load the DB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persona_core.errors import PersonaCoreError
from persona_core.store.base import MetadataStore, VersionStatus
from registry_api.deps import PrincipalDep
from registry_api.errors import PersonaForbiddenError
from registry_api.routes.common import PROBLEMS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"  # 404s for unknown paths share one label value
STATUS_CACHE_S = 5.0


@dataclass
class _Series:
    buckets: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class RequestHistogram:
    """Request latency by (route, method, status); thread-safe."""

    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    _series: dict[tuple[str, str, str], _Series] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series([0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if seconds <= bound:
                    series.buckets[i] += 1
            series.total += seconds
            series.count += 1

    def lines(self, name: str) -> list[str]:
        out = [
            f"# HELP {name} HTTP request latency by route template, method and status.",
            f"# TYPE {name} histogram",
        ]
        with self._lock:
            items = sorted((k, _Series(list(s.buckets), s.total, s.count)) for k, s in self._series.items())
        for (route, method, status), s in items:
            labels = f'route="{_esc(route)}",method="{_esc(method)}",status="{status}"'
            for bound, n in zip(self.buckets, s.buckets, strict=True):
                out.append(f'{name}_bucket{{{labels},le="{_num(bound)}"}} {n}')
            out.append(f'{name}_bucket{{{labels},le="+Inf"}} {s.count}')
            out.append(f"{name}_sum{{{labels}}} {_num(s.total)}")
            out.append(f"{name}_count{{{labels}}} {s.count}")
        return out


class Metrics:
    """What ``/metrics`` reports: request latency, plus version counts from the store."""

    def __init__(
        self, metadata: Callable[[], MetadataStore | None] | None = None, *, cache_s: float = STATUS_CACHE_S
    ) -> None:
        self.requests = RequestHistogram()
        self._metadata = metadata
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, int], bool] | None = None
        self._lock = threading.Lock()
        self.started = time.time()

    def version_counts(self) -> tuple[dict[str, int], bool]:
        """Versions per status (every status present, zeros included) and whether the read worked."""
        now = time.monotonic()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1], self._cached[2]
        store = self._metadata() if self._metadata else None
        counts = dict.fromkeys((s.value for s in VersionStatus), 0)
        ok = store is not None
        if store is not None:
            try:
                counts.update(count_versions_by_status(store))
            except PersonaCoreError:
                ok = False
        with self._lock:
            self._cached = (now, counts, ok)
        return counts, ok

    def render(self) -> str:
        lines = self.requests.lines("persona_http_request_duration_seconds")
        counts, ok = self.version_counts()
        lines += [
            "# HELP persona_versions Persona versions (builds) by status, read from the metadata store.",
            "# TYPE persona_versions gauge",
            *(f'persona_versions{{status="{status}"}} {n}' for status, n in sorted(counts.items())),
            "# HELP persona_metadata_up 1 when the last read of version counts succeeded.",
            "# TYPE persona_metadata_up gauge",
            f"persona_metadata_up {1 if ok else 0}",
            "# HELP persona_process_start_time_seconds Start time of the process since unix epoch.",
            "# TYPE persona_process_start_time_seconds gauge",
            f"persona_process_start_time_seconds {_num(self.started)}",
        ]
        return "\n".join(lines) + "\n"


def count_versions_by_status(store: MetadataStore) -> dict[str, int]:
    """One GROUP BY on SQL stores; other stores are walked persona by persona."""
    engine = getattr(store, "engine", None)
    if engine is not None:
        import sqlalchemy as sa  # noqa: PLC0415 - only for SQL stores

        from persona_core.store import tables  # noqa: PLC0415

        v = tables.persona_versions
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(v.c.status, sa.func.count()).group_by(v.c.status)).all()
        except sa.exc.SQLAlchemyError as exc:
            from persona_core.errors import StoreUnavailableError  # noqa: PLC0415

            raise StoreUnavailableError(f"database unavailable: {exc}") from None
        return {str(status): int(n) for status, n in rows}
    counts: dict[str, int] = {}
    after: str | None = None
    while True:
        page = store.list_personas(limit=200, after=after)
        for persona in page:
            for record in store.list_versions(persona.persona_id):
                counts[record.status.value] = counts.get(record.status.value, 0) + 1
        if len(page) < 200:
            return counts
        after = page[-1].persona_id


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
            self.metrics.requests.observe(
                _route_template(scope), scope.get("method", ""), status, time.perf_counter() - start
            )


def _route_template(scope: Scope) -> str:
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
        """Prometheus text exposition: request latency histogram and builds by status.

        Needs a key with the ``metrics`` (or ``admin``) scope that is not restricted to some
        personas: the counts cover every persona.
        """
        who.require("metrics")
        if who.persona_ids is not None:
            raise PersonaForbiddenError("metrics cover every persona: use a key not restricted to some")
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return router


def register(app: FastAPI, metadata: MetadataStore | None = None) -> Metrics:
    """Add the timing middleware and ``GET /metrics`` to ``app``.

    Version counts come from ``metadata`` or, when None, from the registry's service
    (``app.state.service.metadata``) at scrape time.
    """

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


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _num(value: float) -> str:
    return repr(float(value))
