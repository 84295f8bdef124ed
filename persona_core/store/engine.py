"""The SQL engine under every store: SQLite (WAL, busy timeout, explicit ``BEGIN [IMMEDIATE]``)
or PostgreSQL (a bounded pool, and a watchdog that cuts a call whose
server stopped answering), and :class:`Database`, which hands out transactions and turns
driver errors into :class:`~persona_core.errors.StoreUnavailableError`."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from persona_core.errors import StoreUnavailableError

__all__ = ["Database", "aware", "create_engine", "utc_now"]


def create_engine(
    url: str, timeout_s: float | None = None, *, pool_size: int = 5, max_overflow: int = 5
) -> sa.Engine:
    """An engine set up for this store: SQLite gets WAL, a busy timeout and explicit
    ``BEGIN [IMMEDIATE]``; PostgreSQL gets a pool of ``pool_size`` connections plus at most
    ``max_overflow`` more (a bounded share of the server's connections per process) and, with
    ``timeout_s``, a connect timeout and a pool wait of that long."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if timeout_s is None:
            return sa.create_engine(
                parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow
            )
        return sa.create_engine(
            parsed,
            # No pool_pre_ping: its ping runs before the watchdog can see the connection, so
            # _tx pings itself, watched (see _Watchdog).
            pool_size=pool_size,
            max_overflow=max_overflow,
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
    # Deleted rows (an erasure) are written over, not left in free pages for a scan to find.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # A write transaction takes the write lock up front: two writers reading max(version)
    # then inserting would otherwise deadlock on lock upgrade instead of queueing.
    mode = "IMMEDIATE" if conn.get_execution_options().get("persona_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite hands back naive datetimes; they were stored as UTC


class Database:
    """One engine and its transactions. ``tx(write=True)`` takes SQLite's write lock up front;
    with ``timeout_s`` a PostgreSQL call that gets no answer for that long fails with
    StoreUnavailableError (the watchdog cuts its connection) instead of waiting for ever."""

    def __init__(self, engine: sa.Engine, timeout_s: float | None = None) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        # A frozen server keeps a socket open and silent: only PostgreSQL calls are watched.
        self._timeout_s = timeout_s if self.is_postgres else None

    @classmethod
    def connect(
        cls, url: str, timeout_s: float | None = None, *, pool_size: int = 5, max_overflow: int = 5
    ) -> Database:
        return cls(create_engine(url, timeout_s, pool_size=pool_size, max_overflow=max_overflow), timeout_s)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self, *, write: bool, watched: bool = True) -> Iterator[sa.Connection]:
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
            with self.engine.connect() as conn:
                yield conn, None
            return
        for attempt in (1, 2):
            conn = self.engine.connect()
            dbapi_conn: Any = conn.connection.dbapi_connection
            token = _WATCHDOG.watch(dbapi_conn, timeout_s)
            try:
                self.engine.dialect.do_ping(dbapi_conn)
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

    def locked(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """``query`` taking row locks on PostgreSQL (SQLite's write transaction is the lock)."""
        return query.with_for_update() if self.is_postgres else query

    def ping(self) -> None:
        try:
            with self.tx(write=False) as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailableError(f"database unavailable: {exc}") from None
