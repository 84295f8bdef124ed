"""How a registry worker learns that an erasure started in another process.

``persona-core serve`` runs several worker processes, each with its own in-memory caches of
packs, ``latest`` numbers and known blob refs. An erasure is written to the database
(``erasures``) by whichever process runs it; every busy worker reads that log every
``erasure_poll_s`` (0.25 s) and drops what it caches of the erased personas.

No query per request: the hot routes only ask :meth:`fresh` (a clock read), which wakes a
helper thread to look once the last look is ``erasure_poll_s`` old. Memory answers only while
the last look began less than ``erasure_wait_s`` ago (four polls, 1 s: room for a look that a
loaded worker's event loop keeps waiting on the GIL for a hundred milliseconds or more), so
under steady traffic no request waits for a look. Past that (an idle worker) the request goes to
a worker thread, which waits for a look that began at most ``erasure_wait_s`` before it asked
(:meth:`refresh`: the one under way, or a new one; one look at a time, one indexed query). So a
request is only ever answered from memory after a look that began within ``erasure_wait_s`` of
its arrival, and an erasure that waits ``erasure_wait_s`` after its start
(``persona_core.erasure.readers_forget``) is served by no worker from memory once it returns.
A worker that cannot reach the database cannot look, so it serves nothing from memory either
(503, like every other read). The helper ends after ``HELPER_IDLE_S`` without a wake-up and is
started again by the next one.

Job ids come from a sequence: on PostgreSQL a job with a lower id can commit after one with a
higher id. Ids skipped over are watched for ``GAP_WAIT_S`` until they appear (or never do: a
rolled-back start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from math import inf

from persona_core.errors import PersonaCoreError
from persona_core.store.tombstones import ErasureJob, Tombstones

__all__ = ["ErasureWatch"]

log = logging.getLogger(__name__)

GAP_WAIT_S = 60.0  # far longer than the one short transaction that starts an erasure
# A worker's first look also covers the newest jobs, in case one committed out of order.
FIRST_LOOK_BACK = 32
HELPER_IDLE_S = 10.0


class ErasureWatch:
    def __init__(
        self,
        tombstones: Callable[[], Tombstones],
        forget: Callable[[list[ErasureJob]], None],
        *,
        poll_s: float,
        bound_s: float,
    ) -> None:
        if not 0 < poll_s <= bound_s:
            raise ValueError(f"need 0 < poll_s <= bound_s, got {poll_s} and {bound_s}")
        self._tombstones = tombstones
        self.poll_s, self.bound_s = poll_s, bound_s
        self._forget = forget
        # Guards the times below; one look at a time, made without holding it.
        self._cond = threading.Condition()
        self._looked_at = -inf  # when the newest completed look began (monotonic)
        self._looking: float | None = None  # when the look under way began
        self._failed: tuple[float, PersonaCoreError] | None = None  # the newest failed look
        self._last_id: int | None = None  # the highest job id seen
        self._gaps: dict[int, float] = {}  # ids below it not seen yet -> when first missed
        self._wake = threading.Event()
        self._helper: threading.Thread | None = None
        self._helper_lock = threading.Lock()

    def fresh(self) -> bool:
        """Whether the caches may be read now without looking at the log first (no I/O)."""
        age = time.monotonic() - self._looked_at
        if age >= self.poll_s:
            self._look_ahead()
        return age < self.bound_s

    def refresh(self) -> None:
        """Return once a look that began at most ``bound_s`` before this call has ended: the one
        under way if it began late enough, else a new one (never one per waiting request).
        Raises StoreUnavailableError when such a look could not read the log."""
        need = time.monotonic() - self.bound_s
        with self._cond:
            while self._looked_at < need:
                if self._failed is not None and self._failed[0] >= need:
                    raise self._failed[1]
                if self._looking is None:
                    self._look()
                else:
                    self._cond.wait()

    def _look(self) -> None:
        """One look at the log; called holding the condition, which it lets go for the I/O."""
        began = time.monotonic()
        self._looking = began
        failed: PersonaCoreError | None = None
        self._cond.release()
        try:
            new = self._new_jobs(began)  # the bookkeeping is this thread's: one look at a time
            if new:
                self._forget(new)
        except PersonaCoreError as exc:
            failed = exc
        finally:
            self._cond.acquire()
            self._looking = None
            self._cond.notify_all()
        if failed is not None:
            self._failed = (began, failed)
            log.warning("erasure log not read: %s", failed)
        else:
            self._looked_at = began

    def _look_ahead(self) -> None:
        self._wake.set()
        if self._helper is not None and self._helper.is_alive():
            return
        with self._helper_lock:
            if self._helper is None or not self._helper.is_alive():
                self._helper = threading.Thread(target=self._help, name="erasure-watch", daemon=True)
                self._helper.start()

    def _help(self) -> None:
        while self._wake.wait(HELPER_IDLE_S):
            with self._cond:
                if self._looking is None and time.monotonic() - self._looked_at >= self.poll_s:
                    self._look()
            self._wake.clear()

    def _new_jobs(self, now: float) -> list[ErasureJob]:
        tombstones = self._tombstones()
        if self._last_id is None:
            self._last_id = max(0, tombstones.latest_id() - FIRST_LOOK_BACK)
        last = self._last_id
        new = tombstones.started_after(last)
        if self._gaps:
            low = min(self._gaps)
            late = tombstones.started_after(low - 1, limit=last - low + 1)
            new = [job for job in late if job.id in self._gaps] + new
        seen = {job.id for job in new}
        for job_id in seen:
            self._gaps.pop(job_id, None)
        top = max(seen, default=last)
        for job_id in range(last + 1, top):
            if job_id not in seen:
                self._gaps[job_id] = now
        self._last_id = max(last, top)
        for job_id, missed_at in list(self._gaps.items()):
            if now - missed_at > GAP_WAIT_S:
                del self._gaps[job_id]
        return new
