"""uvicorn's httptools protocol with the registry's serving limits: no client holds a
connection for free.

uvicorn has a keep-alive timeout but none for a request's headers or body, and no cap on
connections of its own: 1,100 clients that each sent half a header line held the process's
file descriptors until normal requests failed, with nothing logged. Here, per worker process
(settings in :class:`~registry_api.config.ApiSettings`, documented in docs/registry.md):

- headers: from a connection's first moment (and a keep-alive request's first byte) to the end
  of its headers, at most ``http_header_timeout_s``; a trickle does not reset the clock;
- body: at least 1 KiB in every ``http_body_timeout_s`` while the server is reading it;
- connections: at most ``http_max_connections``, and never more than the open-file limit
  leaves room for; at the cap, the oldest connection that is not inside a request (still
  sending its headers, or idle between requests) is closed to make room, and a new one is
  refused only when every connection is serving a request.

Each cut is logged (a summary line a second per reason, with the count and a client).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from registry_api.config import ApiSettings

log = logging.getLogger("registry_api.serving")
BODY_MIN_BYTES = 1024
# File descriptors kept for everything but HTTP connections: the database, blob files,
# gRPC's connections, logs, the webhook dispatcher.
FD_RESERVE = 128
_LOG_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class ServingLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: ApiSettings) -> ServingLimits:
        """The limits ``settings`` ask for, the connection cap lowered to fit the open-file limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = soft - FD_RESERVE if soft != resource.RLIM_INFINITY else settings.http_max_connections
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_connections=max(1, min(settings.http_max_connections, room)),
        )


def raise_open_file_limit() -> int:
    """Lift this process's soft open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # pragma: no cover - a platform that refuses it
            return soft
    return hard


class _Shared:
    """One server's bookkeeping, kept on its uvicorn ServerState."""

    def __init__(self, limits: ServingLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.loop = loop
        self.live = 0
        # Connections not inside a request, oldest first (a dict keeps insertion order).
        self.between: dict[GuardedHttpToolsProtocol, None] = {}
        self.cuts: Counter[str] = Counter()
        self.example: dict[str, str] = {}
        self.flush: asyncio.TimerHandle | None = None

    def note(self, reason: str, client: str) -> None:
        self.cuts[reason] += 1
        self.example[reason] = client
        if self.flush is None:
            self.flush = self.loop.call_later(_LOG_EVERY_S, self.log_cuts)

    def log_cuts(self) -> None:
        self.flush = None
        limits = self.limits
        why = {
            "header": f"request headers not complete within {limits.header_timeout_s:g} s "
            "(PERSONA_HTTP_HEADER_TIMEOUT_S)",
            "body": f"request body under {BODY_MIN_BYTES} bytes in {limits.body_timeout_s:g} s "
            "(PERSONA_HTTP_BODY_TIMEOUT_S)",
            "evicted": f"not inside a request when the connection cap ({limits.max_connections}, "
            "PERSONA_HTTP_MAX_CONNECTIONS or the open-file limit) was reached",
            "refused": f"refused at the connection cap ({limits.max_connections}): every connection "
            "was serving a request",
        }
        for reason, count in sorted(self.cuts.items()):
            log.warning(
                "closed %d HTTP connection(s): %s; e.g. from %s", count, why[reason], self.example[reason]
            )
        self.cuts.clear()
        self.example.clear()


def _limits(config: Config) -> ServingLimits:
    limits: ServingLimits | None = getattr(config, "_persona_limits", None)
    if limits is None:
        # The registry app under uvicorn's own wrappers (proxy headers, ...).
        app: Any = config.loaded_app
        while not hasattr(app, "state") and hasattr(app, "app"):
            app = app.app
        service = getattr(getattr(app, "state", None), "service", None)
        settings = service.settings if service is not None else ApiSettings()
        limits = ServingLimits.of(settings)
        config._persona_limits = limits  # type: ignore[attr-defined]
    return limits


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header and body timeouts and a connection cap (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        shared: _Shared | None = getattr(server_state, "_persona_guard", None)
        if shared is None:
            shared = _Shared(_limits(config), self.loop)
            server_state._persona_guard = shared  # type: ignore[attr-defined]
        self._shared = shared
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_bytes = 0
        self._counted = False

    # -- connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        shared = self._shared
        shared.live += 1
        self._counted = True
        self._arm_header_timer()
        if shared.live > shared.limits.max_connections and not self._make_room():
            self._cut("refused")
            return
        shared.between[self] = None

    def _make_room(self) -> bool:
        between = self._shared.between
        while between:
            oldest = next(iter(between))
            oldest._cut("evicted")
            if self._shared.live <= self._shared.limits.max_connections:
                return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        """Stop counting this connection (once), and its timers."""
        if self._counted:
            self._counted = False
            self._shared.live -= 1
        self._shared.between.pop(self, None)
        self._cancel_header_timer()
        self._cancel_body_timer()

    def _cut(self, reason: str) -> None:
        client = self.client[0] if self.client else "unknown"
        self._forget()
        self._shared.note(reason, client)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # nothing is owed to a client cut for stalling

    # -- headers -----------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self._shared.limits.header_timeout_s, self._cut, "header"
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # a keep-alive request's first byte starts its clock

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._shared.between.pop(self, None)
        self._body_bytes = 0
        self._arm_body_timer()
        super().on_headers_complete()

    # -- body --------------------------------------------------------------------------

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self._shared.limits.body_timeout_s, self._check_body)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        # While the server itself is not reading (the app is behind), the client is not slow.
        if self._body_bytes < BODY_MIN_BYTES and not self.flow.read_paused:
            self._cut("body")
            return
        self._body_bytes = 0
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and self._counted and not self.transport.is_closing():
            self._shared.between[self] = None  # idle until its next request
