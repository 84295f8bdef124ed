"""The rebuild job (a backfill over personas) on a persona whose newest version was imported
from a .personapack archive: the run fails with the typed refusal as its step error, and no
version or manifest is written."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import Home

from persona_core.archive import export_pack, import_pack
from persona_core.publish import publish_pack
from persona_core.testing import make_pack
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.partitions import personas
from persona_pipeline.defs.resources import (
    REBUILD_JOB,
    ModelsResource,
    PipelineConfigResource,
    StoresResource,
)

pytestmark = [pytest.mark.dagster]


def test_the_rebuild_job_refuses_an_imported_version_and_writes_nothing(tmp_path: Path) -> None:
    source = Home(tmp_path / "source")
    source.meta.create_persona("alice", {})
    source.meta.create_version("alice", {"files": []})
    publish_pack(source.meta, source.blobs, make_pack(source.blobs, "alice", 1, n_anchors=6))
    archive = export_pack(source.meta, source.blobs, "alice", 1, tmp_path / "alice.personapack").path
    home = Home(tmp_path / "home")
    import_pack(home.meta, home.blobs, archive)
    before = home.meta.list_versions("alice"), home.blobs.list_objects("manifests/")

    job = make_defs(resources={
        "stores": StoresResource.from_settings(home.settings),
        "models": ModelsResource(),
        "pipeline_config": PipelineConfigResource(),
    }).resolve_job_def(REBUILD_JOB)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(personas.name or "personas", ["alice"])
        result = job.execute_in_process(partition_key="alice", instance=instance, raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error is not None and error.cause is not None:  # Dagster's wrapper, then the step's error
        error = error.cause
    assert error is not None
    assert error.cls_name == "NotRebuildableError"
    assert "alice v1 was imported from a .personapack archive" in error.message
    assert (home.meta.list_versions("alice"), home.blobs.list_objects("manifests/")) == before
