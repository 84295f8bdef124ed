"""The request a log line belongs to: a request id held in a context variable.

The registry sets it for each HTTP request (``X-Request-ID``, accepted or minted) and gRPC
call (metadata ``x-request-id``); :class:`RequestIdFilter`, on persona-core's log handler, puts
it on every record logged while that request is handled (threads the request hands work to
included: they run in a copy of its context), as ``request_id``.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# What a client may send as its own id: a UUID, a trace id, a short token; anything else is
# replaced by a fresh id, so no header can forge log structure or flood a line.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("persona_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(sent: str | None) -> str:
    """The client's id when it is a plain token of at most 128 characters, else a new one."""
    if sent and _ACCEPTED.match(sent):
        return sent
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
