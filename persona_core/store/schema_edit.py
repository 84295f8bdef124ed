"""Schema edits that migrations share: changing the CHECK constraint on a version's status.

SQLite cannot alter a CHECK constraint, and copying ``persona_versions`` to a new table would
trip the RESTRICT foreign key of ``published_packs``; SQLite documents editing the stored
CREATE TABLE text for this (the rows' on-disk format does not change)."""

from __future__ import annotations

import sqlalchemy as sa


def replace_status_check(bind: sa.Connection, old: str, new: str) -> None:
    """Change ``ck_persona_versions_status`` from ``status IN <old>`` to ``status IN <new>``."""
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("ALTER TABLE persona_versions DROP CONSTRAINT ck_persona_versions_status")
        bind.exec_driver_sql(
            f"ALTER TABLE persona_versions ADD CONSTRAINT ck_persona_versions_status CHECK (status IN {new})"
        )
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'persona_versions'"
    ).scalar_one()
    if old not in sql:
        raise RuntimeError("persona_versions' status check is not the one this migration knows")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'persona_versions'",
        (sql.replace(old, new),),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
