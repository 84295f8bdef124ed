"""How many uploads one registry worker takes at a time.

An upload's files are spooled to disk past a size (HTTP) and read one at a time by the gate,
but each upload in flight still holds a worker thread, a decoded image and its spooled parts.
Past ``PERSONA_MAX_CONCURRENT_UPLOADS`` in one worker the next upload is refused at once,
before its body is read, with 503 ``uploads_busy`` and ``Retry-After`` (gRPC: UNAVAILABLE
with the same ``error-code``): the client retries, the worker's memory stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from persona_core.errors import StoreUnavailableError

__all__ = ["UploadSlots", "UploadsBusyError"]


class UploadsBusyError(StoreUnavailableError):
    """Every upload slot of this worker is taken: retry after ``Retry-After`` seconds. A 503 like
    a store that is down (the same retry advice), with its own code."""

    code = "uploads_busy"


class UploadSlots:
    """At most ``limit`` uploads in flight; one more is refused, never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the ``with`` block; UploadsBusyError when none is free."""
        if not self._free.acquire(blocking=False):
            raise UploadsBusyError(
                f"this registry worker is taking {self.limit} uploads already; retry in a moment"
            )
        try:
            yield
        finally:
            self._free.release()
