"""Version lifecycle helpers shared by intake, import and the pipeline: failing a version
on error, and build leases, so a version is never ``building`` without a live build
(:func:`mark_dead_builds` fails the ones whose build process or run is gone)."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from persona_core.errors import ImmutableVersionError, InvalidTransitionError
from persona_core.store.base import MetadataStore, VersionRecord, VersionStatus

__all__ = ["DIED_PREFIX", "BuildLease", "LeaseKeeper", "RunCause", "dead_build_cause",
           "fail_version_on_error", "mark_dead_builds", "settle_dead_build"]

log = logging.getLogger(__name__)

# These say the stored status already is what it should be (published, blocked, failed):
# rewriting it to ``failed`` would only erase the real state and its reasons.
_STATE_IS_RIGHT = (ImmutableVersionError, InvalidTransitionError)


@contextmanager
def fail_version_on_error(meta: MetadataStore, persona_id: str, version: int, step: str) -> Iterator[None]:
    """On any exception inside the block, mark the version ``failed`` with the reason
    ``"<step>: <ErrorType>: <message>"`` and re-raise the original exception.

    Marking is best effort: when it fails too (typically because the database is the thing
    that is down), that second failure is logged and noted on the original exception, which
    is the one that propagates. ImmutableVersionError and InvalidTransitionError leave the
    stored status alone.
    """
    try:
        yield
    except _STATE_IS_RIGHT:
        raise
    except Exception as exc:
        try:
            meta.set_status(persona_id, version, VersionStatus.FAILED,
                            reasons=[f"{step}: {type(exc).__name__}: {exc}"])
        except Exception as secondary:  # must never replace the original error
            log.exception("could not mark %s v%s failed after %s", persona_id, version, step)
            exc.add_note(f"(the version could not be marked failed: {type(secondary).__name__}: {secondary})")
        raise


# --- build leases: a `building` version is held by a live build ----------------------------

LEASE_PREFIX = "build lease: "
DIED_PREFIX = "build process died"


@dataclass(frozen=True, slots=True)
class BuildLease:
    """Who builds a version: written as the version's one reason while it is ``building``."""

    host: str
    pid: int
    run_id: str

    def reason(self) -> str:
        return f"{LEASE_PREFIX}run {self.run_id or '-'} pid {self.pid} on {self.host}"

    @classmethod
    def parse(cls, reasons: list[str]) -> BuildLease | None:
        for line in reasons:
            match = _LEASE_RE.fullmatch(line)
            if match:
                run_id = match["run"]
                return cls(match["host"], int(match["pid"]), "" if run_id == "-" else run_id)
        return None

    @classmethod
    def here(cls, run_id: str = "") -> BuildLease:
        return cls(socket.gethostname(), os.getpid(), run_id)

    def process_gone(self) -> bool:
        """True only when the process is on this host and no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return _is_zombie(self.pid)


_LEASE_RE = re.compile(r"build lease: run (?P<run>\S+) pid (?P<pid>\d+) on (?P<host>\S+)")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class LeaseKeeper:
    """Holds a build lease on one version: marks it ``building`` with the lease as reason,
    refreshes it every ``heartbeat_s`` (a daemon thread) until ``stop``; a SIGKILLed build
    stops refreshing, and :func:`mark_dead_builds` fails the version."""

    def __init__(self, meta: MetadataStore, persona_id: str, version: int, run_id: str = "",
                 heartbeat_s: float = 5.0) -> None:
        self.meta, self.persona_id, self.version = meta, persona_id, version
        self.lease = BuildLease.here(run_id)
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> VersionRecord:
        record = self.meta.set_status(self.persona_id, self.version, VersionStatus.BUILDING,
                                      reasons=[self.lease.reason()])
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.persona_id}.v{self.version}",
                                        daemon=True)
        self._thread.start()
        return record

    def guard(self, meta: MetadataStore) -> MetadataStore:
        """``meta`` whose status writes wait for a heartbeat in flight, so a heartbeat never
        turns a version the build just ended (blocked, failed) back into ``building``."""
        return cast(MetadataStore, _Guarded(meta, self._lock))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._lock:
                    record = self.meta.get_version(self.persona_id, self.version)
                    if record.status is not VersionStatus.BUILDING:
                        return  # the build ended it (published, blocked, failed)
                    self.meta.set_status(self.persona_id, self.version, VersionStatus.BUILDING,
                                         reasons=[self.lease.reason()])
            except (ImmutableVersionError, InvalidTransitionError):
                return
            except Exception:  # a store outage: keep trying, the lease may lapse meanwhile
                log.warning("lease heartbeat for %s v%s failed", self.persona_id, self.version, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)


class _Guarded:
    def __init__(self, inner: MetadataStore, lock: threading.Lock) -> None:
        self._inner, self._lock = inner, lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def set_status(self, *args: Any, **kwargs: Any) -> VersionRecord:
        with self._lock:
            return self._inner.set_status(*args, **kwargs)

    def publish(self, *args: Any, **kwargs: Any) -> VersionRecord:
        with self._lock:
            return self._inner.publish(*args, **kwargs)


RunCause = Callable[[str], str | None]
"""run id -> why that run is over without finishing the version (None: still running)."""


def dead_build_cause(record: VersionRecord, *, ttl_s: float, run_cause: RunCause | None = None,
                     now: datetime | None = None) -> str | None:
    """Why ``record`` (status ``building``) has no live build, or None when it has one."""
    if record.status is not VersionStatus.BUILDING:
        return None
    now = now or datetime.now(UTC)
    updated = record.updated_at if record.updated_at.tzinfo else record.updated_at.replace(tzinfo=UTC)
    age = (now - updated).total_seconds()
    lease = BuildLease.parse(record.reasons)
    where = f"run {lease.run_id or '-'}, pid {lease.pid} on {lease.host}" if lease else "no lease"
    if lease is not None and lease.process_gone():
        return f"{DIED_PREFIX} ({where}: the process is gone)"
    if lease is not None and lease.run_id and run_cause is not None:
        cause = run_cause(lease.run_id)
        if cause:
            return f"{DIED_PREFIX} ({where}: {cause})"
    if age > ttl_s:
        return f"{DIED_PREFIX} ({where}: no heartbeat for {age:.0f} s)"
    return None


def mark_dead_builds(meta: MetadataStore, persona_id: str | None = None, *, ttl_s: float = 30.0,
                     run_cause: RunCause | None = None) -> list[VersionRecord]:
    """Mark every ``building`` version without a live build ``failed`` with the reason
    "build process died (...)", and return the versions it marked.

    A build is dead when its lease's process is gone (same host), its Dagster run is over
    (``run_cause``), or its heartbeat is older than ``ttl_s``. ``persona_id`` limits the scan
    to one persona; None scans them all. A version that moved on meanwhile is left alone.
    A failed version can be built again (re-run its partition) or uploaded as a new version.
    """
    marked = []
    for record in _building_versions(meta, persona_id):
        settled, did_mark = _settle(meta, record, ttl_s=ttl_s, run_cause=run_cause)
        if did_mark:
            marked.append(settled)
    return marked


def settle_dead_build(meta: MetadataStore, record: VersionRecord, *, ttl_s: float,
                      run_cause: RunCause | None = None) -> VersionRecord:
    """``record`` as it stands once a dead build is failed: the same object when its build is
    alive (or it is not building), the ``failed`` record when its build was dead."""
    return _settle(meta, record, ttl_s=ttl_s, run_cause=run_cause)[0]


def _settle(meta: MetadataStore, record: VersionRecord, *, ttl_s: float,
            run_cause: RunCause | None) -> tuple[VersionRecord, bool]:
    cause = dead_build_cause(record, ttl_s=ttl_s, run_cause=run_cause)
    if cause is None:
        return record, False
    current = meta.get_version(record.persona_id, record.version)
    if current.status is not VersionStatus.BUILDING or current.updated_at != record.updated_at:
        return current, False  # it heartbeated or ended since we read it
    try:
        failed = meta.set_status(record.persona_id, record.version, VersionStatus.FAILED, reasons=[cause])
    except (ImmutableVersionError, InvalidTransitionError):
        return meta.get_version(record.persona_id, record.version), False
    log.warning("%s v%s: %s", record.persona_id, record.version, cause)
    return failed, True


def _building_versions(meta: MetadataStore, persona_id: str | None) -> Iterator[VersionRecord]:
    if persona_id is not None:
        yield from _building(meta, persona_id)
        return
    after: str | None = None
    while True:
        page = meta.list_personas(limit=200, after=after)
        for persona in page:
            yield from _building(meta, persona.persona_id)
        if len(page) < 200:
            return
        after = page[-1].persona_id


def _building(meta: MetadataStore, persona_id: str) -> Iterator[VersionRecord]:
    return (r for r in meta.list_versions(persona_id) if r.status is VersionStatus.BUILDING)
