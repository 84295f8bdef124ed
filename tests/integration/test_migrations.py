"""The Alembic migrations build exactly the schema the queries use, and run both ways."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.tables import metadata as tables_metadata

TABLES = {"personas", "persona_versions", "published_packs", "api_keys"}


def _diff(store: SqlMetadataStore) -> list[object]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), tables_metadata))


def test_upgrade_builds_the_schema_the_code_uses(metadata_store: SqlMetadataStore) -> None:
    assert _diff(metadata_store) == []
    with metadata_store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= TABLES
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert head == "0002_lease_columns"


def test_downgrade_then_upgrade_round_trips(metadata_store: SqlMetadataStore) -> None:
    metadata_store.downgrade("base")
    with metadata_store.engine.connect() as conn:
        assert not TABLES & set(sa.inspect(conn).get_table_names())
    metadata_store.upgrade("head")
    metadata_store.create_persona("alice", {})
    assert metadata_store.create_version("alice", {}).version == 1
