"""The build lease of a build run: its version is ``building`` under this run's lease from
the moment the run's resources are set up, renewed by a heartbeat, and let go when the run
ends (a run that ended without publishing or blocking fails its version with the cause).
Status changes go through the metadata store's compare-and-set transitions."""

# No `from __future__ import annotations` here: Dagster reads the resource's field types.

import dagster as dg
from pydantic import PrivateAttr

from persona_core.store.base import BuildLease, VersionStatus
from persona_core.versions import LeaseKeeper, settle_dead_build
from persona_pipeline.defs.resources import PARTITION_TAG, REBUILD_JOB, StoresResource
from persona_pipeline.partition_keys import parse_partition_key


class BuildLeaseResource(dg.ConfigurableResource):
    """Claims the run's version for the run (``building`` under a lease naming the run, this
    host and pid) and keeps its heartbeat; see :class:`persona_core.versions.LeaseKeeper`.
    Sensor ticks, rebuild runs and re-runs of a published version take no lease."""

    stores: StoresResource
    _keeper: LeaseKeeper | None = PrivateAttr(default=None)

    @property
    def holder(self) -> "BuildLease | None":
        """This run's lease, while it holds one."""
        return self._keeper.lease if self._keeper is not None else None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        key = run.tags.get(PARTITION_TAG) if run is not None else None
        if run is None or key is None or run.job_name == REBUILD_JOB:
            return  # a sensor tick, an unpartitioned run or a rebuild (persona partitions): no lease
        persona_id, version = parse_partition_key(key)
        meta, settings = self.stores.meta(), self.stores.settings()
        # A version left `building` by a build that died is failed first, so this run can take it.
        record = settle_dead_build(meta, meta.get_version(persona_id, version), ttl_s=settings.lease_ttl_s)
        if record.status is VersionStatus.PUBLISHED:
            return  # a re-run of a published version changes nothing (see the inputs asset)
        from_start = run.asset_selection is None or dg.AssetKey("inputs") in run.asset_selection
        if record.status is VersionStatus.BLOCKED and not from_start:
            return  # some steps re-run on a blocked version: it stays blocked unless they publish
        keeper = LeaseKeeper(meta, persona_id, version, run.run_id, settings.lease_heartbeat_s)
        keeper.start()
        self._keeper = keeper

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is None:
            return
        keeper.stop()
        meta = self.stores.meta()
        record = meta.get_version(keeper.persona_id, keeper.version)
        if record.status is VersionStatus.BUILDING and record.lease == keeper.lease:
            # A run of some assets only (a UI re-run of one step) does not publish.
            meta.transition(keeper.persona_id, keeper.version, VersionStatus.FAILED, holder=keeper.lease,
                            reasons=[f"run {keeper.lease.run_id} ended before persona_pack was built; "
                                     "re-run the whole partition to publish"])
