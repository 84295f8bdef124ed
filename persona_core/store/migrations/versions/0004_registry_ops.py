"""Operating the registry: retracted versions, aliases with their history, and the event
outbox.

* ``retracted``: a published version withdrawn with a reason (PyPI's yank): its pack stays
  byte for byte and readable by number; ``latest`` skips it. published -> retracted and
  retracted -> erasing are the only moves out of those states (database triggers too).
* ``aliases`` (persona, name) -> version, and ``alias_history``: every move, who, when, why.
* ``events``: the outbox. Every version state change and alias move writes one row in the
  transaction that makes the change; its id is the feed's cursor.

Revision ID: 0004_registry_ops
Revises: 0003_erasure
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from persona_core.store.schema_edit import replace_status_check

revision = "0004_registry_ops"
down_revision = "0003_erasure"
branch_labels = None
depends_on = None

_Json = sa.JSON().with_variant(JSONB(), "postgresql")
_Ts = sa.DateTime(timezone=True)
_OLD = "('pending', 'building', 'blocked', 'failed', 'published', 'erasing', 'erased')"
_NEW = "('pending', 'building', 'blocked', 'failed', 'published', 'erasing', 'erased', 'retracted')"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION persona_versions_immutable() RETURNS trigger AS $$
BEGIN
    -- A published version changes only to be retracted or erased; a retracted one only to be
    -- erased. Its pack (published_packs) never changes.
    IF TG_OP = 'UPDATE' AND OLD.status = 'published' AND NEW.status IN ('retracted', 'erasing') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'retracted' AND NEW.status = 'erasing' THEN
        RETURN NEW;
    END IF;
    IF OLD.status IN ('published', 'retracted') THEN
        RAISE EXCEPTION 'persona % version % is published and immutable', OLD.persona_id, OLD.version
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql
"""
_PG_OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION persona_versions_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'published' AND NEW.status = 'erasing' THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'published' THEN
        RAISE EXCEPTION 'persona % version % is published and immutable', OLD.persona_id, OLD.version
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql
"""
_SQLITE_TRIGGERS = {
    "persona_versions_immutable_update": """
    CREATE TRIGGER persona_versions_immutable_update BEFORE UPDATE ON persona_versions
    WHEN (OLD.status = 'published' AND NEW.status NOT IN ('retracted', 'erasing'))
      OR (OLD.status = 'retracted' AND NEW.status <> 'erasing')
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    "persona_versions_immutable_delete": """
    CREATE TRIGGER persona_versions_immutable_delete BEFORE DELETE ON persona_versions
    WHEN OLD.status IN ('published', 'retracted')
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
}
_SQLITE_OLD_TRIGGERS = {
    "persona_versions_immutable_update": """
    CREATE TRIGGER persona_versions_immutable_update BEFORE UPDATE ON persona_versions
    WHEN OLD.status = 'published' AND NEW.status <> 'erasing'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    "persona_versions_immutable_delete": """
    CREATE TRIGGER persona_versions_immutable_delete BEFORE DELETE ON persona_versions
    WHEN OLD.status = 'published'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
}


def _triggers(sqlite_triggers: dict[str, str], pg_function: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(pg_function)
        return
    for name, statement in sqlite_triggers.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement)


def upgrade() -> None:
    replace_status_check(op.get_bind(), _OLD, _NEW)
    _triggers(_SQLITE_TRIGGERS, _PG_FUNCTION)
    op.add_column("persona_versions", sa.Column("retracted_at", _Ts, nullable=True))
    op.add_column("persona_versions", sa.Column("retraction_reason", sa.String(1000), nullable=True))
    op.create_table(
        "aliases",
        sa.Column("persona_id", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", _Ts, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("persona_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),  # None: the alias was deleted
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("at", _Ts, nullable=False),
    )
    op.create_index("ix_alias_history_alias", "alias_history", ["persona_id", "name", "id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _Ts, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("persona_id", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("data", _Json, nullable=False),
    )
    op.create_index("ix_events_persona", "events", ["persona_id"])


def downgrade() -> None:
    op.drop_index("ix_events_persona", "events")
    op.drop_table("events")
    op.drop_index("ix_alias_history_alias", "alias_history")
    op.drop_table("alias_history")
    op.drop_table("aliases")
    op.drop_column("persona_versions", "retraction_reason")
    op.drop_column("persona_versions", "retracted_at")
    _triggers(_SQLITE_OLD_TRIGGERS, _PG_OLD_FUNCTION)
    replace_status_check(op.get_bind(), _NEW, _OLD)
