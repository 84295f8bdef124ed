"""Which blobs and named objects each version holds (``version_refs``), and the handshake that
keeps a deletion from racing an upload that reuses the same bytes.

Blobs are content-addressed, so one photo uploaded for two people is one blob held by two
versions. Erasure and GC delete a blob only when no version outside what they erase holds it.
The race: GC finds a blob nobody holds while an upload of the same bytes is recording its
reference. Both sides take a per-reference lock in the database (PostgreSQL: an advisory
transaction lock on the ref; SQLite: its single writer), so one of two orders holds:

* the upload recorded its reference first: the deleter sees it and keeps the blob;
* the deleter marked the blob (``gc_deleting``) first: the upload sees the mark, waits until
  the deletion is over and writes the bytes again.

Writers therefore record a reference *before* they write the bytes (:meth:`RefIndex.record`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from persona_core.errors import StoreUnavailableError, VersionErasedError
from persona_core.store import tables as t
from persona_core.store.engine import Database, aware, utc_now

__all__ = ["BLOB", "OBJECT", "STALE_MARK_S", "Held", "RefIndex", "RefKind"]

# A deleter's mark lives for one store call (seconds); one older than this was left by a
# deleter that died between mark and unmark.
STALE_MARK_S = 30.0

RefKind = Literal["blob", "object"]
BLOB: RefKind = "blob"
OBJECT: RefKind = "object"
_r, _d = t.version_refs, t.gc_deleting


@dataclass(frozen=True, slots=True)
class Held:
    """One reference a version holds."""

    kind: RefKind
    ref: str


class RefIndex:
    """The reference index in the metadata database (shares its connection pool)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, persona_id: str, version: int, held: Iterable[Held]) -> list[Held]:
        """Record that the version holds ``held`` (idempotent); returns those whose deletion is
        under way: write them (again) only after :meth:`wait_deleted`. A version being erased
        holds nothing new: VersionErasedError (a build still running stops there)."""
        items = sorted(set(held), key=lambda h: (h.kind, h.ref))
        if not items:
            return []
        with self._db.tx(write=True) as conn:
            _must_be_live(conn, persona_id, version)
            return self.record_in(conn, persona_id, version, items)

    def record_in(
        self, conn: sa.Connection, persona_id: str, version: int, held: Iterable[Held]
    ) -> list[Held]:
        """:meth:`record` inside the caller's transaction (publish records its pack's blobs in
        the transaction that publishes it)."""
        items = sorted(set(held), key=lambda h: (h.kind, h.ref))
        if not items:
            return []
        self._lock_all(conn, items)
        dialect = postgresql if self._db.is_postgres else sqlite
        now = utc_now()
        rows = [
            {"persona_id": persona_id, "version": version, "kind": h.kind, "ref": h.ref, "created_at": now}
            for h in items
        ]
        conn.execute(dialect.insert(_r).values(rows).on_conflict_do_nothing())
        return self._deleting(conn, items)

    def wait_deleted(self, held: Collection[Held], timeout_s: float = 60.0) -> None:
        """Wait until no deletion of ``held`` is under way. A deleter marks, deletes and
        unmarks within seconds (its store calls time out well before); a mark older than
        :data:`STALE_MARK_S` was left by a deleter that died, and is cleared here."""
        deadline = time.monotonic() + timeout_s
        pending = list(held)
        while pending:
            with self._db.tx(write=True) as conn:
                stale_before = utc_now().timestamp() - STALE_MARK_S
                marks = conn.execute(self._marks(pending)).all()
                pending = []
                for mark in marks:
                    if _age_mark(mark.started_at) < stale_before:
                        conn.execute(sa.delete(_d).where(_d.c.kind == mark.kind, _d.c.ref == mark.ref))
                    else:
                        pending.append(Held(mark.kind, mark.ref))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"a deletion of {len(pending)} blob(s) did not end in {timeout_s:g} s"
                )
            time.sleep(0.05)

    def held_by(self, persona_id: str, versions: Collection[int] | None = None) -> list[Held]:
        """What the persona's versions (all, or ``versions``) hold."""
        query = sa.select(_r.c.kind, _r.c.ref).where(_r.c.persona_id == persona_id).distinct()
        if versions is not None:
            query = query.where(_r.c.version.in_(list(versions)))
        with self._db.tx(write=False) as conn:
            return [Held(row.kind, row.ref) for row in conn.execute(query)]

    def holders(self, held: Held) -> list[tuple[str, int]]:
        """(persona, version) of every version that holds ``held``."""
        query = sa.select(_r.c.persona_id, _r.c.version).where(_r.c.kind == held.kind, _r.c.ref == held.ref)
        with self._db.tx(write=False) as conn:
            return [(row.persona_id, row.version) for row in conn.execute(query)]

    def all_held(self, kind: RefKind) -> set[str]:
        """Every reference of ``kind`` some version holds (GC's mark)."""
        with self._db.tx(write=False) as conn:
            return set(conn.execute(sa.select(_r.c.ref).where(_r.c.kind == kind).distinct()).scalars())

    def begin_delete(
        self,
        held: Sequence[Held],
        *,
        except_persona: str | None = None,
        except_versions: Collection[int] = (),
    ) -> list[Held]:
        """Mark each of ``held`` as being deleted unless a version holds it (other than the
        erased ``except_persona`` versions ``except_versions``, or all its versions when that is
        empty). Returns the ones marked: delete them from the store, then :meth:`end_delete`.
        One transaction for the batch."""
        items = _unique(held)
        if not items:
            return []
        with self._db.tx(write=True) as conn:
            self._lock_all(conn, items)
            holders = sa.select(_r.c.kind, _r.c.ref).where(sa.tuple_(_r.c.kind, _r.c.ref).in_(_pairs(items)))
            if except_persona is not None:
                mine = _r.c.persona_id == except_persona
                if except_versions:
                    mine = sa.and_(mine, _r.c.version.in_(list(except_versions)))
                holders = holders.where(sa.not_(mine))
            still_held = {Held(row.kind, row.ref) for row in conn.execute(holders)}
            marked = [h for h in items if h not in still_held]
            if marked:
                dialect = postgresql if self._db.is_postgres else sqlite
                now = utc_now()
                rows = [{"kind": h.kind, "ref": h.ref, "started_at": now} for h in marked]
                conn.execute(dialect.insert(_d).values(rows).on_conflict_do_nothing())
            return marked

    def end_delete(
        self, held: Sequence[Held], *, persona_id: str | None = None, versions: Collection[int] = ()
    ) -> None:
        """The deletions of ``held`` are over: unmark them, and drop the erased versions' rows."""
        items = _unique(held)
        if not items:
            return
        with self._db.tx(write=True) as conn:
            conn.execute(sa.delete(_d).where(sa.tuple_(_d.c.kind, _d.c.ref).in_(_pairs(items))))
            if persona_id is not None:
                self._forget(conn, persona_id, versions, items)

    def forget(self, persona_id: str, versions: Collection[int], held: Sequence[Held]) -> None:
        """The erased versions no longer hold ``held`` (which stays: someone else holds it)."""
        items = _unique(held)
        if items:
            with self._db.tx(write=True) as conn:
                self._forget(conn, persona_id, versions, items)

    def stale_deletions(self, older_than_s: float) -> Iterator[Held]:
        """Marks left by a deleter that died between mark and unmark (resumed by GC)."""
        cutoff = utc_now().timestamp() - older_than_s
        with self._db.tx(write=False) as conn:
            rows = conn.execute(sa.select(_d.c.kind, _d.c.ref, _d.c.started_at)).all()
        for row in rows:
            if _age_mark(row.started_at) < cutoff:
                yield Held(row.kind, row.ref)

    @staticmethod
    def _forget(conn: sa.Connection, persona_id: str, versions: Collection[int], items: list[Held]) -> None:
        where = sa.and_(_r.c.persona_id == persona_id, sa.tuple_(_r.c.kind, _r.c.ref).in_(_pairs(items)))
        if versions:
            where = sa.and_(where, _r.c.version.in_(list(versions)))
        conn.execute(sa.delete(_r).where(where))

    def _lock_all(self, conn: sa.Connection, items: Collection[Held]) -> None:
        """Per-reference locks, taken in one statement and in key order (no deadlock between
        two batches). SQLite's write transaction already excludes every other writer."""
        if self._db.is_postgres:
            keys = sorted({zlib.crc32(f"{h.kind}:{h.ref}".encode()) for h in items})
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                {"keys": keys},
            )

    @staticmethod
    def _marks(items: Collection[Held]) -> sa.Select[Any]:
        return sa.select(_d.c.kind, _d.c.ref, _d.c.started_at).where(
            sa.tuple_(_d.c.kind, _d.c.ref).in_(_pairs(items))
        )

    def _deleting(self, conn: sa.Connection, items: Collection[Held]) -> list[Held]:
        if not items:
            return []
        return [Held(row.kind, row.ref) for row in conn.execute(self._marks(items))]


def _must_be_live(conn: sa.Connection, persona_id: str, version: int) -> None:
    v = t.persona_versions
    row = conn.execute(
        sa.select(v.c.status, v.c.updated_at).where(v.c.persona_id == persona_id, v.c.version == version)
    ).first()
    if row is not None and row.status in ("erasing", "erased"):
        at = aware(row.updated_at) or row.updated_at
        raise VersionErasedError(f"{persona_id} v{version} is being erased", started_at=at)


def _age_mark(started_at: datetime) -> float:
    """The mark's start as a POSIX time (SQLite hands back naive UTC datetimes)."""
    return (aware(started_at) or started_at).timestamp()


def _unique(held: Iterable[Held]) -> list[Held]:
    return sorted(set(held), key=lambda h: (h.kind, h.ref))


def _pairs(items: Iterable[Held]) -> list[tuple[str, str]]:
    return [(h.kind, h.ref) for h in items]
