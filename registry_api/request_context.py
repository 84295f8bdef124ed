"""Every HTTP request gets an id and one access log line.

:class:`RequestContextMiddleware` (pure ASGI, outermost of the registry's middlewares) takes
the client's ``X-Request-ID`` when it is a plain token (else mints one), holds it in
:data:`persona_core.log_context.request_id_var` so every line logged for the request carries
it (``request_id``), echoes it in the response, and logs the request once it has been
answered (``registry_api.access``, INFO): method, path, route template, status, duration.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persona_core.log_context import accept_request_id, request_id_var
from registry_api.metrics import route_template

access_log = logging.getLogger("registry_api.access")
_HEADER = b"x-request-id"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope.get("headers", ()) if k.lower() == _HEADER), b"")
        request_id = accept_request_id(sent.decode("latin1"))
        # Not reset afterwards: the app's last-resort error handler runs outside this
        # middleware and logs for the same request (each request is its own task).
        request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        echo = (_HEADER, request_id.encode("latin1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                if not any(k.lower() == _HEADER for k, _ in headers):
                    message = {**message, "headers": [*headers, echo]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                millis = round((time.perf_counter() - start) * 1000, 1)
                method, path = scope.get("method", ""), scope.get("path", "")
                access_log.info(
                    "%s %s %d %.1f ms",
                    method,
                    path,
                    status,
                    millis,
                    extra={
                        "method": method,
                        "path": path,
                        "route": route_template(scope),
                        "status": status,
                        "duration_ms": millis,
                    },
                )
