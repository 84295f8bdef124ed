"""Build one persona version in-process through Dagster: the same assets, checks and
resources the UI and the sensor use, for scripts, tests, the demo and benchmarks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from persona_core.settings import Settings
from persona_core.store.base import VersionRecord, VersionStatus
from persona_pipeline.defs.assets import build_assets
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.keys import partition_key
from persona_pipeline.steps.config import PipelineConfig


@dataclass(frozen=True)
class BuildResult:
    persona_id: str
    version: int
    partition_key: str
    run_id: str
    success: bool  # the Dagster run succeeded (a blocked build is not a success)
    record: VersionRecord  # the version row after the build: published | blocked | failed
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> outcome
    materialized: tuple[str, ...] = ()  # asset names materialized in this run
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset -> its metadata values
    errors: tuple[str, ...] = ()  # the failure message of every step that failed in this run

    @property
    def status(self) -> VersionStatus:
        return self.record.status


def local_instance(settings: Settings) -> dg.DagsterInstance:
    """``$DAGSTER_HOME``'s instance when set, else a persistent one under PERSONA_HOME/dagster."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    root = Path(settings.home).resolve() / "dagster"
    root.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(str(root))


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
    partitions_name = persona_versions.name
    if partitions_name is None:  # pragma: no cover - the definition always names it
        raise RuntimeError("persona_versions has no name")
    if not instance.has_dynamic_partition(partitions_name, key):
        instance.add_dynamic_partitions(partitions_name, [key])
    stores = StoresResource.from_settings(settings)
    result = dg.materialize(
        build_assets,
        partition_key=key,
        instance=instance,
        resources={
            "stores": stores,
            "models": models or ModelsResource(),
            "pipeline_config": PipelineConfigResource.from_config(config or PipelineConfig()),
        },
        raise_on_error=False,
        selection=list(only) if only is not None else None,
        tags={"persona_id": persona_id, "persona_version": str(version)},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    record = stores.meta().get_version(persona_id, version)
    errors = tuple(_step_error(e) for e in result.all_events if e.is_step_failure)
    if not result.success and record.status in (VersionStatus.BUILDING, VersionStatus.PENDING):
        # A failure outside any step body (e.g. resource setup) still ends the version.
        failure = next((e.message for e in result.all_events if e.is_failure), "run failed")
        record = stores.meta().set_status(persona_id, version, VersionStatus.FAILED, reasons=[failure or ""])
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


def _step_error(event: dg.DagsterEvent) -> str:
    # The step's own exception message is what a person needs, not Dagster's wrapper line.
    error = event.step_failure_data.error if event.step_failure_data else None
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None:
        return event.message or ""
    # The message reads "<module>.<Class>: <text>"; the class name alone is enough.
    message, name = error.message.strip(), error.cls_name or ""
    head, _, text = message.partition(": ")
    return f"{name}: {text}" if name and head.endswith(name) else message
