"""ErasureWatch: a registry worker learns of every erasure, once, whatever order their start
transactions commit in, and looks at the log at most once per poll interval."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from persona_core.errors import StoreUnavailableError
from persona_core.store.tombstones import ErasureJob
from registry_api import erasure_watch
from registry_api.erasure_watch import ErasureWatch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _job(job_id: int, persona_id: str) -> ErasureJob:
    return ErasureJob(job_id, persona_id, None, (1,), "erasing", "test", "reason", NOW, None)


@dataclass
class Log:
    """The committed rows of ``erasures``, and how often the watch asked."""

    jobs: dict[int, ErasureJob] = field(default_factory=dict)
    queries: int = 0

    def commit(self, job_id: int, persona_id: str) -> None:
        self.jobs[job_id] = _job(job_id, persona_id)

    def latest_id(self) -> int:
        self.queries += 1
        return max(self.jobs, default=0)

    def started_after(self, job_id: int, limit: int = 1000) -> list[ErasureJob]:
        self.queries += 1
        return [self.jobs[i] for i in sorted(self.jobs) if i > job_id][:limit]


def _watch(log: Log, forgotten: list[str], poll_s: float = 1e-9) -> ErasureWatch:
    def forget(jobs: list[ErasureJob]) -> None:
        forgotten.extend(job.persona_id for job in jobs)

    return ErasureWatch(lambda: log, forget, poll_s=poll_s, bound_s=4 * poll_s)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize(
    ("commits", "expected"),
    [
        # (id, persona) committed before each look, one list per look -> personas forgotten per look
        ([[(1, "a")], [(2, "b")], []], [["a"], ["b"], []]),
        # id 2 commits before id 1 (PostgreSQL sequences): 1 is a gap until it appears
        ([[(2, "b")], [(1, "a")], [(3, "c")]], [["b"], ["a"], ["c"]]),
        # several at once, one of them late
        ([[(1, "a"), (3, "c")], [], [(2, "b"), (4, "d")]], [["a", "c"], [], ["b", "d"]]),
    ],
)
def test_every_erasure_is_seen_once(commits: list[list[tuple[int, str]]], expected: list[list[str]]) -> None:
    log, forgotten = Log(), list[str]()
    watch = _watch(log, forgotten)
    watch.refresh()  # the first look: nothing yet
    for batch, want in zip(commits, expected, strict=True):
        for job_id, persona_id in batch:
            log.commit(job_id, persona_id)
        forgotten.clear()
        watch.refresh()
        assert sorted(forgotten) == want


def test_a_gap_that_never_fills_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolled-back start leaves its id unused: after GAP_WAIT_S the watch stops asking for it."""
    log, forgotten = Log(), list[str]()
    watch = _watch(log, forgotten)
    watch.refresh()
    log.commit(2, "b")
    watch.refresh()
    assert watch._gaps.keys() == {1}
    monkeypatch.setattr(erasure_watch, "GAP_WAIT_S", -1.0)
    watch.refresh()
    assert watch._gaps == {}


def test_jobs_from_before_the_worker_started_are_looked_at_once() -> None:
    """The first look covers the newest jobs (one may have committed out of order); a worker's
    caches are empty then, so forgetting them costs nothing."""
    log, forgotten = Log(), list[str]()
    for job_id in range(1, 41):
        log.commit(job_id, f"p{job_id}")
    watch = _watch(log, forgotten)
    watch.refresh()
    assert len(forgotten) == erasure_watch.FIRST_LOOK_BACK
    forgotten.clear()
    watch.refresh()
    assert forgotten == []


def test_one_look_per_poll_interval() -> None:
    log: Any = Log()
    watch = _watch(log, [], poll_s=30.0)
    assert not watch.fresh()
    watch.refresh()
    asked = log.queries
    assert watch.fresh()
    for _ in range(100):
        watch.refresh()
    assert log.queries == asked


def test_past_half_the_interval_a_helper_looks_ahead() -> None:
    """Under steady traffic the caches never go stale: once the last look is a poll interval
    old the hot path's clock check wakes a helper thread that looks, so no request waits."""
    log: Any = Log()
    watch = _watch(log, [], poll_s=0.2)
    watch.refresh()
    asked = log.queries
    time.sleep(0.25)
    assert watch.fresh()  # still inside the interval: served from memory, and a look is under way
    deadline = time.monotonic() + 5
    while log.queries == asked:
        assert time.monotonic() < deadline, "the helper did not look"
        time.sleep(0.01)
    time.sleep(0.05)
    assert watch.fresh()


def test_a_look_that_cannot_read_the_log_refuses_the_cached_read() -> None:
    """No database, no look, no answer from memory: StoreUnavailableError (503), at once."""

    class Down(Log):
        def started_after(self, job_id: int, limit: int = 1000) -> list[ErasureJob]:
            raise StoreUnavailableError("database unavailable: frozen")

    watch = _watch(Down(), [])
    with pytest.raises(StoreUnavailableError):
        watch.refresh()
    assert not watch.fresh()


def test_requests_waiting_on_a_look_share_it() -> None:
    """Many requests finding the caches stale wait for one look, not one each."""
    started = threading.Event()
    release = threading.Event()

    class Slow(Log):
        def started_after(self, job_id: int, limit: int = 1000) -> list[ErasureJob]:
            started.set()
            release.wait(5)
            return super().started_after(job_id, limit)

    log = Slow()
    watch = _watch(log, [], poll_s=2.0)
    threads = [threading.Thread(target=watch.refresh) for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(5)
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert log.queries == 2  # the first look's latest_id and started_after, once
