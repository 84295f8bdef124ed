"""Erasure records: the start and end of each erasure job (``erasures``), the persona
tombstone (``personas.erased_at``) and the audit log. None of it holds biometric content: no
file names, no hashes of inputs, no metadata of the erased persona.

Starting an erasure is one transaction: the job row, every version of the subject moved to
``erasing`` (through the version state machine) and, for a whole persona, its metadata
cleared and its id retired. From that commit on every read of the subject answers 410 Gone.
Finishing is another: the versions become ``erased`` tombstones, their published-pack rows go.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from persona_core.errors import InvalidInputError, PersonaNotFoundError, VersionNotFoundError
from persona_core.store import tables as t
from persona_core.store import version_states
from persona_core.store.base import VersionStatus
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.events import emit

__all__ = ["AuditLine", "ErasureJob", "Tombstones"]

S = VersionStatus
_e, _v, _p = t.erasures, t.persona_versions, t.personas


@dataclass(frozen=True, slots=True)
class ErasureJob:
    id: int
    persona_id: str
    version: int | None  # None: the whole persona
    versions: tuple[int, ...]  # the versions it erases
    state: str  # "erasing" | "erased"
    actor: str
    reason: str
    started_at: datetime
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.state == "erased"

    @property
    def subject(self) -> str:
        return self.persona_id if self.version is None else f"{self.persona_id} v{self.version}"


@dataclass(frozen=True, slots=True)
class AuditLine:
    at: datetime
    action: str
    actor: str
    persona_id: str | None
    detail: dict[str, Any]


class Tombstones:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, persona_id: str, version: int | None, *, actor: str, reason: str) -> ErasureJob:
        """Begin (or find, to resume) the erasure of a persona or one version. Idempotent: the
        job of an already erased subject is returned as it is."""
        if not reason.strip():
            raise InvalidInputError("an erasure needs a reason")
        with self._db.tx(write=True) as conn:
            persona = conn.execute(
                self._db.locked(sa.select(_p).where(_p.c.persona_id == persona_id))
            ).first()
            if persona is None:
                raise PersonaNotFoundError(f"persona {persona_id!r} not found")
            existing = _open_or_done(conn, persona_id, version)
            if existing is not None:
                return existing
            query = (
                sa.select(_v.c.version, _v.c.status)
                .where(_v.c.persona_id == persona_id)
                .order_by(_v.c.version)
            )
            if version is not None:
                query = query.where(_v.c.version == version)
            rows = conn.execute(query).all()
            if version is not None and not rows:
                raise VersionNotFoundError(f"persona {persona_id!r} has no version {version}")
            versions = tuple(row.version for row in rows)
            now = utc_now()
            for row in rows:
                if row.status != S.ERASED.value:  # erased before, by a version's own erasure
                    version_states.transition(conn, persona_id, row.version, S.ERASING)
            if version is None:
                conn.execute(
                    sa.update(_p).where(_p.c.persona_id == persona_id).values(metadata={}, erased_at=now)
                )
            _forget_pointers(conn, persona_id, version)
            job_id = conn.execute(
                sa.insert(_e)
                .values(
                    persona_id=persona_id,
                    version=version,
                    state="erasing",
                    actor=actor,
                    reason=reason.strip(),
                    versions=list(versions),
                    started_at=now,
                )
                .returning(_e.c.id)
            ).scalar_one()
            _audit(conn, "erase.start", actor, persona_id, {"version": version, "versions": len(versions)})
            return _job(conn.execute(sa.select(_e).where(_e.c.id == job_id)).one())

    def finish(self, job: ErasureJob, detail: dict[str, Any]) -> ErasureJob:
        """End the job: tombstone versions, drop their published-pack rows, record the end."""
        now = utc_now()
        with self._db.tx(write=True) as conn:
            erasing = (
                conn.execute(
                    sa.select(_v.c.version).where(
                        _v.c.persona_id == job.persona_id,
                        _v.c.version.in_(job.versions),
                        _v.c.status == S.ERASING.value,
                    )
                )
                .scalars()
                .all()
            )
            for v in erasing:
                # The pack row's delete is allowed while the version is erasing (database triggers).
                pp = t.published_packs
                conn.execute(sa.delete(pp).where(pp.c.persona_id == job.persona_id, pp.c.version == v))
                version_states.transition(conn, job.persona_id, v, S.ERASED)
            conn.execute(sa.update(_e).where(_e.c.id == job.id).values(state="erased", finished_at=now))
            # Fleets learn of it from the feed and webhooks too (no reason text: it is free text).
            kind = "persona.erased" if job.version is None else "version.erased"
            emit(conn, kind, job.persona_id, job.version, {"versions": list(job.versions)})
            _audit(conn, "erase.done", job.actor, job.persona_id, {"version": job.version, **detail})
            return _job(conn.execute(sa.select(_e).where(_e.c.id == job.id)).one())

    def job_for(self, persona_id: str, version: int | None = None) -> ErasureJob | None:
        """The erasure that covers the persona (or that version of it), if any."""
        with self._db.tx(write=False) as conn:
            return _covering(conn, persona_id, version)

    def jobs(self, since: datetime | None = None, limit: int = 500) -> list[ErasureJob]:
        """Erasures that ended after ``since``, oldest first: the poll a renderer fleet uses to purge."""
        query = sa.select(_e).where(_e.c.state == "erased").order_by(_e.c.finished_at, _e.c.id).limit(limit)
        if since is not None:
            query = query.where(_e.c.finished_at > since)
        with self._db.tx(write=False) as conn:
            return [_job(row) for row in conn.execute(query)]

    def latest_id(self) -> int:
        """The newest job's id (0 when there is none): one index lookup."""
        with self._db.tx(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_e.c.id), 0))).scalar_one())

    def started_after(self, job_id: int, limit: int = 1000) -> list[ErasureJob]:
        """Jobs, erasing or erased, with an id above ``job_id``, by id: how a registry worker
        learns that an erasure started in another process."""
        query = sa.select(_e).where(_e.c.id > job_id).order_by(_e.c.id).limit(limit)
        with self._db.tx(write=False) as conn:
            return [_job(row) for row in conn.execute(query)]

    def unfinished(self) -> list[ErasureJob]:
        with self._db.tx(write=False) as conn:
            return [_job(row) for row in conn.execute(sa.select(_e).where(_e.c.state == "erasing"))]

    def audit(self, action: str, actor: str, persona_id: str | None, detail: dict[str, Any]) -> None:
        with self._db.tx(write=True) as conn:
            _audit(conn, action, actor, persona_id, detail)

    def audit_log(self, limit: int = 1000) -> Iterator[AuditLine]:
        a = t.audit_log
        with self._db.tx(write=False) as conn:
            rows = conn.execute(sa.select(a).order_by(a.c.id.desc()).limit(limit)).all()
        for row in rows:
            yield AuditLine(aware(row.at) or row.at, row.action, row.actor, row.persona_id, dict(row.detail))


def _forget_pointers(conn: sa.Connection, persona_id: str, version: int | None) -> None:
    """Aliases go with what they point at; a whole persona's alias history and earlier events
    go with it (they name its versions and who moved them)."""
    a, h, ev = t.aliases, t.alias_history, t.events
    if version is None:
        conn.execute(sa.delete(a).where(a.c.persona_id == persona_id))
        conn.execute(sa.delete(h).where(h.c.persona_id == persona_id))
        theirs = sa.select(ev.c.id).where(ev.c.persona_id == persona_id).scalar_subquery()
        conn.execute(sa.delete(t.webhook_attempts).where(t.webhook_attempts.c.event_id.in_(theirs)))
        conn.execute(sa.delete(t.webhook_deliveries).where(t.webhook_deliveries.c.event_id.in_(theirs)))
        conn.execute(sa.delete(ev).where(ev.c.persona_id == persona_id))
        _drop_from_webhook_filters(conn, persona_id)
        return
    conn.execute(sa.delete(a).where(a.c.persona_id == persona_id, a.c.version == version))


def _drop_from_webhook_filters(conn: sa.Connection, persona_id: str) -> None:
    """A subscription's persona filter no longer names the persona; one that named only it
    is disabled (an empty filter would mean nothing, and None would mean everyone)."""
    w = t.webhook_subscriptions
    for row in conn.execute(sa.select(w.c.id, w.c.persona_ids).where(w.c.persona_ids.is_not(None))).all():
        ids = list(row.persona_ids or [])
        if persona_id not in ids:
            continue
        rest = [p for p in ids if p != persona_id]
        values: dict[str, Any] = {"persona_ids": rest}
        if not rest:
            values |= {
                "enabled": False,
                "disabled_at": utc_now(),
                "disabled_reason": "its personas were erased",
            }
        conn.execute(sa.update(w).where(w.c.id == row.id).values(**values))


def _covering(conn: sa.Connection, persona_id: str, version: int | None) -> ErasureJob | None:
    rows = conn.execute(sa.select(_e).where(_e.c.persona_id == persona_id).order_by(_e.c.id)).all()
    for row in rows:
        job = _job(row)
        if job.version is None or (version is not None and version in job.versions):
            return job
    return None


def _open_or_done(conn: sa.Connection, persona_id: str, version: int | None) -> ErasureJob | None:
    """The job to resume or report: the same subject's, or a whole-persona job covering it."""
    for row in conn.execute(sa.select(_e).where(_e.c.persona_id == persona_id).order_by(_e.c.id)).all():
        job = _job(row)
        if job.version is None or job.version == version:
            return job
    return None


def _audit(
    conn: sa.Connection, action: str, actor: str, persona_id: str | None, detail: dict[str, Any]
) -> None:
    conn.execute(
        sa.insert(t.audit_log).values(
            at=utc_now(), action=action, actor=actor, persona_id=persona_id, detail=detail
        )
    )


def _job(row: Any) -> ErasureJob:
    return ErasureJob(
        id=row.id,
        persona_id=row.persona_id,
        version=row.version,
        versions=tuple(row.versions or ()),
        state=row.state,
        actor=row.actor,
        reason=row.reason,
        started_at=aware(row.started_at) or row.started_at,
        finished_at=aware(row.finished_at),
    )
