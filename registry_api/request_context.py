"""Every HTTP request and gRPC call gets an id and one access log line.

:class:`RequestContextMiddleware` (pure ASGI, outermost of the registry's middlewares) takes
the client's ``X-Request-ID`` when it is a plain token (else mints one), holds it in
:data:`persona_core.log_context.request_id_var` so every line logged for the request carries
it (``request_id``), echoes it in the response, and logs the request once it has been
answered (``registry_api.access``, INFO): method, path, route template, status, duration.
:class:`GrpcRequestContext` does the same for gRPC calls (metadata ``x-request-id``, echoed in
the initial metadata) and times them into the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persona_core.log_context import accept_request_id, request_id_var
from registry_api.metrics import Metrics, route_template

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


class GrpcRequestContext(grpc.ServerInterceptor):
    """Per gRPC call: the request id (``x-request-id`` metadata, accepted or minted, sent back
    in the initial metadata) on every line logged for it, one access line, and its latency in
    ``persona_grpc_request_duration_seconds`` (method, status code)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        sent = next((v for k, v in details.invocation_metadata or () if k == "x-request-id"), None)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method, sent))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method, sent))
        return handler

    def _unary(self, behavior: Callable[..., Any], method: str, sent: Any) -> Callable[..., Any]:
        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            token, start = self._begin(context, sent), time.perf_counter()
            try:
                return behavior(request, context)
            finally:
                self._end(method, context, start, token)

        return observed

    def _stream(self, behavior: Callable[..., Any], method: str, sent: Any) -> Callable[..., Any]:
        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            token, start = self._begin(context, sent), time.perf_counter()
            try:
                yield from behavior(request, context)
            finally:
                self._end(method, context, start, token)

        return observed

    @staticmethod
    def _begin(context: grpc.ServicerContext, sent: Any) -> Any:
        request_id = accept_request_id(sent if isinstance(sent, str) else None)
        context.send_initial_metadata((("x-request-id", request_id),))
        return request_id_var.set(request_id)

    def _end(self, method: str, context: grpc.ServicerContext, start: float, token: Any) -> None:
        seconds = time.perf_counter() - start
        code = _code(context)
        self.metrics.observe_grpc(method, code, seconds)
        millis = round(seconds * 1000, 1)
        access_log.info(
            "gRPC %s %s %.1f ms",
            method,
            code,
            millis,
            extra={"grpc_method": method, "code": code, "duration_ms": millis},
        )
        request_id_var.reset(token)  # the thread serves other calls next


def _code(context: grpc.ServicerContext) -> str:
    code = context.code()  # set by abort() or set_code(); None: the call went through
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if code is None else str(code)
