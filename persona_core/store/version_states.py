"""The version state machine: the one place a version's status is written.

The states and the moves between them are data (:data:`ALLOWED`). Every move is a
compare-and-set in the database, ``UPDATE persona_versions SET status = :to ... WHERE status
IN (:expected) [AND the lease is the caller's]``, and the row count names the winner, so two
writers (a read-time settle and a live heartbeat, a sensor and a hook) can never both win and
no move is decided on a row read earlier. Facts about who builds a version live in columns
(``lease_host``, ``lease_pid``, ``lease_run_id``, ``heartbeat_at``), never in its reasons.

Every move that a consumer cares about (published, blocked, failed, retracted) also writes
its event to the outbox (persona_core.store.events) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import sqlalchemy as sa

from persona_core.errors import (
    BuildInProgressError,
    ImmutableVersionError,
    InvalidTransitionError,
    PersonaNotFoundError,
    VersionNotFoundError,
)
from persona_core.store import tables as t
from persona_core.store.base import BuildLease, VersionRecord, VersionStatus
from persona_core.store.engine import utc_now
from persona_core.store.events import emit

__all__ = ["ALLOWED", "allowed_from", "born", "claim", "heartbeat", "settle", "transition"]

S = VersionStatus

# from -> where it may go. ``pending`` is where a version is born (or ``building``, when its
# builder creates it under its own lease); ``published`` is final but for retraction and
# erasure; ``erased`` is final. building -> building is a claim handed over inside one
# process (the CLI's lease to its run's).
ALLOWED: Final[Mapping[VersionStatus, frozenset[VersionStatus]]] = MappingProxyType({
    S.PENDING: frozenset({S.BUILDING, S.BLOCKED, S.FAILED, S.PUBLISHED, S.ERASING}),
    S.BUILDING: frozenset({S.BUILDING, S.BLOCKED, S.FAILED, S.PUBLISHED, S.ERASING}),
    S.BLOCKED: frozenset({S.BUILDING, S.BLOCKED, S.FAILED, S.ERASING}),
    S.FAILED: frozenset({S.BUILDING, S.BLOCKED, S.FAILED, S.ERASING}),
    S.PUBLISHED: frozenset({S.RETRACTED, S.ERASING}),  # withdrawn, or erased; its pack never changes
    S.RETRACTED: frozenset({S.ERASING}),
    # An erasure is a resumable job: erasing again resumes it; erased is final (a tombstone).
    S.ERASING: frozenset({S.ERASING, S.ERASED}),
    S.ERASED: frozenset(),
})

# The moves consumers are told about (the erasure's own event comes from its job).
_EVENTS: Final[Mapping[VersionStatus, str]] = MappingProxyType({
    S.PUBLISHED: "version.published",
    S.BLOCKED: "version.blocked",
    S.FAILED: "version.failed",
    S.RETRACTED: "version.retracted",
})

_NO_LEASE: Final[dict[str, Any]] = {"lease_host": None, "lease_pid": None, "lease_run_id": None,
                                     "heartbeat_at": None}
_v = t.persona_versions


def allowed_from(to: VersionStatus) -> frozenset[VersionStatus]:
    """The states a version may be in to move to ``to``."""
    return frozenset(s for s, targets in ALLOWED.items() if to in targets)


def _lease_values(lease: BuildLease, now: datetime) -> dict[str, Any]:
    return {"lease_host": lease.host, "lease_pid": lease.pid, "lease_run_id": lease.run_id,
            "heartbeat_at": now}


def _held_by(lease: BuildLease, *, run: bool = True) -> sa.ColumnElement[bool]:
    held = sa.and_(_v.c.lease_host == lease.host, _v.c.lease_pid == lease.pid)
    return sa.and_(held, _v.c.lease_run_id == lease.run_id) if run else held


def born(lease: BuildLease | None, now: datetime) -> dict[str, Any]:
    """The status and lease columns of a new version row: ``pending``, or ``building`` under
    ``lease`` when its builder creates it."""
    if lease is None:
        return {"status": S.PENDING.value, **_NO_LEASE}
    return {"status": S.BUILDING.value, **_lease_values(lease, now)}


def transition(
    conn: sa.Connection,
    persona_id: str,
    version: int,
    to: VersionStatus,
    *,
    reasons: list[str] | None = None,
    checks: list[dict[str, Any]] | None = None,
    holder: BuildLease | None = None,
    run_id: str | None = None,
    expected: Collection[VersionStatus] | None = None,
    published_at: datetime | None = None,
    event_data: Mapping[str, Any] | None = None,
) -> None:
    """Move the version to ``to`` from any state :data:`ALLOWED` lets it leave for ``to``.
    Leaving ``building`` drops the lease; with ``holder`` (``run_id``) a ``building`` version
    moves only when that lease (that run) holds it; ``expected`` narrows the states it may
    move from (e.g. only an unfinished version is failed by a run's end). Raises InvalidTransitionError, or
    ImmutableVersionError for a published version; NotFound errors come from the caller."""
    if to is S.BUILDING:
        raise InvalidTransitionError("a version becomes building only by a claim with a lease")
    sources = allowed_from(to) if expected is None else allowed_from(to) & frozenset(expected)
    where: sa.ColumnElement[bool] = _v.c.status.in_([s.value for s in sources - {S.BUILDING}])
    if S.BUILDING in sources:
        building: sa.ColumnElement[bool] = _v.c.status == S.BUILDING.value
        if holder is not None:
            building = sa.and_(building, _held_by(holder))
        if run_id is not None:
            building = sa.and_(building, _v.c.lease_run_id == run_id)
        where = sa.or_(where, building)
    now = utc_now()
    values: dict[str, Any] = {"status": to.value, "updated_at": now, **_NO_LEASE}
    if reasons is not None:
        values["reasons"] = [str(r) for r in reasons]
    if checks is not None:
        values["checks"] = list(checks)
    if to is S.PUBLISHED:
        values["published_at"] = published_at or now
    if to is S.ERASED:
        # A tombstone keeps no content: no file names, hashes, checks or build reasons.
        values.update(inputs={}, checks=[], reasons=[], retraction_reason=None)
    if to is S.RETRACTED:
        # The pack and its record stay byte for byte; the why goes in its own columns.
        values.pop("reasons", None)
        values.update(retracted_at=now, retraction_reason="; ".join(reasons or []) or "retracted")
    if not _cas(conn, persona_id, version, where, values):
        caller = holder.describe() if holder is not None else (f"run {run_id}" if run_id else "")
        _refuse(conn, persona_id, version, to, caller)
    if to in _EVENTS:
        data: dict[str, Any] = {"status": to.value}
        if to in (S.BLOCKED, S.FAILED, S.RETRACTED):
            data["reasons"] = [str(r) for r in reasons or []]
        data.update(event_data or {})
        emit(conn, _EVENTS[to], persona_id, version, data)


def claim(conn: sa.Connection, persona_id: str, version: int, lease: BuildLease) -> None:
    """``building`` under ``lease``: from pending, blocked or failed, or from building under a
    lease of the same process (the CLI hands its lease to its run). Reasons are cleared."""
    sources = allowed_from(S.BUILDING) - {S.BUILDING}
    where = sa.or_(_v.c.status.in_([s.value for s in sources]),
                   sa.and_(_v.c.status == S.BUILDING.value, _held_by(lease, run=False)))
    now = utc_now()
    values = {"status": S.BUILDING.value, "reasons": [], "updated_at": now, **_lease_values(lease, now)}
    if not _cas(conn, persona_id, version, where, values):
        _refuse(conn, persona_id, version, S.BUILDING, lease.describe())


def heartbeat(conn: sa.Connection, persona_id: str, version: int, lease: BuildLease) -> bool:
    """Renew the heartbeat of a version ``lease`` still holds; False once it does not (the
    build ended it, or it was settled as dead): a heartbeat never changes the status."""
    where = sa.and_(_v.c.status == S.BUILDING.value, _held_by(lease))
    return _cas(conn, persona_id, version, where, {"heartbeat_at": utc_now()})


def settle(conn: sa.Connection, seen: VersionRecord, cause: str) -> bool:
    """Fail a version found dead, only if it still is exactly as ``seen``: ``building`` under
    the same lease with the same heartbeat (a heartbeat since then means it is alive), or
    ``pending`` and untouched since. True when this call failed it."""
    if seen.status is S.BUILDING and seen.lease is not None:
        beat = (_v.c.heartbeat_at.is_(None) if seen.heartbeat_at is None
                else _v.c.heartbeat_at == seen.heartbeat_at)
        where = sa.and_(_v.c.status == S.BUILDING.value, _held_by(seen.lease), beat)
    elif seen.status in (S.PENDING, S.BUILDING):  # building without a lease: rows of old code
        where = sa.and_(_v.c.status == seen.status.value, _v.c.updated_at == seen.updated_at)
    else:
        return False
    values = {"status": S.FAILED.value, "reasons": [cause], "updated_at": utc_now(), **_NO_LEASE}
    if not _cas(conn, seen.persona_id, seen.version, where, values):
        return False
    failed = {"status": S.FAILED.value, "reasons": [cause]}
    emit(conn, _EVENTS[S.FAILED], seen.persona_id, seen.version, failed)
    return True


def _cas(conn: sa.Connection, persona_id: str, version: int, where: sa.ColumnElement[bool],
         values: dict[str, Any]) -> bool:
    result = conn.execute(
        sa.update(_v).where(_v.c.persona_id == persona_id, _v.c.version == version, where).values(**values)
    )
    return result.rowcount == 1


def _refuse(conn: sa.Connection, persona_id: str, version: int, to: VersionStatus, caller: str) -> None:
    """Why the compare-and-set found nothing to change: raised as the typed error."""
    row = conn.execute(
        sa.select(_v.c.status, _v.c.lease_host, _v.c.lease_pid, _v.c.lease_run_id)
        .where(_v.c.persona_id == persona_id, _v.c.version == version)
    ).first()
    if row is None:
        p = t.personas
        if conn.execute(sa.select(p.c.persona_id).where(p.c.persona_id == persona_id)).first() is None:
            raise PersonaNotFoundError(f"persona {persona_id!r} not found")
        raise VersionNotFoundError(f"persona {persona_id!r} has no version {version}")
    current = S(row.status)
    name = f"{persona_id} v{version}"
    if current is S.PUBLISHED:
        raise ImmutableVersionError(f"{name} is published and cannot change")
    if current is S.BUILDING and to in ALLOWED[S.BUILDING]:
        holder = BuildLease(row.lease_host or "?", row.lease_pid or 0, row.lease_run_id or "")
        raise BuildInProgressError(f"{name} is being built by {holder.describe()}"
                                   + (f", not by {caller}" if caller else ""))
    raise InvalidTransitionError(f"{name}: {current} -> {to} is not allowed")
