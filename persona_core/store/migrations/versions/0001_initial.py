"""Initial schema: personas, persona_versions, published_packs, api_keys.

Published versions are guarded by the database too: triggers refuse any UPDATE of a
published ``persona_versions`` row and any UPDATE/DELETE of a ``published_packs`` row, so
even code that bypasses the store cannot rewrite a published pack.

Revision ID: 0001_initial
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_Json = sa.JSON().with_variant(JSONB(), "postgresql")
_Ts = sa.DateTime(timezone=True)
_STATUSES = "('pending', 'building', 'blocked', 'failed', 'published')"

_PG_TRIGGERS = [
    """
    CREATE FUNCTION persona_versions_immutable() RETURNS trigger AS $$
    BEGIN
        IF OLD.status = 'published' THEN
            RAISE EXCEPTION 'persona % version % is published and immutable', OLD.persona_id, OLD.version
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER persona_versions_immutable BEFORE UPDATE OR DELETE ON persona_versions
    FOR EACH ROW EXECUTE FUNCTION persona_versions_immutable()
    """,
    """
    CREATE FUNCTION published_packs_immutable() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'published pack % version % is immutable', OLD.persona_id, OLD.version
            USING ERRCODE = 'restrict_violation';
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER published_packs_immutable BEFORE UPDATE OR DELETE ON published_packs
    FOR EACH ROW EXECUTE FUNCTION published_packs_immutable()
    """,
]

_SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER persona_versions_immutable_update BEFORE UPDATE ON persona_versions
    WHEN OLD.status = 'published'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    """
    CREATE TRIGGER persona_versions_immutable_delete BEFORE DELETE ON persona_versions
    WHEN OLD.status = 'published'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    """
    CREATE TRIGGER published_packs_immutable_update BEFORE UPDATE ON published_packs
    BEGIN SELECT RAISE(ABORT, 'published pack is immutable'); END
    """,
    """
    CREATE TRIGGER published_packs_immutable_delete BEFORE DELETE ON published_packs
    BEGIN SELECT RAISE(ABORT, 'published pack is immutable'); END
    """,
]


def upgrade() -> None:
    op.create_table(
        "personas",
        sa.Column("persona_id", sa.String(63), primary_key=True),
        sa.Column("metadata", _Json, nullable=False),
        sa.Column("created_at", _Ts, nullable=False),
    )
    op.create_table(
        "persona_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "persona_id",
            sa.String(63),
            sa.ForeignKey("personas.persona_id", ondelete="RESTRICT", name="fk_persona_versions_persona"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reasons", _Json, nullable=False),
        sa.Column("inputs", _Json, nullable=False),
        sa.Column("checks", _Json, nullable=False),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("updated_at", _Ts, nullable=False),
        sa.Column("published_at", _Ts, nullable=True),
        sa.UniqueConstraint("persona_id", "version", name="uq_persona_versions_persona_version"),
        sa.CheckConstraint("version >= 1", name="ck_persona_versions_version_positive"),
        sa.CheckConstraint(f"status IN {_STATUSES}", name="ck_persona_versions_status"),
    )
    op.create_table(
        "published_packs",
        sa.Column("persona_id", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("pack_ref", sa.String(80), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("blob_refs", _Json, nullable=False),
        sa.Column("published_at", _Ts, nullable=False),
        sa.ForeignKeyConstraint(
            ["persona_id", "version"],
            ["persona_versions.persona_id", "persona_versions.version"],
            name="fk_published_packs_version",
            ondelete="RESTRICT",
        ),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", _Json, nullable=False),
        sa.Column("persona_ids", _Json, nullable=True),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("revoked_at", _Ts, nullable=True),
    )
    triggers = _PG_TRIGGERS if op.get_bind().dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS published_packs_immutable ON published_packs")
        op.execute("DROP TRIGGER IF EXISTS persona_versions_immutable ON persona_versions")
        op.execute("DROP FUNCTION IF EXISTS published_packs_immutable()")
        op.execute("DROP FUNCTION IF EXISTS persona_versions_immutable()")
    for table in ("api_keys", "published_packs", "persona_versions", "personas"):
        op.drop_table(table)
