"""Schema revisions: a server database is migrated once, at deploy (``persona-core migrate``,
the deploy's migrate job), never by the processes that use it; opening a store only checks
that the schema is the one this code was written for. The embedded SQLite default is the one
exception: it upgrades itself on first use, so ``make demo`` stays one command."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from persona_core.errors import SchemaOutdatedError
from persona_core.store.engine import Database
from persona_core.store.tables import VERSION_TABLE

__all__ = ["MIGRATE_COMMAND", "current_revision", "downgrade", "head_revision", "require_head", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATE_COMMAND = "persona-core migrate"
_LEGACY_VERSION_TABLE = "alembic_version"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError("no migrations found")
    return head


def current_revision(db: Database) -> str | None:
    """The database's revision; None for an empty database."""
    with db.tx(write=False) as conn:
        return _revision(conn) or _legacy_revision(conn)


def _revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _legacy_revision(conn: sa.Connection) -> str | None:
    """A revision of ours in the shared ``alembic_version`` table, where releases before
    0002 recorded it (another tool's revision there is not ours)."""
    if not sa.inspect(conn).has_table(_LEGACY_VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {_LEGACY_VERSION_TABLE}")).scalars().all()  # noqa: S608
    ours = _known_revisions() & set(rows)
    return next(iter(ours)) if ours else None


def _known_revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}


def require_head(db: Database) -> None:
    """Raise SchemaOutdatedError unless the database is at this code's newest revision."""
    current, head = current_revision(db), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutdatedError(f"the database has no persona-core schema: run `{MIGRATE_COMMAND}`")
    if current not in _known_revisions():
        raise SchemaOutdatedError(f"the database schema {current!r} is newer than this code ({head!r}): "
                                  "upgrade persona-core")
    raise SchemaOutdatedError(f"the database schema is at {current!r}, this code needs {head!r}: "
                              f"run `{MIGRATE_COMMAND}`")


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction (PostgreSQL: under an advisory
    lock, so two migrators queue instead of racing)."""
    _run(db, command.upgrade, revision)


def downgrade(db: Database, revision: str) -> None:
    """Revert migrations down to ``revision`` (``"base"`` drops every table)."""
    _run(db, command.downgrade, revision)


def _run(db: Database, action: object, revision: str) -> None:
    cfg = _config()
    with db.tx(write=True, watched=False) as conn:
        cfg.attributes["connection"] = conn
        _move_legacy_revision(cfg, conn)
        action(cfg, revision)  # type: ignore[operator]


def _move_legacy_revision(cfg: Config, conn: sa.Connection) -> None:
    """Carry a revision recorded in ``alembic_version`` (before 0002) over to our own table."""
    legacy = None if _revision(conn) else _legacy_revision(conn)
    if legacy is None:
        return
    command.stamp(cfg, legacy)
    conn.execute(sa.text(f"DELETE FROM {_LEGACY_VERSION_TABLE} WHERE version_num = :v"), {"v": legacy})  # noqa: S608
    if conn.execute(sa.text(f"SELECT count(*) FROM {_LEGACY_VERSION_TABLE}")).scalar_one() == 0:  # noqa: S608
        conn.execute(sa.text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))

