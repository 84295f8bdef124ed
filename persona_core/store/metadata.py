"""Metadata store over SQLAlchemy 2: a SQLite file by default, PostgreSQL for real use.

Open it with :meth:`SqlMetadataStore.open`, which brings the schema to the newest Alembic
revision (``migrations/``). Concurrency:

* version numbers: on PostgreSQL the persona row is locked (``SELECT ... FOR UPDATE``)
  while the next number is read and inserted; on SQLite every write transaction starts
  with ``BEGIN IMMEDIATE`` (one writer at a time, others wait up to the busy timeout). A
  unique ``(persona_id, version)`` constraint backs both, with a retry on collision.
* publish: one transaction locks the version row, checks its status, inserts the
  ``published_packs`` row and flips the status. Triggers in the database refuse any later
  change to a published row, so immutability does not rely on this module alone.

Status transitions: any of pending/building/blocked/failed may move to another of them;
only pending/building may be published; a published version never changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import math
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from persona_core.errors import (
    AlreadyExistsError,
    ImmutableVersionError,
    InvalidInputError,
    InvalidNameError,
    InvalidTransitionError,
    NotFoundError,
    PersonaNotFoundError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.pack import PERSONA_ID_PATTERN
from persona_core.refs import parse_ref
from persona_core.store import tables as t
from persona_core.store.base import (
    ApiKeyRecord,
    MetadataStore,
    PersonaRecord,
    PublishedPack,
    VersionRecord,
    VersionStatus,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PERSONA_ID_RE = re.compile(PERSONA_ID_PATTERN)
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9:_.-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_VERSION_RETRIES = 8
_S = VersionStatus
_BUILDABLE = frozenset({_S.PENDING, _S.BUILDING, _S.BLOCKED, _S.FAILED})
_PUBLISHABLE = frozenset({_S.PENDING, _S.BUILDING})
# Compared against when a key id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_SHA256 = hashlib.sha256(b"no such key").hexdigest()


def create_engine(url: str, timeout_s: float | None = None) -> sa.Engine:
    """An engine set up for this store: SQLite gets WAL, a busy timeout and explicit
    ``BEGIN [IMMEDIATE]``; PostgreSQL gets a pool large enough for a few dozen threads and,
    with ``timeout_s``, a connect timeout and a pool wait of that long."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if timeout_s is None:
            return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=30)
        return sa.create_engine(
            parsed,
            # No pool_pre_ping: its ping runs before the watchdog can see the connection, so
            # _tx pings itself, watched (see _Watchdog).
            pool_size=5,
            max_overflow=30,
            pool_timeout=timeout_s,
            connect_args={"connect_timeout": max(2, math.ceil(timeout_s))},
        )
    database = parsed.database or ":memory:"
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if database == ":memory:":
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


class _Watchdog:
    """Cuts the socket of a PostgreSQL call that outlives its deadline.

    libpq has no read timeout, and a frozen server's kernel still accepts and acknowledges
    bytes, so a query would wait forever. Shutting the socket down wakes the waiting thread
    with a connection error, which the store reports as StoreUnavailableError (503).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, int]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def watch(self, dbapi_conn: Any, timeout_s: float) -> int:
        fd = int(dbapi_conn.fileno())
        with self._lock:
            token = next(self._tokens)
            self._deadlines[token] = (time.monotonic() + timeout_s, fd)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg-watchdog", daemon=True)
                self._thread.start()
        return token

    def unwatch(self, token: int | None) -> None:
        if token is not None:
            with self._lock:
                self._deadlines.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                expired = [t for t, (deadline, _) in self._deadlines.items() if deadline <= now]
                for token in expired:
                    _, fd = self._deadlines.pop(token)
                    # Held under the lock: the owner cannot unwatch and close in between.
                    with contextlib.suppress(OSError):
                        sock = socket.socket(fileno=os.dup(fd))
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        finally:
                            sock.close()


_WATCHDOG = _Watchdog()


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE is ours to issue.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # A write transaction takes the write lock up front: two writers reading max(version)
    # then inserting would otherwise deadlock on lock upgrade instead of queueing.
    mode = "IMMEDIATE" if conn.get_execution_options().get("persona_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite hands back naive datetimes; they were stored as UTC


class SqlMetadataStore(MetadataStore):
    """Personas, versions, published packs and API keys in one SQL database."""

    def __init__(self, engine: sa.Engine, timeout_s: float | None = None) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        # A frozen server keeps a socket open and silent: only PostgreSQL calls are watched.
        self._timeout_s = timeout_s if self._pg else None

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, timeout_s: float | None = None) -> SqlMetadataStore:
        """Connect to ``url`` and (by default) upgrade its schema to the newest revision.

        With ``timeout_s``, a PostgreSQL call that gets no answer for that long fails with
        StoreUnavailableError (the connection is cut), instead of waiting for the server.
        """
        store = cls(create_engine(url, timeout_s), timeout_s)
        if migrate:
            store.upgrade()
        return store

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` in one transaction."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Revert Alembic migrations down to ``revision`` (``"base"`` drops every table)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, action: Any, revision: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._tx(write=True, watched=False) as conn:
            cfg.attributes["connection"] = conn
            action(cfg, revision)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool, watched: bool = True) -> Iterator[sa.Connection]:
        timeout_s = self._timeout_s if watched else None
        try:
            with self._connect(timeout_s) as (conn, token):
                try:
                    if write:
                        conn.execution_options(persona_write=True)
                    with conn.begin():
                        yield conn
                finally:
                    _WATCHDOG.unwatch(token)
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise StoreUnavailableError(f"database unavailable: {exc.orig}") from exc
        except sa_exc.TimeoutError as exc:  # every pooled connection is busy (or hung)
            raise StoreUnavailableError(f"database unavailable: {exc}") from exc

    @contextmanager
    def _connect(self, timeout_s: float | None) -> Iterator[tuple[sa.Connection, int | None]]:
        """A pooled connection, pinged under the watchdog (a stale one is replaced once)."""
        if timeout_s is None:
            with self._engine.connect() as conn:
                yield conn, None
            return
        for attempt in (1, 2):
            conn = self._engine.connect()
            dbapi_conn: Any = conn.connection.dbapi_connection
            token = _WATCHDOG.watch(dbapi_conn, timeout_s)
            try:
                self._engine.dialect.do_ping(dbapi_conn)
            except Exception:
                _WATCHDOG.unwatch(token)
                conn.invalidate()
                conn.close()
                if attempt == 2:
                    raise
                continue
            with conn:
                yield conn, token
            return

    def _locked(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self._pg else query

    # -- personas ---------------------------------------------------------------------
    def create_persona(self, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        _check_persona_id(persona_id)
        if not isinstance(metadata, dict):
            raise InvalidInputError("persona metadata must be a JSON object")
        record = PersonaRecord(persona_id, dict(metadata), _now())
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    sa.insert(t.personas).values(
                        persona_id=persona_id, metadata=record.metadata, created_at=record.created_at
                    )
                )
        except sa_exc.IntegrityError:
            raise AlreadyExistsError(f"persona {persona_id!r} already exists") from None
        except (TypeError, ValueError, sa_exc.StatementError) as exc:
            raise InvalidInputError(f"persona metadata is not JSON-serialisable: {exc}") from None
        return record

    def get_persona(self, persona_id: str) -> PersonaRecord:
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(t.personas).where(t.personas.c.persona_id == persona_id)).first()
        if row is None:
            raise PersonaNotFoundError(f"persona {persona_id!r} not found")
        return _persona(row)

    def list_personas(self, limit: int = 50, after: str | None = None) -> list[PersonaRecord]:
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be in 1..1000")
        query = sa.select(t.personas).order_by(t.personas.c.persona_id).limit(limit)
        if after is not None:
            query = query.where(t.personas.c.persona_id > after)
        with self._tx(write=False) as conn:
            return [_persona(r) for r in conn.execute(query)]

    # -- versions ---------------------------------------------------------------------
    def create_version(
        self, persona_id: str, inputs: dict[str, Any], *, lease: str | None = None
    ) -> VersionRecord:
        if not isinstance(inputs, dict):
            raise InvalidInputError("version inputs must be a JSON object")
        v = t.persona_versions
        for attempt in range(_VERSION_RETRIES):
            try:
                with self._tx(write=True) as conn:
                    persona = conn.execute(
                        self._locked(
                            sa.select(t.personas.c.persona_id).where(t.personas.c.persona_id == persona_id)
                        )
                    ).first()
                    if persona is None:
                        raise PersonaNotFoundError(f"persona {persona_id!r} not found")
                    latest = conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(v.c.version), 0)).where(
                            v.c.persona_id == persona_id
                        )
                    ).scalar_one()
                    now = _now()
                    reasons = [] if lease is None else [lease]
                    record = VersionRecord(
                        persona_id=persona_id,
                        version=int(latest) + 1,
                        status=_S.PENDING if lease is None else _S.BUILDING,
                        reasons=reasons,
                        inputs=inputs,
                        checks=[],
                        created_at=now,
                        updated_at=now,
                    )
                    conn.execute(
                        sa.insert(v).values(
                            persona_id=persona_id,
                            version=record.version,
                            status=record.status.value,
                            reasons=reasons,
                            inputs=inputs,
                            checks=[],
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return record
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
        with self._tx(write=False) as conn:
            row = conn.execute(
                _version_query().where(
                    t.persona_versions.c.persona_id == persona_id, t.persona_versions.c.version == version
                )
            ).first()
            if row is None:
                self._raise_missing(conn, persona_id, version)
        return _version(row)

    def list_versions(self, persona_id: str) -> list[VersionRecord]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                _version_query()
                .where(t.persona_versions.c.persona_id == persona_id)
                .order_by(t.persona_versions.c.version)
            ).all()
            if not rows:
                self._persona_must_exist(conn, persona_id)
        return [_version(r) for r in rows]

    def set_status(
        self,
        persona_id: str,
        version: int,
        status: VersionStatus,
        reasons: list[str] | None = None,
        checks: list[dict[str, Any]] | None = None,
    ) -> VersionRecord:
        target = _status(status)
        if target == _S.PUBLISHED:
            raise InvalidTransitionError("a version is published only through publish()")
        v = t.persona_versions
        with self._tx(write=True) as conn:
            row = self._lock_version(conn, persona_id, version)
            current = _S(row.status)
            if current == _S.PUBLISHED:
                raise ImmutableVersionError(f"{persona_id} v{version} is published and cannot change")
            if current not in _BUILDABLE:
                raise InvalidTransitionError(f"{persona_id} v{version}: {current} -> {target} is not allowed")
            values: dict[str, Any] = {"status": target.value, "updated_at": _now()}
            if reasons is not None:
                values["reasons"] = [str(r) for r in reasons]
            if checks is not None:
                values["checks"] = list(checks)
            conn.execute(
                sa.update(v).where(v.c.id == row.id, v.c.status != _S.PUBLISHED.value).values(**values)
            )
        return self.get_version(persona_id, version)

    def publish(self, pack: PublishedPack, checks: list[dict[str, Any]]) -> VersionRecord:
        parse_ref(pack.pack_ref)
        if not _SHA256_RE.fullmatch(pack.content_hash or ""):
            raise InvalidInputError("content_hash must be 64 lowercase hex characters")
        for ref in pack.blob_refs:
            parse_ref(ref)
        v = t.persona_versions
        try:
            with self._tx(write=True) as conn:
                row = self._lock_version(conn, pack.persona_id, pack.version)
                current = _S(row.status)
                if current == _S.PUBLISHED:
                    raise ImmutableVersionError(f"{pack.persona_id} v{pack.version} is already published")
                if current not in _PUBLISHABLE:
                    raise InvalidTransitionError(
                        f"{pack.persona_id} v{pack.version} is {current}: only pending or building publish"
                    )
                now = _now()
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
                conn.execute(
                    sa.update(v)
                    .where(v.c.id == row.id)
                    # A published version carries no build reasons (its lease line goes with the commit).
                    .values(status=_S.PUBLISHED.value, reasons=[], checks=list(checks), published_at=now,
                            updated_at=now)
                )
        except sa_exc.IntegrityError:
            raise ImmutableVersionError(f"{pack.persona_id} v{pack.version} is already published") from None
        return self.get_version(pack.persona_id, pack.version)

    def get_published(self, persona_id: str, version: int | None = None) -> PublishedPack:
        p = t.published_packs
        query = sa.select(p).where(p.c.persona_id == persona_id)
        query = (
            query.where(p.c.version == version) if version is not None else query.order_by(p.c.version.desc())
        )
        with self._tx(write=False) as conn:
            row = conn.execute(query.limit(1)).first()
            if row is None:
                self._persona_must_exist(conn, persona_id)
                which = f"v{version}" if version is not None else "any version"
                raise VersionNotFoundError(f"persona {persona_id!r} has no published pack for {which}")
        return PublishedPack(row.persona_id, row.version, row.pack_ref, row.content_hash, list(row.blob_refs))

    def ping(self) -> None:
        try:
            with self._tx(write=False) as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailableError(f"database unavailable: {exc}") from None

    # -- API keys ---------------------------------------------------------------------
    def create_api_key(
        self, name: str, scopes: list[str], persona_ids: list[str] | None = None
    ) -> tuple[ApiKeyRecord, str]:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInputError("API key name must be 1..200 characters")
        if (
            not isinstance(scopes, list)
            or not scopes
            or not all(isinstance(s, str) and _SCOPE_RE.fullmatch(s) for s in scopes)
        ):
            raise InvalidInputError("scopes must be a non-empty list like ['packs:read']")
        if persona_ids is not None:
            if not persona_ids:
                # A key restricted to no persona is always a mistake (e.g. an empty filter).
                raise InvalidInputError("persona_ids, when given, must name at least one persona")
            for pid in persona_ids:
                _check_persona_id(pid)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)  # 32 random bytes: a fast hash is enough, no KDF needed
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            scopes=sorted(set(scopes)),
            persona_ids=sorted(set(persona_ids)) if persona_ids is not None else None,
            created_at=_now(),
        )
        with self._tx(write=True) as conn:
            conn.execute(
                sa.insert(t.api_keys).values(
                    key_id=key_id,
                    name=name,
                    secret_sha256=_secret_hash(secret),
                    scopes=record.scopes,
                    persona_ids=record.persona_ids,
                    created_at=record.created_at,
                )
            )
        return record, f"pk_{key_id}_{secret}"

    def verify_api_key(self, plaintext: str) -> ApiKeyRecord | None:
        if not isinstance(plaintext, str) or len(plaintext) > 200:
            return None
        prefix, _, rest = plaintext.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != "pk" or not _KEY_ID_RE.fullmatch(key_id) or not secret:
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        stored = row.secret_sha256 if row is not None else _DUMMY_SHA256
        matches = hmac.compare_digest(stored, _secret_hash(secret))
        if row is None or not matches or row.revoked_at is not None:
            return None
        return _api_key(row)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        k = t.api_keys
        with self._tx(write=False) as conn:
            return [_api_key(r) for r in conn.execute(sa.select(k).order_by(k.c.created_at, k.c.key_id))]

    def revoke_api_key(self, key_id: str) -> ApiKeyRecord:
        k = t.api_keys
        with self._tx(write=True) as conn:
            row = conn.execute(self._locked(sa.select(k).where(k.c.key_id == key_id))).first()
            if row is None:
                raise NotFoundError(f"API key {key_id!r} not found")
            if row.revoked_at is None:
                conn.execute(sa.update(k).where(k.c.key_id == key_id).values(revoked_at=_now()))
                row = conn.execute(sa.select(k).where(k.c.key_id == key_id)).one()
        return _api_key(row)

    # -- helpers ----------------------------------------------------------------------
    def _lock_version(self, conn: sa.Connection, persona_id: str, version: int) -> Any:
        v = t.persona_versions
        row = conn.execute(
            self._locked(
                sa.select(v.c.id, v.c.status).where(v.c.persona_id == persona_id, v.c.version == version)
            )
        ).first()
        if row is None:
            self._raise_missing(conn, persona_id, version)
        return row

    def _persona_must_exist(self, conn: sa.Connection, persona_id: str) -> None:
        found = conn.execute(sa.select(t.personas.c.persona_id).where(t.personas.c.persona_id == persona_id))
        if found.first() is None:
            raise PersonaNotFoundError(f"persona {persona_id!r} not found")

    def _raise_missing(self, conn: sa.Connection, persona_id: str, version: int) -> None:
        self._persona_must_exist(conn, persona_id)
        raise VersionNotFoundError(f"persona {persona_id!r} has no version {version}")


def _check_persona_id(persona_id: str) -> None:
    if not isinstance(persona_id, str) or not PERSONA_ID_RE.fullmatch(persona_id):
        raise InvalidNameError(f"bad persona id {persona_id!r}: lowercase letters, digits, '_', '-' (max 63)")


def _status(value: VersionStatus | str) -> VersionStatus:
    try:
        return VersionStatus(value)
    except ValueError:
        raise InvalidInputError(f"unknown status {value!r}") from None


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _version_query() -> sa.Select[Any]:
    v, p = t.persona_versions, t.published_packs
    return sa.select(v, p.c.pack_ref, p.c.content_hash).select_from(
        v.outerjoin(p, sa.and_(p.c.persona_id == v.c.persona_id, p.c.version == v.c.version))
    )


def _persona(row: Any) -> PersonaRecord:
    return PersonaRecord(row.persona_id, dict(row.metadata), _aware(row.created_at))  # type: ignore[arg-type]


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        persona_id=row.persona_id,
        version=row.version,
        status=_S(row.status),
        reasons=list(row.reasons),
        inputs=dict(row.inputs),
        checks=list(row.checks),
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
        published_at=_aware(row.published_at),
        pack_ref=row.pack_ref,
        content_hash=row.content_hash,
    )


def _api_key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        scopes=list(row.scopes),
        persona_ids=list(row.persona_ids) if row.persona_ids is not None else None,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        revoked_at=_aware(row.revoked_at),
    )
