"""Removing runs and partitions from a Dagster instance's storage so that nothing of them is left.

Dagster 1.13 (OSS) has public calls that drop a run's row and events (``delete_run``) and a
dynamic partition's key (``delete_dynamic_partition``), but on its SQL storages (SQLite and
PostgreSQL) they leave copies behind, which this module removes:

- a run's tags (SQLite does not enforce the cascade), its asset-check evaluations (with their
  metadata), its compute logs, its op outputs under the storage folder, its event shard file;
- the asset's "latest materialization" (``asset_keys.last_materialization``: the whole event,
  metadata included: our contact sheet) when the deleted run made it;
- an asset partition's history: ``wipe_asset_partitions`` raises ``NotImplementedError`` on
  these storages, so events of the partitions that belong to no run (reported from outside a
  run, kept in their own shard on SQLite) are deleted here;
- the deleted rows' bytes in the database files (SQLite keeps them in free pages and the
  write-ahead log until ``VACUUM``; PostgreSQL until the tables are vacuumed).

The intermediate values of partitioned assets that Dagster's default IO manager wrote under the
storage folder (``<storage>/<asset>/<partition>``, pickles holding face crops and embeddings)
go too. Nothing here knows about personas: see :mod:`persona_pipeline.erasure`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

# Dagster's storage tables and SQL storages: no public API reaches what is removed here.
from dagster._core.instance.utils import RUNLESS_RUN_ID
from dagster._core.storage.event_log import SqlEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite import SqliteEventLogStorage
from dagster._core.storage.runs import SqlRunStorage
from dagster._core.storage.runs.schema import RunTagsTable

__all__ = [
    "StorageBusyError",
    "compact",
    "delete_partition_events",
    "delete_partition_outputs",
    "delete_run_completely",
    "refresh_latest_materializations",
    "run_ids_with_partition_events",
    "sweep_orphans",
]

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
_PG_TABLES = ("event_logs", "asset_keys", "asset_event_tags", "asset_check_executions",
              "dynamic_partitions", "runs", "run_tags")


class StorageBusyError(RuntimeError):
    """A database file could not be compacted (another process held it): the deleted rows'
    bytes may still be in it. Purging again finishes the job."""


def delete_run_completely(instance: dg.DagsterInstance, run_id: str) -> None:
    """Delete the run, its events, tags, check evaluations, compute logs, op outputs and event
    shard. Idempotent; the run row goes last, so a purge cut short finds the run again."""
    instance.compute_log_manager.delete_logs(prefix=[run_id])
    _remove(Path(instance.storage_directory()) / run_id)  # op outputs of the default IO manager
    events = instance.event_log_storage
    if isinstance(events, SqlEventLogStorage):
        with events.index_connection() as conn:
            conn.execute(sa.delete(AssetCheckExecutionsTable).where(
                AssetCheckExecutionsTable.c.run_id == run_id))
    runs = instance.run_storage
    if isinstance(runs, SqlRunStorage):
        with runs.connect() as conn:
            conn.execute(sa.delete(RunTagsTable).where(RunTagsTable.c.run_id == run_id))
    instance.delete_run(run_id)
    _remove_shard(instance, run_id)  # delete_run leaves the (emptied) file behind


def run_ids_with_partition_events(instance: dg.DagsterInstance, partition_keys: Sequence[str]) -> set[str]:
    """Every run with an event (materialization, check, planned) for one of the partitions."""
    events = instance.event_log_storage
    if not partition_keys or not isinstance(events, SqlEventLogStorage):
        return set()
    table = SqlEventLogStorageTable
    query = sa.select(table.c.run_id).distinct().where(table.c.partition.in_(list(partition_keys)))
    with events.index_connection() as conn:
        return {row[0] for row in conn.execute(query) if row[0]}


def delete_partition_events(instance: dg.DagsterInstance, partition_keys: Sequence[str]) -> int:
    """Delete the events of the partitions that are left once their runs are deleted (events
    reported without a run). ``wipe_asset_partitions`` is tried first for storages that have it."""
    events = instance.event_log_storage
    if not partition_keys:
        return 0
    for key in instance.get_asset_keys():
        with contextlib.suppress(NotImplementedError):  # Dagster 1.13's SQL storages
            instance.wipe_asset_partitions(key, list(partition_keys))
    if not isinstance(events, SqlEventLogStorage):
        return 0
    deleted = 0
    with events.index_connection() as conn:
        deleted += _delete_events_of(conn, partition_keys)
    if _has_runless_shard(events):
        with events.run_connection(RUNLESS_RUN_ID) as conn:
            deleted += _delete_events_of(conn, partition_keys)
    return deleted


def _delete_events_of(conn: sa.Connection, partition_keys: Sequence[str]) -> int:
    table, tags = SqlEventLogStorageTable, AssetEventTagsTable
    ids = [row[0] for row in conn.execute(
        sa.select(table.c.id).where(table.c.partition.in_(list(partition_keys))))]
    if ids:
        conn.execute(sa.delete(tags).where(tags.c.event_id.in_(ids)))
        conn.execute(sa.delete(table).where(table.c.id.in_(ids)))
    return len(ids)


def _has_runless_shard(events: SqlEventLogStorage) -> bool:
    """Events reported without a run: their own shard file on SQLite (opening it would create
    it), the one events table elsewhere."""
    if isinstance(events, SqliteEventLogStorage):
        return Path(events.path_for_shard(RUNLESS_RUN_ID)).exists()
    return False


def refresh_latest_materializations(instance: dg.DagsterInstance, partition_keys: Sequence[str]) -> int:
    """Each asset whose recorded latest materialization is of a deleted run or one of the
    partitions gets the latest one still in the event log (or none), and its partition status
    cache is dropped (Dagster rebuilds it). Returns how many latest records were replaced."""
    events = instance.event_log_storage
    if not isinstance(events, SqlEventLogStorage):
        return 0
    wanted = set(partition_keys)
    with events.index_connection() as conn:
        rows = conn.execute(sa.select(AssetKeyTable.c.asset_key, AssetKeyTable.c.last_materialization)).all()
    replaced = 0
    for key_str, raw in rows:
        key = dg.AssetKey.from_db_string(key_str)
        if key is None:
            continue
        events.wipe_asset_cached_status(key)
        if raw and _is_gone(instance, raw, wanted):
            latest = instance.fetch_materializations(key, limit=1).records
            values = ({"last_materialization": dg.serialize_value(latest[0]), "last_run_id": latest[0].run_id}
                      if latest else {"last_materialization": None, "last_run_id": None})
            update = sa.update(AssetKeyTable).where(AssetKeyTable.c.asset_key == key_str).values(**values)
            with events.index_connection() as conn:
                conn.execute(update)
            replaced += 1
    return replaced


def _is_gone(instance: dg.DagsterInstance, raw: str, partition_keys: set[str]) -> bool:
    record = dg.deserialize_value(raw)
    entry = getattr(record, "event_log_entry", None)
    if entry is None or entry.dagster_event is None:
        return False
    partition = entry.dagster_event.partition
    return partition in partition_keys or (bool(entry.run_id) and not instance.has_run(entry.run_id))


def delete_partition_outputs(instance: dg.DagsterInstance, partition_keys: Sequence[str]) -> int:
    """Delete what the default (filesystem) IO manager stored for the partitions of every asset
    the instance knows: ``<storage>/<asset key path>/<partition key>``."""
    storage = Path(instance.storage_directory())
    removed = 0
    for key in instance.get_asset_keys():
        for pk in partition_keys:
            removed += _remove(storage.joinpath(*key.path, pk))
    return removed


def sweep_orphans(instance: dg.DagsterInstance) -> int:
    """Delete event shards, compute logs and op outputs of runs that no longer exist (a purge
    cut short after the run row went, or a run deleted from the UI, which leaves them)."""
    removed = 0
    storage = Path(instance.storage_directory())
    candidates = [p for p in storage.iterdir() if _RUN_ID.fullmatch(p.name)] if storage.is_dir() else []
    shards = _shard_dir(instance)
    if shards is not None and shards.is_dir():
        candidates += [p for p in shards.iterdir() if _RUN_ID.fullmatch(p.name.split(".db")[0])
                       and p.name.split(".db")[0] != p.name]
    known = set(instance.get_run_ids()) if candidates else set()
    for path in candidates:
        run_id = path.name.split(".db")[0]
        # Asked again for one not listed: it may have been created since the listing.
        if run_id not in known and not instance.has_run(run_id):
            instance.compute_log_manager.delete_logs(prefix=[run_id])
            removed += _remove(path)
    return removed


def compact(instance: dg.DagsterInstance) -> None:
    """Leave no copy of deleted rows in the instance's databases: SQLite files are vacuumed
    and their write-ahead logs truncated; PostgreSQL tables are vacuumed."""
    paths: set[str] = set()
    engines: list[sa.Engine] = []
    events, runs = instance.event_log_storage, instance.run_storage
    if isinstance(events, SqlEventLogStorage):
        with events.index_connection() as conn:
            _classify(conn.engine, paths, engines)
        if _has_runless_shard(events):
            with events.run_connection(RUNLESS_RUN_ID) as conn:
                _classify(conn.engine, paths, engines)
    if isinstance(runs, SqlRunStorage):
        with runs.connect() as conn:
            _classify(conn.engine, paths, engines)
    for path in sorted(paths):
        _vacuum_sqlite(path)
    for engine in engines:
        with engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in _PG_TABLES:
                autocommit.exec_driver_sql(f"VACUUM {table}")


def _classify(engine: sa.Engine, paths: set[str], engines: list[sa.Engine]) -> None:
    if engine.dialect.name == "sqlite":
        if engine.url.database:
            paths.add(engine.url.database)
    elif engine.dialect.name == "postgresql" and engine not in engines:
        engines.append(engine)


def _vacuum_sqlite(path: str, timeout_s: float = 60.0) -> None:
    con = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        con.execute("VACUUM")
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError as exc:
        raise StorageBusyError(f"could not compact {path}: {exc}") from exc
    finally:
        con.close()
    if busy:
        raise StorageBusyError(f"could not truncate the write-ahead log of {path}: a reader held it")


def _shard_dir(instance: dg.DagsterInstance) -> Path | None:
    events = instance.event_log_storage
    if isinstance(events, SqliteEventLogStorage):
        return Path(events.path_for_shard("index")).parent
    return None


def _remove_shard(instance: dg.DagsterInstance, run_id: str) -> None:
    events = instance.event_log_storage
    if isinstance(events, SqliteEventLogStorage):
        base = events.path_for_shard(run_id)
        for suffix in _SQLITE_SIDE_FILES:
            _remove(Path(base + suffix))


def _remove(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return 1
    if path.exists() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return 1
    return 0

