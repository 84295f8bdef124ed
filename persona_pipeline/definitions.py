"""The Dagster code location: build assets and checks, the build job, the upload sensor and
the resources (embedded default stores, default offline models, default thresholds)."""

from __future__ import annotations

import dagster as dg

from persona_pipeline.defs.assets import build_assets
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.defs.sensors import upload_manifest_sensor

defs = dg.Definitions(
    assets=build_assets,
    jobs=[build_persona_version],
    sensors=[upload_manifest_sensor],
    resources={
        "stores": StoresResource(),
        "models": ModelsResource(),
        "pipeline_config": PipelineConfigResource(),
    },
)
