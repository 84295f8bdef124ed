"""Build one persona version in-process through Dagster: the same assets, checks and
resources the UI and the sensor use, for scripts, tests, the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from persona_core.settings import Settings
from persona_core.store.base import VersionRecord, VersionStatus
from persona_core.store.from_settings import open_metadata_store
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.lifecycle import OUTCOME_TAG, fail_version, failure_cause
from persona_pipeline.defs.partitions import ensure_partition, persona_versions, personas
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.instance import project_instance
from persona_pipeline.partition_keys import partition_key
from persona_pipeline.run_tags import REPOSITORY_LABEL, REPOSITORY_LABEL_TAG, version_tags
from persona_pipeline.steps.config import PipelineConfig


@dataclass(frozen=True)
class BuildResult:
    persona_id: str
    version: int
    partition_key: str
    run_id: str
    success: bool  # the Dagster run succeeded (a blocked build's run does: publish skipped)
    record: VersionRecord  # the version row after the build: published | blocked | failed
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> outcome
    materialized: tuple[str, ...] = ()  # asset names materialized in this run
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset -> its metadata values
    errors: tuple[str, ...] = ()  # the failure message of every step that failed in this run

    @property
    def status(self) -> VersionStatus:
        return self.record.status


def local_instance(settings: Settings) -> dg.DagsterInstance:
    """The project's instance (``settings.resolved_dagster_home``), the one `make dagster` shows."""
    return project_instance(settings)


def build_version(
    persona_id: str,
    version: int,
    settings: Settings | None = None,
    instance: dg.DagsterInstance | None = None,
    *,
    config: PipelineConfig | None = None,
    models: ModelsResource | None = None,
    log_level: str = "WARNING",
    only: Sequence[str] | None = None,
) -> BuildResult:
    """Materialize every build asset (and its checks) for the version's partition.

    ``only`` names a subset of assets to run, as a re-run from the UI would: the others'
    values are loaded from earlier runs on the same instance.
    """
    settings = settings or Settings()
    instance = instance or local_instance(settings)
    key = partition_key(persona_id, version)
    ensure_partition(instance, persona_versions, key)
    ensure_partition(instance, personas, persona_id)  # for the rebuild job
    stores = StoresResource.from_settings(settings)
    # The same job, hooks and resources as the UI and the sensor, in this process; the run is
    # recorded in ``instance`` (the project's, by default), so the UI shows and re-runs it.
    job = make_defs(resources={
        "stores": stores,
        "models": models or ModelsResource(),
        "pipeline_config": PipelineConfigResource.from_config(config or PipelineConfig()),
    }).resolve_job_def(build_persona_version.name)
    result = job.execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(n) for n in only] if only is not None else None,
        # The label Dagster gives the runs it launches from the code location: the build job's
        # Runs tab lists this run next to the sensor's and the UI's.
        tags={**version_tags(persona_id, version), REPOSITORY_LABEL_TAG: REPOSITORY_LABEL},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    meta = open_metadata_store(settings)
    try:
        record = meta.get_version(persona_id, version)
        errors = tuple(failure_cause(e) for e in result.all_events if e.is_step_failure)
        if not result.success and fail_version(meta, key, _run_failure(result)):
            # A failure outside any step body (resource set-up, IO manager load) ends it too.
            record = meta.get_version(persona_id, version)
            instance.add_run_tags(result.run_id, {OUTCOME_TAG: "failed"})
    finally:
        meta.close()
    checks = {}
    for ev in result.get_asset_check_evaluations():
        checks[ev.check_name] = {
            "passed": ev.passed, "severity": ev.severity.value, "description": ev.description or "",
            "metadata": {k: v.value for k, v in ev.metadata.items()},
        }
    materialized, metadata = [], {}
    for mat_event in result.get_asset_materialization_events():
        mat = mat_event.step_materialization_data.materialization
        name = mat.asset_key.to_user_string()
        materialized.append(name)
        metadata[name] = {k: v.value for k, v in mat.metadata.items()}
    return BuildResult(persona_id, version, key, result.run_id, result.success, record, checks,
                       tuple(materialized), metadata, errors)


def _run_failure(result: dg.ExecuteInProcessResult) -> str:
    failure = next((e for e in result.all_events if e.is_failure), None)
    return f"run {result.run_id} failed: {(failure_cause(failure) if failure else '') or 'run failed'}"
