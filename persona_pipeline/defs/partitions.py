"""One dynamic partition per persona version (key ``<persona_id>.v<version>``), and one per
persona for the rebuild job (a backfill over personas rebuilds each one's newest version)."""

from __future__ import annotations

import dagster as dg

from persona_pipeline.partition_keys import PERSONA_PARTITIONS, VERSION_PARTITIONS

persona_versions = dg.DynamicPartitionsDefinition(name=VERSION_PARTITIONS)
personas = dg.DynamicPartitionsDefinition(name=PERSONA_PARTITIONS)


def ensure_partition(
    instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition, key: str
) -> None:
    """Add ``key`` to ``partitions`` unless it is there; safe when many processes add the same
    key at once (the loser of the insert race finds it added)."""
    name = partitions.name or ""
    if instance.has_dynamic_partition(name, key):
        return
    try:
        instance.add_dynamic_partitions(name, [key])
    except Exception as exc:  # the storage's IntegrityError: sqlite3, psycopg2 or SQLAlchemy's
        if "IntegrityError" not in type(exc).__name__ and "UniqueViolation" not in type(exc).__name__:
            raise
        if not instance.has_dynamic_partition(name, key):
            raise
