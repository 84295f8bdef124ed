"""Personas, versions and published packs over SQLAlchemy 2: a SQLite file by default,
PostgreSQL for real use.

Open it with :meth:`SqlMetadataStore.open`. A PostgreSQL schema is migrated once, at deploy
(``persona-core migrate``); opening checks the revision and refuses a stale one
(SchemaOutdatedError). The embedded SQLite default upgrades itself on first use.

Concurrency:

* version numbers: on PostgreSQL the persona row is locked (``SELECT ... FOR UPDATE``)
  while the next number is read and inserted; on SQLite every write transaction starts
  with ``BEGIN IMMEDIATE`` (one writer at a time, others wait up to the busy timeout). A
  unique ``(persona_id, version)`` constraint backs both, with a retry on collision.
* status: every change is a compare-and-set in :mod:`persona_core.store.version_states`.
  Publish is one transaction that flips the status and inserts the ``published_packs`` row.
  Triggers in the database refuse any later change to a published row, so immutability does
  not rely on this module alone.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from persona_core.errors import (
    AliasInUseError,
    AlreadyExistsError,
    ImmutableVersionError,
    InvalidInputError,
    InvalidNameError,
    InvalidTransitionError,
    PersonaErasedError,
    PersonaNotFoundError,
    StoreUnavailableError,
    VersionErasedError,
    VersionNotFoundError,
)
from persona_core.pack import PERSONA_ID_PATTERN
from persona_core.refs import parse_ref
from persona_core.store import migrate, version_states
from persona_core.store import tables as t
from persona_core.store.aliases import AliasStore
from persona_core.store.base import (
    BuildLease,
    MetadataStore,
    PersonaRecord,
    PublishedPack,
    VersionRecord,
    VersionStatus,
)
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.ref_index import BLOB, Held, RefIndex
from persona_core.store.tombstones import Tombstones

PERSONA_ID_RE = re.compile(PERSONA_ID_PATTERN)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_VERSION_RETRIES = 8
_S = VersionStatus


class SqlMetadataStore(MetadataStore):
    """Personas, versions and published packs in one SQL database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(
        cls, url: str, *, timeout_s: float | None = None, pool_size: int = 5, max_overflow: int = 5
    ) -> SqlMetadataStore:
        """Connect to ``url``: a PostgreSQL schema must be at this code's revision (else
        SchemaOutdatedError naming ``persona-core migrate``); SQLite upgrades itself.

        With ``timeout_s``, a PostgreSQL call that gets no answer for that long fails with
        StoreUnavailableError (the connection is cut), instead of waiting for the server.
        A PostgreSQL pool holds ``pool_size`` connections and opens at most ``max_overflow`` more.
        """
        db = Database.connect(url, timeout_s, pool_size=pool_size, max_overflow=max_overflow)
        try:
            if db.is_postgres:
                migrate.require_head(db)
            elif migrate.current_revision(db) != migrate.head_revision():
                migrate.upgrade(db)  # the embedded default: first use, or a newer persona-core
        except BaseException:
            db.close()
            raise
        return cls(db)

    @property
    def engine(self) -> sa.Engine:
        return self._db.engine

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` in one transaction."""
        migrate.upgrade(self._db, revision)

    def downgrade(self, revision: str) -> None:
        """Revert Alembic migrations down to ``revision`` (``"base"`` drops every table)."""
        migrate.downgrade(self._db, revision)

    @property
    def database(self) -> Database:
        """The engine and transactions, for stores that share this database (API keys)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # -- personas ---------------------------------------------------------------------
    def create_persona(self, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        check_persona_id(persona_id)
        if not isinstance(metadata, dict):
            raise InvalidInputError("persona metadata must be a JSON object")
        record = PersonaRecord(persona_id, dict(metadata), utc_now())
        try:
            with self._db.tx(write=True) as conn:
                conn.execute(
                    sa.insert(t.personas).values(
                        persona_id=persona_id, metadata=record.metadata, created_at=record.created_at
                    )
                )
        except sa_exc.IntegrityError:
            try:
                self.get_persona(persona_id)
            except PersonaErasedError as erased:
                # Documented choice: an erased persona's id is retired, never handed out again.
                msg = f"persona {persona_id!r} was erased; its id is not reused"
                raise AlreadyExistsError(msg) from erased
            raise AlreadyExistsError(f"persona {persona_id!r} already exists") from None
        except (TypeError, ValueError, sa_exc.StatementError) as exc:
            raise InvalidInputError(f"persona metadata is not JSON-serialisable: {exc}") from None
        return record

    def ensure_persona(self, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        check_persona_id(persona_id)
        if not isinstance(metadata, dict):
            raise InvalidInputError("persona metadata must be a JSON object")
        dialect = postgresql if self._db.is_postgres else sqlite
        insert = dialect.insert(t.personas).values(persona_id=persona_id, metadata=dict(metadata),
                                                    created_at=utc_now())
        try:
            with self._db.tx(write=True) as conn:
                # Many first builds of one new persona may race here: one inserts, none fails.
                conn.execute(insert.on_conflict_do_nothing(index_elements=["persona_id"]))
        except (TypeError, ValueError, sa_exc.StatementError) as exc:
            if isinstance(exc, sa_exc.DBAPIError):
                raise
            raise InvalidInputError(f"persona metadata is not JSON-serialisable: {exc}") from None
        return self.get_persona(persona_id)

    def get_persona(self, persona_id: str) -> PersonaRecord:
        with self._db.tx(write=False) as conn:
            row = conn.execute(sa.select(t.personas).where(t.personas.c.persona_id == persona_id)).first()
            if row is None:
                raise PersonaNotFoundError(f"persona {persona_id!r} not found")
            self._must_not_be_erased(conn, row)
        return _persona(row)

    def list_personas(self, limit: int = 50, after: str | None = None) -> list[PersonaRecord]:
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be in 1..1000")
        query = (
            sa.select(t.personas)
            .where(t.personas.c.erased_at.is_(None))
            .order_by(t.personas.c.persona_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(t.personas.c.persona_id > after)
        with self._db.tx(write=False) as conn:
            return [_persona(r) for r in conn.execute(query)]

    # -- versions ---------------------------------------------------------------------
    def create_version(
        self, persona_id: str, inputs: dict[str, Any], *, lease: BuildLease | None = None
    ) -> VersionRecord:
        if not isinstance(inputs, dict):
            raise InvalidInputError("version inputs must be a JSON object")
        v = t.persona_versions
        for attempt in range(_VERSION_RETRIES):
            try:
                with self._db.tx(write=True) as conn:
                    persona = conn.execute(
                        self._db.locked(sa.select(t.personas).where(t.personas.c.persona_id == persona_id))
                    ).first()
                    if persona is None:
                        raise PersonaNotFoundError(f"persona {persona_id!r} not found")
                    self._must_not_be_erased(conn, persona)
                    latest = conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(v.c.version), 0)).where(
                            v.c.persona_id == persona_id
                        )
                    ).scalar_one()
                    now = utc_now()
                    conn.execute(
                        sa.insert(v).values(
                            persona_id=persona_id,
                            version=int(latest) + 1,
                            reasons=[],
                            inputs=inputs,
                            checks=[],
                            created_at=now,
                            updated_at=now,
                            **version_states.born(lease, now),
                        )
                    )
                return self.get_version(persona_id, int(latest) + 1)
            except sa_exc.IntegrityError:
                # Only reachable when something bypassed the lock (another writer, another
                # tool); back off briefly and take the next free number.
                if attempt == _VERSION_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
            except (TypeError, ValueError, sa_exc.StatementError) as exc:
                if isinstance(exc, sa_exc.DBAPIError):
                    raise
                raise InvalidInputError(f"version inputs are not JSON-serialisable: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def get_version(self, persona_id: str, version: int) -> VersionRecord:
        with self._db.tx(write=False) as conn:
            row = conn.execute(
                _version_query().where(
                    t.persona_versions.c.persona_id == persona_id, t.persona_versions.c.version == version
                )
            ).first()
            if row is None:
                self._raise_missing(conn, persona_id, version)
        return _version(row)

    def list_versions(self, persona_id: str) -> list[VersionRecord]:
        with self._db.tx(write=False) as conn:
            self._persona_must_exist(conn, persona_id)  # unknown or erased: the typed error
            rows = conn.execute(
                _version_query()
                .where(t.persona_versions.c.persona_id == persona_id)
                .order_by(t.persona_versions.c.version)
            ).all()
        return [_version(r) for r in rows]

    def transition(
        self,
        persona_id: str,
        version: int,
        to: VersionStatus,
        *,
        reasons: list[str] | None = None,
        checks: list[dict[str, Any]] | None = None,
        holder: BuildLease | None = None,
        run_id: str | None = None,
        expected: Collection[VersionStatus] | None = None,
    ) -> VersionRecord:
        target = _status(to)
        if target is _S.PUBLISHED:
            raise InvalidTransitionError("a version is published only through publish()")
        with self._db.tx(write=True) as conn:
            version_states.transition(conn, persona_id, version, target, reasons=reasons, checks=checks,
                                      holder=holder, run_id=run_id, expected=expected)
        return self.get_version(persona_id, version)

    def claim(self, persona_id: str, version: int, lease: BuildLease) -> VersionRecord:
        with self._db.tx(write=True) as conn:
            version_states.claim(conn, persona_id, version, lease)
        return self.get_version(persona_id, version)

    def heartbeat(self, persona_id: str, version: int, lease: BuildLease) -> bool:
        with self._db.tx(write=True) as conn:
            return version_states.heartbeat(conn, persona_id, version, lease)

    def settle(self, seen: VersionRecord, cause: str) -> VersionRecord | None:
        with self._db.tx(write=True) as conn:
            settled = version_states.settle(conn, seen, cause)
        return self.get_version(seen.persona_id, seen.version) if settled else None

    def publish(self, pack: PublishedPack, checks: list[dict[str, Any]]) -> VersionRecord:
        parse_ref(pack.pack_ref)
        if not _SHA256_RE.fullmatch(pack.content_hash or ""):
            raise InvalidInputError("content_hash must be 64 lowercase hex characters")
        for ref in pack.blob_refs:
            parse_ref(ref)
        now = utc_now()
        try:
            with self._db.tx(write=True) as conn:
                # A published version carries no build reasons (its lease goes with the commit).
                version_states.transition(conn, pack.persona_id, pack.version, _S.PUBLISHED, reasons=[],
                                          checks=list(checks), published_at=now,
                                          event_data={"content_hash": pack.content_hash})
                # Held by the version in the same transaction: GC never sees a published pack's
                # blob unheld.
                held = [Held(BLOB, ref.partition("#")[0]) for ref in (pack.pack_ref, *pack.blob_refs)]
                deleting = RefIndex(self._db).record_in(conn, pack.persona_id, pack.version, held)
                if deleting:
                    # A deleter found one of these blobs unheld a moment ago (written through a
                    # store that did not record it): never publish a pack that may miss it.
                    raise StoreUnavailableError(
                        f"{len(deleting)} blob(s) of this pack are being deleted by GC; build it again"
                    )
                conn.execute(
                    sa.insert(t.published_packs).values(
                        persona_id=pack.persona_id,
                        version=pack.version,
                        pack_ref=pack.pack_ref,
                        content_hash=pack.content_hash,
                        blob_refs=sorted(pack.blob_refs),
                        published_at=now,
                    )
                )
        except ImmutableVersionError:
            raise ImmutableVersionError(f"{pack.persona_id} v{pack.version} is already published") from None
        except sa_exc.IntegrityError:
            raise ImmutableVersionError(f"{pack.persona_id} v{pack.version} is already published") from None
        return self.get_version(pack.persona_id, pack.version)

    def get_published(self, persona_id: str, version: int | None = None) -> PublishedPack:
        p, v = t.published_packs, t.persona_versions
        # A pack whose version is being erased is never served, from the erasure's first commit.
        query = (
            sa.select(p, v.c.retracted_at, v.c.retraction_reason)
            .join(v, sa.and_(v.c.persona_id == p.c.persona_id, v.c.version == p.c.version))
            .where(p.c.persona_id == persona_id)
        )
        # A retracted pack is served by its number, never as latest.
        query = (
            query.where(p.c.version == version, v.c.status.in_([_S.PUBLISHED.value, _S.RETRACTED.value]))
            if version is not None
            else query.where(v.c.status == _S.PUBLISHED.value).order_by(p.c.version.desc())
        )
        with self._db.tx(write=False) as conn:
            row = conn.execute(query.limit(1)).first()
            if row is None:
                self._persona_must_exist(conn, persona_id)
                if version is not None:
                    self._version_must_not_be_erased(conn, persona_id, version)
                which = f"v{version}" if version is not None else "any version"
                raise VersionNotFoundError(f"persona {persona_id!r} has no published pack for {which}")
        return PublishedPack(row.persona_id, row.version, row.pack_ref, row.content_hash, list(row.blob_refs),
                             aware(row.retracted_at), row.retraction_reason)

    def retract(self, persona_id: str, version: int, *, reason: str) -> VersionRecord:
        """Withdraw a published version (its pack stays readable by number; latest skips it).
        Refused while an alias points at it: AliasInUseError names the aliases."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("a retraction needs a reason")
        v = t.persona_versions
        with self._db.tx(write=True) as conn:
            # Lock the version first (an alias move locks it too) so a move onto it and this
            # retraction cannot both succeed on PostgreSQL.
            conn.execute(self._db.locked(
                sa.select(v.c.status).where(v.c.persona_id == persona_id, v.c.version == version)))
            names = self.aliases.pointing_at(conn, persona_id, version)
            if names:
                raise AliasInUseError(
                    f"{persona_id} v{version} is what alias(es) {', '.join(names)} point at: move them first"
                )
            version_states.transition(conn, persona_id, version, _S.RETRACTED, reasons=[reason.strip()])
        return self.get_version(persona_id, version)

    @property
    def aliases(self) -> AliasStore:
        return AliasStore(self._db)

    @property
    def refs(self) -> RefIndex:
        return RefIndex(self._db)

    @property
    def tombstones(self) -> Tombstones:
        return Tombstones(self._db)

    def compact(self) -> None:
        """Leave no copy of deleted rows in the database files: SQLite writes deleted content
        over (``secure_delete``) and this folds the write-ahead log back; PostgreSQL vacuums the
        tables an erasure touches."""
        if self._db.is_postgres:
            with self._db.engine.connect() as conn:
                autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("persona_versions", "personas", "published_packs", "version_refs"):
                    autocommit.exec_driver_sql(f"VACUUM {table}")
            return
        with self._db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def ping(self) -> None:
        self._db.ping()


    # -- helpers ----------------------------------------------------------------------
    def _persona_must_exist(self, conn: sa.Connection, persona_id: str) -> None:
        found = conn.execute(sa.select(t.personas).where(t.personas.c.persona_id == persona_id)).first()
        if found is None:
            raise PersonaNotFoundError(f"persona {persona_id!r} not found")
        self._must_not_be_erased(conn, found)

    @staticmethod
    def _must_not_be_erased(conn: sa.Connection, persona: Any) -> None:
        if persona.erased_at is None:
            return
        e = t.erasures
        finished = conn.execute(
            sa.select(e.c.finished_at).where(e.c.persona_id == persona.persona_id, e.c.version.is_(None))
        ).scalar()
        started = aware(persona.erased_at) or persona.erased_at
        raise PersonaErasedError(f"persona {persona.persona_id!r} was erased", started_at=started,
                                 erased_at=aware(finished))

    @staticmethod
    def _version_must_not_be_erased(conn: sa.Connection, persona_id: str, version: int) -> None:
        v = t.persona_versions
        status = conn.execute(
            sa.select(v.c.status, v.c.updated_at).where(v.c.persona_id == persona_id, v.c.version == version)
        ).first()
        if status is not None and status.status in (_S.ERASING.value, _S.ERASED.value):
            at = aware(status.updated_at) or status.updated_at
            # The times are the erasure job's (the row's updated_at is when it last moved).
            e = t.erasures
            jobs = conn.execute(
                sa.select(e.c.version, e.c.versions, e.c.started_at, e.c.finished_at)
                .where(e.c.persona_id == persona_id)
                .order_by(e.c.id)
            ).all()
            job = next((j for j in jobs if j.version is None or version in (j.versions or ())), None)
            if job is not None:
                raise VersionErasedError(f"{persona_id} v{version} was erased",
                                         started_at=aware(job.started_at) or at,
                                         erased_at=aware(job.finished_at))
            raise VersionErasedError(f"{persona_id} v{version} was erased", started_at=at,
                                     erased_at=at if status.status == _S.ERASED.value else None)

    def _raise_missing(self, conn: sa.Connection, persona_id: str, version: int) -> None:
        self._persona_must_exist(conn, persona_id)
        raise VersionNotFoundError(f"persona {persona_id!r} has no version {version}")


def check_persona_id(persona_id: str) -> None:
    if not isinstance(persona_id, str) or not PERSONA_ID_RE.fullmatch(persona_id):
        raise InvalidNameError(f"bad persona id {persona_id!r}: lowercase letters, digits, '_', '-' (max 63)")


def _status(value: VersionStatus | str) -> VersionStatus:
    try:
        return VersionStatus(value)
    except ValueError:
        raise InvalidInputError(f"unknown status {value!r}") from None


def _version_query() -> sa.Select[Any]:
    v, p = t.persona_versions, t.published_packs
    return sa.select(v, p.c.pack_ref, p.c.content_hash).select_from(
        v.outerjoin(p, sa.and_(p.c.persona_id == v.c.persona_id, p.c.version == v.c.version))
    )


def _persona(row: Any) -> PersonaRecord:
    return PersonaRecord(row.persona_id, dict(row.metadata), aware(row.created_at))  # type: ignore[arg-type]


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        persona_id=row.persona_id,
        version=row.version,
        status=_S(row.status),
        reasons=list(row.reasons),
        inputs=dict(row.inputs),
        checks=list(row.checks),
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        updated_at=aware(row.updated_at),  # type: ignore[arg-type]
        published_at=aware(row.published_at),
        pack_ref=row.pack_ref,
        content_hash=row.content_hash,
        lease=BuildLease(row.lease_host, row.lease_pid, row.lease_run_id or "") if row.lease_host else None,
        heartbeat_at=aware(row.heartbeat_at),
        retracted_at=aware(row.retracted_at),
        retraction_reason=row.retraction_reason,
    )
