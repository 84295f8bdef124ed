"""The Alembic migrations build exactly the schema the queries use, and run both ways."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from persona_core.store import migrate
from persona_core.store.engine import Database
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.tables import VERSION_TABLE
from persona_core.store.tables import metadata as tables_metadata

TABLES = {"personas", "persona_versions", "published_packs", "api_keys"}


def _diff(store: SqlMetadataStore) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, tables_metadata))


def test_upgrade_builds_the_schema_the_code_uses(metadata_store: SqlMetadataStore) -> None:
    assert _diff(metadata_store) == []
    with metadata_store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= TABLES
        head = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
        # Not Alembic's default table: Dagster's storage keeps its own revision there.
        assert "alembic_version" not in sa.inspect(conn).get_table_names()
    assert head == "0005_webhooks"


def test_downgrade_then_upgrade_round_trips(metadata_store: SqlMetadataStore) -> None:
    metadata_store.downgrade("base")
    with metadata_store.engine.connect() as conn:
        assert not TABLES & set(sa.inspect(conn).get_table_names())
    metadata_store.upgrade("head")
    metadata_store.create_persona("alice", {})
    assert metadata_store.create_version("alice", {}).version == 1


def test_a_revision_recorded_in_the_shared_alembic_version_table_is_carried_over(
    empty_database_url: str,
) -> None:
    """Releases before 0002 wrote their revision into ``alembic_version``, which Dagster's storage
    uses too: a migrate moves ours into our own table and leaves another tool's row alone."""
    db = Database.connect(empty_database_url)
    try:
        migrate.upgrade(db, "0001_initial")
        with db.tx(write=True) as conn:
            conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001_initial'), ('dagster_rev')"))
        assert migrate.current_revision(db) == "0001_initial"
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
        with db.tx(write=False) as conn:
            left = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        assert left == ["dagster_rev"]
    finally:
        db.close()
