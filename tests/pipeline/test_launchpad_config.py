"""A bad run config from the Launchpad (thresholds, model choice) fails the build run as it sets
up, on a real instance: no step runs, no version changes (pending and published alike), and
the run's failure names the real cause. (In a deployment the run-failure sensor then fails a
`pending` version with that cause: tests/pipeline/test_run_failure_sensor.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from pipeline_support import Home

from persona_core.publish import publish_pack
from persona_core.store.base import VersionStatus
from persona_core.testing import make_pack
from persona_pipeline.build import build_version
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.partition_keys import partition_key

pytestmark = [pytest.mark.dagster]

BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("threshold_typo", {"pipeline_config": {"config": {"thresholds": {"blurmin": 40}}}},
     "unknown pipeline config keys: ['blurmin']"),
    ("threshold_not_a_number", {"pipeline_config": {"config": {"thresholds": {"blur_min": "sharp"}}}},
     "pipeline config blur_min: Input should be a valid number"),
    ("unknown_camera_mode", {"pipeline_config": {"config": {"thresholds": {"required_modes": ["D_DRONE"]}}}},
     "unknown camera mode 'D_DRONE'"),
    ("zero_workers", {"pipeline_config": {"config": {"thresholds": {"workers": 0}}}},
     "workers and video_max_frames must be >= 1"),
    ("unknown_model", {"models": {"config": {"identity": "no-such-model"}}}, "unknown model 'no-such-model'"),
    ("model_of_another_task", {"models": {"config": {"identity": "yunet-2023mar-int8"}}},
     "'yunet-2023mar-int8' is a detect model, not identity"),
    ("research_only_without_opt_in", {"models": {"config": {"expression": "fer2013-expression"}}},
     "set opt_in_noncommercial to use it"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """alice v1 published, v2 uploaded and pending (never built)."""
    home = Home(tmp_path_factory.mktemp("launchpad"))
    home.meta.create_persona("alice", {})
    home.meta.create_version("alice", {"files": []})
    publish_pack(home.meta, home.blobs, make_pack(home.blobs, "alice", 1, n_anchors=6))
    home.upload("alice", ["obama.jpg"])
    return home


@pytest.fixture(scope="module")
def instance(home: Home) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(persona_versions.name or "persona_versions",
                                    [partition_key("alice", 1), partition_key("alice", 2)])
        yield inst


def _errors(event: dg.DagsterEvent) -> list[str]:
    """Every message in the failure's error chain (Dagster's wrappers and the cause)."""
    error = getattr(event.event_specific_data, "error", None)
    found = []
    while error is not None:
        found.append(error.message)
        error = error.cause
    return found


@pytest.mark.parametrize("version", [1, 2], ids=["published", "pending"])
@pytest.mark.parametrize(("run_config", "cause"), [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_launchpad_config_fails_the_run_and_changes_no_version(
    home: Home, instance: dg.DagsterInstance, run_config: dict[str, Any], cause: str, version: int
) -> None:
    job = make_defs(resources={
        "stores": StoresResource.from_settings(home.settings),
        "models": ModelsResource(),
        "pipeline_config": PipelineConfigResource(),
    }).resolve_job_def(build_persona_version.name)
    before = home.meta.list_versions("alice")

    result = job.execute_in_process(partition_key=partition_key("alice", version), instance=instance,
                                    run_config={"resources": run_config}, raise_on_error=False)

    assert not result.success
    assert instance.get_run_by_id(result.run_id).status is dg.DagsterRunStatus.FAILURE
    assert [e for e in result.all_events if e.is_step_start] == []
    assert home.meta.list_versions("alice") == before
    [failure] = [e for e in result.all_events if e.is_failure]
    assert any(cause in message for message in _errors(failure)), _errors(failure)


def test_an_in_process_build_with_a_bad_model_choice_fails_with_the_cause(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """build_version (the CLI's path) records the cause on the version it was asked to build."""
    version = home.upload("alice", ["obama1.jpg"]).version
    result = build_version("alice", version, home.settings, instance, models=ModelsResource(identity="nope"))
    assert not result.success
    assert result.record.status is VersionStatus.FAILED
    assert "UnknownModelError: unknown model 'nope'" in result.record.reasons[0]
