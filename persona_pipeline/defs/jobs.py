"""The job that builds one persona version; the UI re-runs a version by launching it for
that partition."""

from __future__ import annotations

import dagster as dg

from persona_pipeline.defs.assets import GROUP
from persona_pipeline.defs.lifecycle import fail_version_on_step_failure
from persona_pipeline.defs.resources import BUILD_JOB
from persona_pipeline.defs.run_logs import RUN_LOGS_CONFIG

# Partitioned by persona_versions through its assets. In-process: one process per run
# loads the models once; the multiprocess executor is
# ~3x slower on two cores.
build_persona_version = dg.define_asset_job(
    BUILD_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    hooks={fail_version_on_step_failure},
    config=RUN_LOGS_CONFIG,
    description="Build (or re-run) one persona version: inputs -> qc -> ... -> persona_pack. A re-run "
                "of a published version succeeds and changes nothing.",
)
