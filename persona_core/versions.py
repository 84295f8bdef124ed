"""Version lifecycle helpers shared by intake, import and the pipeline: failing a version on
error, build leases (a version is never ``building`` without a live build), and settling the
versions nobody will finish: :func:`mark_dead_builds` fails a ``building`` version whose build
process or run is gone, and a ``pending`` version no build picked up in time.

Every status change here goes through the metadata store's compare-and-set transitions
(:mod:`persona_core.store.version_states`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from persona_core.errors import ImmutableVersionError, InvalidTransitionError
from persona_core.store.base import BuildLease, MetadataStore, VersionRecord, VersionStatus

__all__ = ["DIED_PREFIX", "NOT_STARTED_PREFIX", "LeaseKeeper", "RunCause", "dead_build_cause",
           "fail_version_on_error", "mark_dead_builds", "settle_dead_build", "settle_dead_builds"]

log = logging.getLogger(__name__)

# These say the stored status already is what it should be (published, blocked, failed):
# rewriting it to ``failed`` would only erase the real state and its reasons.
_STATE_IS_RIGHT = (ImmutableVersionError, InvalidTransitionError)

DIED_PREFIX = "build process died"
NOT_STARTED_PREFIX = "no build service picked this up"


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
            meta.transition(persona_id, version, VersionStatus.FAILED,
                            reasons=[f"{step}: {type(exc).__name__}: {exc}"])
        except Exception as secondary:  # must never replace the original error
            log.exception("could not mark %s v%s failed after %s", persona_id, version, step)
            exc.add_note(f"(the version could not be marked failed: {type(secondary).__name__}: {secondary})")
        raise


class LeaseKeeper:
    """Holds a build lease on one version: claims it ``building`` under this process's lease,
    renews the heartbeat every ``heartbeat_s`` (a daemon thread) until ``stop`` or until the
    version leaves the lease (the build ended it, or it was settled as dead). A SIGKILLed build
    stops beating, and :func:`mark_dead_builds` fails the version."""

    def __init__(self, meta: MetadataStore, persona_id: str, version: int, run_id: str = "",
                 heartbeat_s: float = 5.0) -> None:
        self.meta, self.persona_id, self.version = meta, persona_id, version
        self.lease = BuildLease.here(run_id)
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> VersionRecord:
        record = self.meta.claim(self.persona_id, self.version, self.lease)
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.persona_id}.v{self.version}",
                                        daemon=True)
        self._thread.start()
        return record

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.meta.heartbeat(self.persona_id, self.version, self.lease):
                    return  # no longer ours: published, blocked, failed or handed over
            except Exception:  # a store outage: keep trying, the lease may lapse meanwhile
                log.warning("lease heartbeat for %s v%s failed", self.persona_id, self.version, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)


RunCause = Callable[[str], str | None]
"""run id -> why that run is over without finishing the version (None: still running)."""


def _age_s(since: datetime, now: datetime) -> float:
    return (now - (since if since.tzinfo else since.replace(tzinfo=UTC))).total_seconds()


def dead_build_cause(record: VersionRecord, *, ttl_s: float, run_cause: RunCause | None = None,
                     now: datetime | None = None, pending_timeout_s: float | None = None) -> str | None:
    """Why ``record`` will never be finished by a build, or None when it may still be: a
    ``building`` version whose process is gone, whose run is over or whose heartbeat is older
    than ``ttl_s``; with ``pending_timeout_s``, a ``pending`` version older than that."""
    now = now or datetime.now(UTC)
    if record.status is VersionStatus.PENDING:
        if pending_timeout_s is None or _age_s(record.created_at, now) <= pending_timeout_s:
            return None
        return (f"{NOT_STARTED_PREFIX} in {pending_timeout_s / 60:g} min (is the Dagster daemon running?); "
                "re-run its partition or upload again")
    if record.status is not VersionStatus.BUILDING:
        return None
    cause = _why_dead(record, ttl_s, run_cause, now)
    where = record.lease.describe() if record.lease else "no lease"
    return None if cause is None else f"{DIED_PREFIX} ({where}: {cause})"


def _why_dead(record: VersionRecord, ttl_s: float, run_cause: RunCause | None, now: datetime) -> str | None:
    lease = record.lease
    if lease is not None and lease.process_gone():
        return "the process is gone"
    run_over = run_cause(lease.run_id) if lease is not None and lease.run_id and run_cause else None
    if run_over:
        return run_over
    age = _age_s(record.heartbeat_at or record.updated_at, now)
    return f"no heartbeat for {age:.0f} s" if age > ttl_s else None


def mark_dead_builds(meta: MetadataStore, persona_id: str | None = None, *, ttl_s: float = 30.0,
                     run_cause: RunCause | None = None,
                     pending_timeout_s: float | None = None) -> list[VersionRecord]:
    """Fail every version no build will finish (see :func:`dead_build_cause`) and return the
    versions this call failed.

    ``persona_id`` limits the scan to one persona; None scans them all. Each is failed by a
    compare-and-set on the row as it was read, so a version that heartbeated or moved on
    meanwhile is left alone. A failed version can be built again (re-run its partition) or
    uploaded as a new version.
    """
    return [failed for _, failed in settle_dead_builds(meta, persona_id, ttl_s=ttl_s, run_cause=run_cause,
                                                       pending_timeout_s=pending_timeout_s)]


def settle_dead_builds(meta: MetadataStore, persona_id: str | None = None, *, ttl_s: float = 30.0,
                       run_cause: RunCause | None = None, pending_timeout_s: float | None = None
                       ) -> Iterator[tuple[VersionRecord, VersionRecord]]:
    """:func:`mark_dead_builds`, yielding each version as it was seen (with its lease) and as
    it was failed."""
    for record in _unfinished_versions(meta, persona_id):
        cause = dead_build_cause(record, ttl_s=ttl_s, run_cause=run_cause,
                                 pending_timeout_s=pending_timeout_s)
        failed = None if cause is None else _settle_with(meta, record, cause)
        if failed is not None:
            yield record, failed


def settle_dead_build(meta: MetadataStore, record: VersionRecord, *, ttl_s: float,
                      run_cause: RunCause | None = None,
                      pending_timeout_s: float | None = None) -> VersionRecord:
    """``record`` as it stands once a dead build is failed: the same object when its build is
    alive (or it is finished), the ``failed`` record when its build was dead, the current row
    when it moved on meanwhile."""
    cause = dead_build_cause(record, ttl_s=ttl_s, run_cause=run_cause, pending_timeout_s=pending_timeout_s)
    if cause is None:
        return record
    return _settle_with(meta, record, cause) or meta.get_version(record.persona_id, record.version)


def _settle_with(meta: MetadataStore, record: VersionRecord, cause: str) -> VersionRecord | None:
    failed = meta.settle(record, cause)
    if failed is not None:
        log.warning("%s v%s: %s", record.persona_id, record.version, cause)
    return failed


def _unfinished_versions(meta: MetadataStore, persona_id: str | None) -> Iterator[VersionRecord]:
    if persona_id is not None:
        yield from _unfinished(meta, persona_id)
        return
    after: str | None = None
    while True:
        page = meta.list_personas(limit=200, after=after)
        for persona in page:
            yield from _unfinished(meta, persona.persona_id)
        if len(page) < 200:
            return
        after = page[-1].persona_id


def _unfinished(meta: MetadataStore, persona_id: str) -> Iterator[VersionRecord]:
    return (r for r in meta.list_versions(persona_id)
            if r.status in (VersionStatus.BUILDING, VersionStatus.PENDING))
