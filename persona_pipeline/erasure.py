"""Erasure in the Dagster instance: a :data:`~persona_core.erasure.Purger` that removes everything
the instance keeps about an erasure job's versions.

For each version (partition ``<persona>.v<N>``) it deletes:

- every run of it: build runs of the partition (UI, sensor, backfill) and in-process runs tagged
  ``persona_id`` / ``persona_version`` (``persona-core build``, the demo), with their events
  (materialization metadata: the contact sheet's face thumbnails, the QC table's file names),
  tags, asset-check evaluations, compute logs, op outputs and event shard files;
- the partition's asset history and the IO manager's stored values for it (pickles of face
  crops, embeddings, QC tables), and each asset's "latest materialization" when it was one of
  these (it is replaced by the latest one left);
- the ``persona_versions`` dynamic partition.

For a whole persona also its rebuild runs (partitioned by persona id), every run tagged with
its id, and its ``personas`` partition. The database files are then compacted, so the deleted
bytes are not left in free pages or write-ahead logs.

What stays, as it holds no biometric content: the upload sensor's cursor and sensor ticks may
name manifest keys and partition keys (``manifests/<stamp>-<persona>-v<N>.json``, persona ids and
version numbers), and a backfill over personas keeps its list of persona ids. Step values that
an IO manager kept outside the instance (``deploy_defs``' S3 bucket) are not reached here.

The CLI passes :func:`purger_for` to :func:`persona_core.erasure.erase`; erasures started by the
registry (which does not import the pipeline) reach the instance through the erasure sensor
(:mod:`persona_pipeline.defs.erasure`) within one sensor interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG as PARTITION_TAG

from persona_core.erasure import Purger
from persona_core.settings import Settings
from persona_core.store.tombstones import ErasureJob
from persona_pipeline import instance_storage as storage
from persona_pipeline.instance import project_instance
from persona_pipeline.partition_keys import PERSONA_PARTITIONS, VERSION_PARTITIONS, partition_key
from persona_pipeline.run_tags import PERSONA_TAG, VERSION_TAG

# PERSONA_TAG, VERSION_TAG: the tags every build run carries besides its partition (run_tags).
__all__ = ["PERSONA_TAG", "VERSION_TAG", "DagsterPurger", "PurgeReport", "dagster_purger",
           "partition_keys_of", "purger_for"]

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class PurgeReport:
    jobs: int = 0
    runs_deleted: int = 0
    events_deleted: int = 0  # events of the partitions outside any run
    partitions_deleted: int = 0
    files_deleted: int = 0  # IO manager values, and orphaned shards / logs / outputs of runs
    latest_replaced: int = 0  # assets whose latest materialization was one of the subject's


def partition_keys_of(job: ErasureJob) -> list[str]:
    """The ``persona_versions`` partition keys of the job's versions."""
    return [partition_key(job.persona_id, v) for v in job.versions]


class DagsterPurger:
    """Removes erasure jobs' versions from one Dagster instance. Idempotent: purging a purged
    job deletes nothing and only compacts the databases.

    ``compact=False`` leaves the compaction to a later :meth:`compact` call, for a caller that
    purges many jobs one by one (the retention job): vacuuming is the slow part."""

    def __init__(self, instance: dg.DagsterInstance, *, compact: bool = True) -> None:
        self.instance = instance
        self._compact_each = compact

    def __call__(self, job: ErasureJob) -> None:
        self.purge([job])

    def compact(self) -> None:
        """Leave no bytes of deleted rows in the instance's database files."""
        storage.compact(self.instance)

    def purge(self, jobs: Sequence[ErasureJob]) -> PurgeReport:
        """Purge every job, then compact the databases once (unless deferred)."""
        instance = self.instance
        runs = events = partitions = files = 0
        all_keys: list[str] = []
        for job in jobs:
            keys = partition_keys_of(job)
            all_keys += keys
            run_ids = self._run_ids(job, keys)
            for run_id in sorted(run_ids):
                storage.delete_run_completely(instance, run_id)
            runs += len(run_ids)
            events += storage.delete_partition_events(instance, keys)
            files += storage.delete_partition_outputs(instance, keys)
            partitions += _delete_partitions(instance, VERSION_PARTITIONS, keys)
            if job.version is None:
                partitions += _delete_partitions(instance, PERSONA_PARTITIONS, [job.persona_id])
        latest = storage.refresh_latest_materializations(instance, all_keys)
        files += storage.sweep_orphans(instance)
        if self._compact_each:
            self.compact()
        report = PurgeReport(len(jobs), runs, events, partitions, files, latest)
        log.info("purged %d erasure job(s) from the Dagster instance: %s", len(jobs), report)
        return report

    def _run_ids(self, job: ErasureJob, keys: list[str]) -> set[str]:
        filters = []
        if keys:
            filters.append(dg.RunsFilter(tags={PARTITION_TAG: keys}))
            filters.append(dg.RunsFilter(tags={PERSONA_TAG: job.persona_id,
                                               VERSION_TAG: [str(v) for v in job.versions]}))
        if job.version is None:
            # Rebuild runs (partitioned by persona) and any other run made for the persona.
            filters.append(dg.RunsFilter(tags={PARTITION_TAG: job.persona_id}))
            filters.append(dg.RunsFilter(tags={PERSONA_TAG: job.persona_id}))
        found = storage.run_ids_with_partition_events(self.instance, keys)
        for runs_filter in filters:
            found.update(self.instance.get_run_ids(runs_filter))
        return found


def _delete_partitions(instance: dg.DagsterInstance, name: str, keys: Sequence[str]) -> int:
    deleted = 0
    for key in keys:
        if instance.has_dynamic_partition(name, key):
            instance.delete_dynamic_partition(name, key)
            deleted += 1
    return deleted


def dagster_purger(instance: dg.DagsterInstance) -> Purger:
    """The purger for ``instance``, to pass to :func:`persona_core.erasure.erase`."""
    return DagsterPurger(instance)


def purger_for(settings: Settings) -> Purger:
    """The purger for the project's instance (``settings.resolved_dagster_home``), opened when
    the erasure calls it and closed after; a home where Dagster never ran has nothing to purge."""

    def purge(job: ErasureJob) -> None:
        if not settings.resolved_dagster_home.exists():
            return
        instance = project_instance(settings)
        try:
            DagsterPurger(instance)(job)
        finally:
            instance.dispose()

    return purge
