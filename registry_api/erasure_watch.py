"""How a registry worker learns that an erasure started in another process.

``persona-core serve`` runs several worker processes, each with its own in-memory caches of
packs, ``latest`` numbers and known blob refs. An erasure is written to the database
(``erasures``) by whichever process runs it; every worker reads that log at most
``erasure_poll_s`` apart (0.25 s) and drops what it caches of the erased personas.

No query per request: the hot routes only ask :meth:`fresh` (a clock read). Past half the
interval it also wakes a helper thread that looks ahead, so under steady traffic no request
ever waits for a look; when the last look is older than ``erasure_poll_s`` (an idle worker) the
request goes to a worker thread, which looks first (:meth:`refresh`, one indexed query, one
thread at a time). So a cache entry is only ever used within ``erasure_poll_s`` of the start of
a look at the log, and an erasure that waits ``erasure_poll_s`` after its start
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
        poll_s: float,
        forget: Callable[[list[ErasureJob]], None],
    ) -> None:
        self._tombstones = tombstones
        self.poll_s = poll_s
        self._forget = forget
        self._lock = threading.Lock()
        self._last_id: int | None = None  # the highest job id seen
        self._gaps: dict[int, float] = {}  # ids below it not seen yet -> when first missed
        self._looked_at = -inf  # monotonic time the last successful look began
        self._wake = threading.Event()
        self._helper: threading.Thread | None = None
        self._helper_lock = threading.Lock()

    def fresh(self) -> bool:
        """Whether the caches may be read now without looking at the log first (no I/O)."""
        age = time.monotonic() - self._looked_at
        if age >= self.poll_s / 2:
            self._look_ahead()
        return age < self.poll_s

    def refresh(self) -> None:
        """Look at the log unless a look began within ``erasure_poll_s``; drop what new erasures
        cover. Raises StoreUnavailableError when the database does not answer."""
        self._look_if_older(self.poll_s)

    def _look_if_older(self, age_s: float) -> None:
        if time.monotonic() - self._looked_at < age_s:
            return
        with self._lock:
            if time.monotonic() - self._looked_at < age_s:  # another thread looked meanwhile
                return
            began = time.monotonic()
            new = self._new_jobs(began)
            if new:
                self._forget(new)
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
            try:
                self._look_if_older(self.poll_s / 2)
            except PersonaCoreError as exc:  # the next cached read looks itself, and answers 503
                log.warning("erasure log not read: %s", exc)
            finally:
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
