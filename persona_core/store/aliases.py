"""Aliases: named pointers per persona (``live``, ``staging``) that a renderer fleet pins, moved
by promote and rollback. Every move is a compare-and-set on what the caller believes the alias
points at (a lost race is AliasConflictError, never a silent overwrite), is recorded in
``alias_history`` (who, when, from, to, why) and writes an ``alias.moved`` event, all in one
transaction. An alias points only at a published version: never at a retracted or erased
one, and a version an alias points at cannot be retracted (persona_core.store.metadata)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from persona_core.errors import (
    AliasConflictError,
    AliasNotFoundError,
    InvalidInputError,
    InvalidNameError,
    InvalidTransitionError,
    PersonaNotFoundError,
    VersionNotFoundError,
)
from persona_core.store import tables as t
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.events import emit

__all__ = ["ALIAS_PATTERN", "UNSET", "Alias", "AliasMove", "AliasStore", "check_alias_name"]

# Like a persona id; ``latest`` is computed (the newest published version), never stored.
ALIAS_PATTERN: Final = r"[a-z][a-z0-9_-]{0,62}"
_ALIAS_RE = re.compile(ALIAS_PATTERN)
RESERVED: Final = frozenset({"latest"})
UNSET: Final = -1  # "the caller believes the alias does not exist yet"
_a, _h, _v = t.aliases, t.alias_history, t.persona_versions


@dataclass(frozen=True, slots=True)
class Alias:
    persona_id: str
    name: str
    version: int
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class AliasMove:
    persona_id: str
    name: str
    from_version: int | None
    to_version: int | None  # None: deleted
    actor: str
    reason: str
    at: datetime


def check_alias_name(name: str) -> str:
    if not isinstance(name, str) or not _ALIAS_RE.fullmatch(name) or name in RESERVED:
        raise InvalidNameError(
            f"bad alias {name!r}: lowercase letters, digits, '_', '-' (max 63), starting with a letter;"
            " 'latest' is reserved"
        )
    return name


class AliasStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, persona_id: str, name: str) -> Alias:
        with self._db.tx(write=False) as conn:
            row = conn.execute(sa.select(_a).where(_a.c.persona_id == persona_id, _a.c.name == name)).first()
            if row is None:
                _persona_must_exist(conn, persona_id)
                raise AliasNotFoundError(f"persona {persona_id!r} has no alias {name!r}")
        return _alias(row)

    def all(self, persona_id: str) -> list[Alias]:
        with self._db.tx(write=False) as conn:
            _persona_must_exist(conn, persona_id)
            rows = conn.execute(sa.select(_a).where(_a.c.persona_id == persona_id).order_by(_a.c.name))
            return [_alias(row) for row in rows]

    def history(self, persona_id: str, name: str | None = None, limit: int = 100) -> list[AliasMove]:
        """Moves, newest first."""
        query = sa.select(_h).where(_h.c.persona_id == persona_id).order_by(_h.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(_h.c.name == name)
        with self._db.tx(write=False) as conn:
            return [_move(row) for row in conn.execute(query)]

    def move(
        self,
        persona_id: str,
        name: str,
        version: int | None,
        *,
        expected: int | None,
        actor: str,
        reason: str,
    ) -> AliasMove:
        """Point ``name`` at ``version`` (None deletes it) if it still points at ``expected``
        (:data:`UNSET`: it must not exist; None: whatever it points at, for tools that do not
        care). Raises AliasConflictError naming where it points now when someone moved it first."""
        check_alias_name(name)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("moving an alias needs a reason")
        now = utc_now()
        try:
            with self._db.tx(write=True) as conn:
                _persona_must_exist(conn, persona_id)
                if version is not None:
                    _must_be_published(conn, self._db, persona_id, version)
                current = conn.execute(
                    self._db.locked(
                        sa.select(_a.c.version).where(_a.c.persona_id == persona_id, _a.c.name == name)
                    )
                ).scalar()
                _check_expected(persona_id, name, current, expected)
                if current is None and version is None:
                    raise AliasNotFoundError(f"persona {persona_id!r} has no alias {name!r}")
                where = sa.and_(_a.c.persona_id == persona_id, _a.c.name == name)
                if version is None:
                    done = conn.execute(sa.delete(_a).where(where, _a.c.version == current)).rowcount
                elif current is None:
                    conn.execute(
                        sa.insert(_a).values(
                            persona_id=persona_id,
                            name=name,
                            version=version,
                            updated_at=now,
                            updated_by=actor,
                        )
                    )
                    done = 1
                else:
                    done = conn.execute(
                        sa.update(_a)
                        .where(where, _a.c.version == current)
                        .values(version=version, updated_at=now, updated_by=actor)
                    ).rowcount
                if done != 1:  # the compare-and-set lost to a concurrent move
                    raise AliasConflictError(
                        f"alias {name!r} of {persona_id} moved meanwhile; read it and retry"
                    )
                conn.execute(
                    sa.insert(_h).values(
                        persona_id=persona_id,
                        name=name,
                        from_version=current,
                        to_version=version,
                        actor=actor,
                        reason=reason.strip(),
                        at=now,
                    )
                )
                emit(
                    conn, "alias.moved", persona_id, version, {"alias": name, "from": current, "to": version}
                )
        except sa_exc.IntegrityError:  # two creators of the same new alias: one insert wins
            raise AliasConflictError(
                f"alias {name!r} of {persona_id} was created meanwhile; read it and retry"
            ) from None
        return AliasMove(persona_id, name, current, version, actor, reason.strip(), now)

    def rollback(self, persona_id: str, name: str, *, actor: str, reason: str) -> AliasMove:
        """Move ``name`` back to the version it pointed at before its last move (skipping
        versions retracted or erased since)."""
        current = self.get(persona_id, name)
        for move in self.history(persona_id, name, limit=1000):
            target = move.from_version
            if target is None or target == current.version:
                continue
            try:
                return self.move(
                    persona_id, name, target, expected=current.version, actor=actor, reason=reason
                )
            except InvalidTransitionError:
                continue  # that version is no longer published: look further back
        raise AliasNotFoundError(
            f"alias {name!r} of {persona_id} has no earlier published version to go back to"
        )

    def pointing_at(self, conn: sa.Connection, persona_id: str, version: int) -> list[str]:
        """Names of the aliases on that version (inside the caller's transaction)."""
        rows = conn.execute(
            sa.select(_a.c.name).where(_a.c.persona_id == persona_id, _a.c.version == version)
        )
        return sorted(rows.scalars())


def _check_expected(persona_id: str, name: str, current: int | None, expected: int | None) -> None:
    if expected is None:
        return
    if expected == UNSET and current is not None:
        raise AliasConflictError(f"alias {name!r} of {persona_id} already exists (v{current})")
    if expected not in (UNSET, current):
        now = "does not exist" if current is None else f"points at v{current}"
        raise AliasConflictError(f"alias {name!r} of {persona_id} {now}, not v{expected}")


def _must_be_published(conn: sa.Connection, db: Database, persona_id: str, version: int) -> None:
    # Locked: a retraction locks the same row before it looks for aliases, so the two cannot
    # both pass on PostgreSQL (one sees the other's commit).
    status = conn.execute(
        db.locked(sa.select(_v.c.status).where(_v.c.persona_id == persona_id, _v.c.version == version))
    ).scalar()
    if status is None:
        raise VersionNotFoundError(f"persona {persona_id!r} has no version {version}")
    if status != "published":
        raise InvalidTransitionError(
            f"{persona_id} v{version} is {status}: an alias points only at a published version"
        )


def _persona_must_exist(conn: sa.Connection, persona_id: str) -> None:
    p = t.personas
    row = conn.execute(sa.select(p.c.erased_at).where(p.c.persona_id == persona_id)).first()
    if row is None or row.erased_at is not None:
        raise PersonaNotFoundError(f"persona {persona_id!r} not found")


def _alias(row: Any) -> Alias:
    return Alias(
        row.persona_id, row.name, row.version, aware(row.updated_at) or row.updated_at, row.updated_by
    )


def _move(row: Any) -> AliasMove:
    return AliasMove(
        row.persona_id,
        row.name,
        row.from_version,
        row.to_version,
        row.actor,
        row.reason,
        aware(row.at) or row.at,
    )
