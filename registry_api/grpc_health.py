"""``grpc.health.v1`` for the registry's gRPC port, tied to the stores as ``GET /readyz`` is.

A background thread asks :meth:`RegistryService.ready` every ``interval_s`` seconds and sets
SERVING or NOT_SERVING for the whole server (service ``""``) and for the registry service; a
probe (Kubernetes ``grpc:``, ``grpc_health_probe``) reads the last answer without touching
the stores. The thread ends when the server stops.
"""

from __future__ import annotations

import logging
import threading

import grpc
from grpc_health.v1 import health, health_pb2

from persona_core.errors import StoreUnavailableError
from registry_api.service import RegistryService

log = logging.getLogger("registry_api.grpc")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    """Keeps a :class:`health.HealthServicer` in step with the stores' readiness."""

    def __init__(self, service: RegistryService, names: tuple[str, ...], interval_s: float) -> None:
        self.servicer = health.HealthServicer()
        self._service = service
        self._names = ("", *names)
        self._interval_s = interval_s
        self._last: int | None = None  # the first look's answer is always set (and logged)
        for name in self._names:  # until the first look: a probe before it must not pass
            self.servicer.set(name, NOT_SERVING)

    def refresh(self) -> int:
        """Ask the stores now; set and return the status."""
        try:
            self._service.ready()
        except StoreUnavailableError as exc:
            status = NOT_SERVING
            if self._last != NOT_SERVING:
                log.warning("gRPC health: NOT_SERVING (%s)", exc)
        except Exception:  # a readiness probe reports a broken store; it never dies of one
            status = NOT_SERVING
            log.exception("gRPC health: the readiness check failed")
        else:
            status = SERVING
        self._set(status)
        return status

    def watch(self, server: grpc.Server) -> threading.Thread:
        """Refresh now and every ``interval_s`` until ``server`` stops (a daemon thread)."""

        def loop() -> None:
            self.refresh()
            # wait_for_termination is True when it timed out, i.e. the server still runs.
            while server.wait_for_termination(timeout=self._interval_s):
                self.refresh()

        thread = threading.Thread(target=loop, name="registry-grpc-health", daemon=True)
        thread.start()
        return thread

    def _set(self, status: int) -> None:
        if status != self._last:
            for name in self._names:
                self.servicer.set(name, status)
            self._last = status
