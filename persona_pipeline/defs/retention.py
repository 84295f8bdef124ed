"""Retention: the daily garbage collection (``gc_job`` on ``daily_gc_schedule``), the same run as
``persona-core gc``: :func:`persona_core.retention.collect_garbage` with the settings'
``retention_days`` and ``gc_grace_s``, and the Dagster purger, so versions that expire leave
this instance too. Its report is the run's output metadata; a dry run (Launchpad:
``ops: {collect_garbage: {config: {dry_run: true}}}``) reports without deleting."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import dagster as dg
from pydantic import Field

from persona_core.retention import GcReport, collect_garbage
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.defs.run_logs import RUN_LOGS_CONFIG
from persona_pipeline.erasure import DagsterPurger

GC_JOB = "gc_job"


class GcConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Report what would go; delete nothing.")


@dg.op(name="collect_garbage",
       description="Erase never-published versions older than retention_days; delete unreferenced "
                   "blobs older than gc_grace_s.")
def collect_garbage_op(
    context: dg.OpExecutionContext, config: GcConfig, stores: StoresResource
) -> dg.Output[None]:
    settings = stores.settings()
    purger = DagsterPurger(context.instance, compact=False)  # once at the end, not per version
    report = collect_garbage(stores.meta(), stores.blobs(), retention_days=settings.retention_days,
                             grace_s=settings.gc_grace_s, dry_run=config.dry_run, purgers=[purger])
    if not config.dry_run:
        purger.compact()
    return dg.Output(None, metadata=gc_metadata(report, settings.retention_days, settings.gc_grace_s))


def gc_metadata(report: GcReport, retention_days: float, grace_s: float) -> dict[str, dg.MetadataValue]:
    # Counts only, as the audit line: the run is kept and must not name an erased persona.
    return {
        "dry_run": dg.MetadataValue.bool(report.dry_run),
        "expired_versions": dg.MetadataValue.int(len(report.expired_versions)),
        "resumed_erasures": dg.MetadataValue.int(report.resumed_erasures),
        "blobs_deleted": dg.MetadataValue.int(report.blobs_deleted),
        "objects_deleted": dg.MetadataValue.int(report.objects_deleted),
        "bytes_reclaimed": dg.MetadataValue.int(report.bytes_reclaimed),
        "kept_young": dg.MetadataValue.int(report.kept_young),
        "seconds": dg.MetadataValue.float(report.seconds),
        "retention_days": dg.MetadataValue.float(retention_days),
        "gc_grace_s": dg.MetadataValue.float(grace_s),
    }


@dg.job(name=GC_JOB, executor_def=dg.in_process_executor, config=RUN_LOGS_CONFIG,
        description="Retention: erase expired never-published versions and sweep unreferenced blobs.")
def gc_job() -> None:
    collect_garbage_op()


daily_gc_schedule = dg.ScheduleDefinition(
    name="daily_gc_schedule",
    job=gc_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs gc_job every day at 03:30 UTC.",
)
