"""Erasure and retention: versions can be ``erasing`` and ``erased``; a published version may
move to ``erasing`` (and its published_packs row go) and nothing else; personas carry an
``erased_at`` tombstone; ``erasures`` records each erasure job (no biometric content),
``audit_log`` one line per erasure and GC run; ``version_refs`` says which blobs and named
objects each version holds (filled from inputs and published packs here, by the stores from
now on), and ``gc_deleting`` marks a blob while a deletion is under way, so an upload that
reuses it waits and writes it again.

Revision ID: 0003_erasure
Revises: 0002_lease_columns
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from persona_core.store.schema_edit import replace_status_check

revision = "0003_erasure"
down_revision = "0002_lease_columns"
branch_labels = None
depends_on = None

_Json = sa.JSON().with_variant(JSONB(), "postgresql")
_Ts = sa.DateTime(timezone=True)
_OLD = "('pending', 'building', 'blocked', 'failed', 'published')"
_NEW = "('pending', 'building', 'blocked', 'failed', 'published', 'erasing', 'erased')"

_PG_FUNCTIONS = [
    """
    CREATE OR REPLACE FUNCTION persona_versions_immutable() RETURNS trigger AS $$
    BEGIN
        -- A published version changes only to start its erasure.
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
    """,
    """
    CREATE OR REPLACE FUNCTION published_packs_immutable() RETURNS trigger AS $$
    BEGIN
        -- The pack record goes only with its version's erasure.
        IF TG_OP = 'DELETE' AND EXISTS (
            SELECT 1 FROM persona_versions v
            WHERE v.persona_id = OLD.persona_id AND v.version = OLD.version AND v.status = 'erasing'
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'published pack % version % is immutable', OLD.persona_id, OLD.version
            USING ERRCODE = 'restrict_violation';
    END $$ LANGUAGE plpgsql
    """,
]

_SQLITE_TRIGGERS = {
    "persona_versions_immutable_update": """
    CREATE TRIGGER persona_versions_immutable_update BEFORE UPDATE ON persona_versions
    WHEN OLD.status = 'published' AND NEW.status <> 'erasing'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    "published_packs_immutable_delete": """
    CREATE TRIGGER published_packs_immutable_delete BEFORE DELETE ON published_packs
    WHEN NOT EXISTS (
        SELECT 1 FROM persona_versions v
        WHERE v.persona_id = OLD.persona_id AND v.version = OLD.version AND v.status = 'erasing'
    )
    BEGIN SELECT RAISE(ABORT, 'published pack is immutable'); END
    """,
}
_SQLITE_OLD_TRIGGERS = {
    "persona_versions_immutable_update": """
    CREATE TRIGGER persona_versions_immutable_update BEFORE UPDATE ON persona_versions
    WHEN OLD.status = 'published'
    BEGIN SELECT RAISE(ABORT, 'published version is immutable'); END
    """,
    "published_packs_immutable_delete": """
    CREATE TRIGGER published_packs_immutable_delete BEFORE DELETE ON published_packs
    BEGIN SELECT RAISE(ABORT, 'published pack is immutable'); END
    """,
}
_PG_OLD_FUNCTIONS = [
    """
    CREATE OR REPLACE FUNCTION persona_versions_immutable() RETURNS trigger AS $$
    BEGIN
        IF OLD.status = 'published' THEN
            RAISE EXCEPTION 'persona % version % is published and immutable', OLD.persona_id, OLD.version
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE OR REPLACE FUNCTION published_packs_immutable() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'published pack % version % is immutable', OLD.persona_id, OLD.version
            USING ERRCODE = 'restrict_violation';
    END $$ LANGUAGE plpgsql
    """,
]


def _set_status_check(statuses: str) -> None:
    replace_status_check(op.get_bind(), _NEW if statuses == _OLD else _OLD, statuses)


def _replace_triggers(triggers: dict[str, str], functions: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in functions:
            op.execute(statement)
        return
    for name, statement in triggers.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement)


def upgrade() -> None:
    _set_status_check(_NEW)
    _replace_triggers(_SQLITE_TRIGGERS, _PG_FUNCTIONS)
    op.add_column("personas", sa.Column("erased_at", _Ts, nullable=True))
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("persona_id", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),  # None: the whole persona
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("versions", _Json, nullable=False),
        sa.Column("started_at", _Ts, nullable=False),
        sa.Column("finished_at", _Ts, nullable=True),
        sa.CheckConstraint("state IN ('erasing', 'erased')", name="ck_erasures_state"),
    )
    op.create_index("ix_erasures_persona", "erasures", ["persona_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _Ts, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("persona_id", sa.String(63), nullable=True),
        sa.Column("detail", _Json, nullable=False),
    )
    op.create_table(
        "version_refs",
        sa.Column("persona_id", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("created_at", _Ts, nullable=False),
        sa.CheckConstraint("kind IN ('blob', 'object')", name="ck_version_refs_kind"),
    )
    op.create_index("ix_version_refs_ref", "version_refs", ["kind", "ref"])
    op.create_table(
        "gc_deleting",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("started_at", _Ts, nullable=False),
    )
    _backfill_refs()


def _backfill_refs() -> None:
    """What each existing version holds, as far as its row and published pack say: uploaded
    inputs and the published pack's blobs. Build intermediates of versions that never
    published are unreferenced from now on, and retention / GC reclaims them."""
    conn = op.get_bind()
    refs = sa.table(
        "version_refs",
        sa.column("persona_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("ref", sa.String),
        sa.column("created_at", _Ts),
    )
    # Text queries hand SQLite's timestamps back as strings: the backfill's own time it is.
    now = datetime.now(UTC)
    rows: set[tuple[str, int, str, str]] = set()
    for r in conn.execute(sa.text("SELECT persona_id, version, inputs FROM persona_versions")):
        inputs = _json(r.inputs)
        inputs = inputs if isinstance(inputs, dict) else {}
        for f in inputs.get("files") or []:
            if isinstance(f, dict) and isinstance(f.get("ref"), str):
                rows.add((r.persona_id, r.version, "blob", f["ref"]))
    for r in conn.execute(
        sa.text("SELECT persona_id, version, pack_ref, blob_refs FROM published_packs")
    ):
        blob_refs = _json(r.blob_refs)
        for ref in [r.pack_ref, *(blob_refs if isinstance(blob_refs, list) else [])]:
            rows.add((r.persona_id, r.version, "blob", ref.partition("#")[0]))
    if rows:
        conn.execute(
            sa.insert(refs),
            [
                {"persona_id": p, "version": v, "kind": k, "ref": ref, "created_at": now}
                for p, v, k, ref in sorted(rows)
            ],
        )


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value  # SQLite hands JSON back as text


def downgrade() -> None:
    op.drop_table("gc_deleting")
    op.drop_index("ix_version_refs_ref", "version_refs")
    op.drop_table("version_refs")
    op.drop_table("audit_log")
    op.drop_index("ix_erasures_persona", "erasures")
    op.drop_table("erasures")
    op.drop_column("personas", "erased_at")
    _replace_triggers(_SQLITE_OLD_TRIGGERS, _PG_OLD_FUNCTIONS)
    _set_status_check(_OLD)
