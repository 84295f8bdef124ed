"""The Dagster code location: build assets and checks, the build and rebuild jobs, the promote
and rollback jobs (aliases, from the Launchpad), the upload,
lifecycle and erasure sensors, the daily garbage collection (job and schedule) and the
resources (embedded default stores, default offline models, default thresholds).

``defs`` keeps intermediate asset values on local disk (Dagster's default IO manager), right
for ``dagster dev`` and in-process builds. ``deploy_defs`` keeps them in S3 so one asset can
be re-materialized in a later run's pod (Kubernetes): bucket and prefix come from
``DAGSTER_S3_IO_BUCKET`` / ``DAGSTER_S3_IO_PREFIX`` (credentials and endpoint: the usual
``AWS_*`` variables) when a run starts, not at import.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from persona_core.logging import ensure_logging

# The code server and each run worker import this module in a process of their own: log through
# persona-core's handler there (JSON with PERSONA_LOG_JSON=1), set up before the areas below are
# imported so that a warning one gives as it loads (a Dagster beta notice) is a log line too, not
# bare text. A process that has set its logging up already (the CLI, a test) keeps its own.
ensure_logging()

from persona_pipeline.defs.aliases import promote_version, rollback_alias
from persona_pipeline.defs.assets import build_assets
from persona_pipeline.defs.build_lease import build_lease
from persona_pipeline.defs.erasure import erasure_sensor
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.lifecycle import stuck_builds_sensor, version_run_failure_sensor
from persona_pipeline.defs.rebuild import rebuild_newest_version
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.defs.retention import daily_gc_schedule, gc_job
from persona_pipeline.defs.run_logs import RUN_LOGGER, run_logger
from persona_pipeline.defs.sensors import upload_manifest_sensor


def make_defs(io_manager: Any = None, resources: dict[str, Any] | None = None) -> dg.Definitions:
    resources = dict(resources) if resources else {
        "stores": StoresResource(),
        "models": ModelsResource(),
        "pipeline_config": PipelineConfigResource(),
    }
    # Every build run holds its version's lease (the job's failure hook requires it).
    resources.setdefault("build_lease", build_lease)
    if io_manager is not None:
        resources["io_manager"] = io_manager
    return dg.Definitions(
        assets=build_assets,
        jobs=[build_persona_version, rebuild_newest_version, gc_job, promote_version, rollback_alias],
        sensors=[upload_manifest_sensor, version_run_failure_sensor, stuck_builds_sensor, erasure_sensor],
        schedules=[daily_gc_schedule],
        resources=resources,
        # Every job's run messages, the UI's asset job's included, when its run config names it.
        loggers={RUN_LOGGER: run_logger},
    )


def _s3_io_manager() -> Any:
    from dagster_aws.s3 import S3PickleIOManager, S3Resource  # noqa: PLC0415 - only deploy_defs needs it

    return S3PickleIOManager(
        # boto3 reads AWS_ENDPOINT_URL itself when the store is not AWS.
        s3_resource=S3Resource(),
        s3_bucket=dg.EnvVar("DAGSTER_S3_IO_BUCKET"),
        s3_prefix=dg.EnvVar("DAGSTER_S3_IO_PREFIX"),
    )


defs = make_defs()


def __getattr__(name: str) -> Any:
    # Built on first use so `dagster dev` never imports dagster-aws's S3 client stack.
    if name == "deploy_defs":
        return make_defs(_s3_io_manager())
    raise AttributeError(name)
