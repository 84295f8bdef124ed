"""The rebuild job: a new version from a persona's newest version's inputs, for threshold or
model upgrades. Partitioned by persona, so a backfill over personas (UI: the job's
Partitions tab, or ``dagster job backfill``) gives one run per persona, queued by the run
coordinator; the upload sensor then builds each new version. Published packs never change."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import dagster as dg

from persona_core.ingest import resubmit_version
from persona_pipeline.defs.partitions import ensure_partition, persona_versions, personas
from persona_pipeline.defs.resources import REBUILD_JOB, StoresResource
from persona_pipeline.defs.run_logs import RUN_LOGS_CONFIG
from persona_pipeline.partition_keys import partition_key


@dg.op(description="A new pending version holding the newest version's inputs, with its manifest.")
def resubmit_newest_version(context: dg.OpExecutionContext, stores: StoresResource) -> dg.Output[int]:
    persona_id = context.partition_key
    newest = stores.meta().list_versions(persona_id)
    record = resubmit_version(stores.meta(), stores.blobs(), persona_id)
    key = partition_key(persona_id, record.version)
    ensure_partition(context.instance, persona_versions, key)
    context.log.info(f"{persona_id} v{record.version} holds the inputs of v{newest[-1].version}")
    return dg.Output(record.version, metadata={"from_version": newest[-1].version, "new_partition": key})


@dg.job(name=REBUILD_JOB, partitions_def=personas, config=RUN_LOGS_CONFIG,
        description="Rebuild each persona's newest version as a new version (backfill over personas).")
def rebuild_newest_version() -> None:
    resubmit_newest_version()
