"""The build lease of a build run: its version is ``building`` under this run's lease from
the moment the run's resources are set up, renewed by a heartbeat, and let go when the run
ends (a run that ended without publishing or blocking fails its version with the cause).
Status changes go through the metadata store's compare-and-set transitions."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from persona_core.store.base import BuildLease, VersionStatus
from persona_core.versions import LeaseKeeper, settle_dead_build
from persona_pipeline.defs.resources import PARTITION_TAG, REBUILD_JOB, StoresResource
from persona_pipeline.partition_keys import parse_partition_key
from persona_pipeline.run_tags import runs_asset


# Requires the config resources for their order only: Dagster sets a resource up after those
# it requires, so a bad model choice or threshold from the Launchpad fails the run before any
# version is claimed, and the version stays as it was.
@dg.resource(required_resource_keys={"stores", "models", "pipeline_config"},
             description="Claims the run's version (building under a lease naming the run, host "
                         "and pid), keeps its heartbeat and lets it go when the run ends.")
def build_lease(context: dg.InitResourceContext) -> Iterator[BuildLease | None]:
    """This run's lease while it holds one; None for sensor ticks, rebuild runs and re-runs of
    a published (or, for some steps, blocked) version. See
    :class:`persona_core.versions.LeaseKeeper`."""
    stores: StoresResource = context.resources.stores
    keeper = _claim(context, stores)
    try:
        yield keeper.lease if keeper is not None else None
    finally:
        if keeper is not None:
            _let_go(keeper, stores)


def _claim(context: dg.InitResourceContext, stores: StoresResource) -> LeaseKeeper | None:
    run = context.dagster_run
    key = run.tags.get(PARTITION_TAG) if run is not None else None
    if run is None or key is None or run.job_name == REBUILD_JOB:
        return None  # a sensor tick, an unpartitioned run or a rebuild (persona partitions): no lease
    persona_id, version = parse_partition_key(key)
    meta, settings = stores.meta(), stores.settings()
    # A version left `building` by a build that died is failed first, so this run can take it.
    record = settle_dead_build(meta, meta.get_version(persona_id, version), ttl_s=settings.lease_ttl_s)
    if record.status is VersionStatus.PUBLISHED:
        return None  # a re-run of a published version changes nothing (see the inputs asset)
    if record.status is VersionStatus.BLOCKED and not runs_asset(run, "inputs"):
        return None  # some steps re-run on a blocked version: it stays blocked unless they publish
    keeper = LeaseKeeper(meta, persona_id, version, run.run_id, settings.lease_heartbeat_s)
    keeper.start()
    return keeper


def _let_go(keeper: LeaseKeeper, stores: StoresResource) -> None:
    keeper.stop()
    meta = stores.meta()
    record = meta.get_version(keeper.persona_id, keeper.version)
    if record.status is VersionStatus.BUILDING and record.lease == keeper.lease:
        # A run of some assets only (a UI re-run of one step) does not publish.
        meta.transition(keeper.persona_id, keeper.version, VersionStatus.FAILED, holder=keeper.lease,
                        reasons=[f"run {keeper.lease.run_id} ended before persona_pack was built; "
                                 "re-run the whole partition to publish"])
