"""Schema revisions: a server database is migrated once, at deploy (``persona-core migrate``,
the deploy's migrate job), never by the processes that use it; opening a store only checks
that the schema is the one this code was written for. The embedded SQLite default is the one
exception: it upgrades itself on first use, so ``make demo`` stays one command."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from persona_core.errors import SchemaOutdatedError
from persona_core.store.engine import Database

__all__ = ["MIGRATE_COMMAND", "current_revision", "downgrade", "head_revision", "require_head", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATE_COMMAND = "persona-core migrate"


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
        return MigrationContext.configure(conn).get_current_revision()


def require_head(db: Database) -> None:
    """Raise SchemaOutdatedError unless the database is at this code's newest revision."""
    current, head = current_revision(db), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutdatedError(f"the database has no persona-core schema: run `{MIGRATE_COMMAND}`")
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current not in known:
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
        action(cfg, revision)  # type: ignore[operator]

