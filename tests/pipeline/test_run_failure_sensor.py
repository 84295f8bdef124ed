"""A build run that fails before it claims its `pending` version (here: a bad Launchpad config;
in a deployment also a run worker or code server killed as the run starts) leaves nothing that
will build that version. The run-failure sensor fails it at once with the run's cause, so it
does not sit `pending` for PERSONA_PENDING_TIMEOUT_S (30 min) and then read "is the Dagster
daemon running?"; a version another run is about to build, and a published one, are left alone."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from pipeline_support import Home

from persona_core.publish import publish_pack
from persona_core.store.base import VersionStatus
from persona_core.testing import make_pack
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.lifecycle import version_run_failure_sensor
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import (
    PARTITION_TAG,
    ModelsResource,
    PipelineConfigResource,
    StoresResource,
)
from persona_pipeline.partition_keys import partition_key

pytestmark = [pytest.mark.dagster]

BAD_CONFIG = {"pipeline_config": {"config": {"thresholds": {"blurmin": 40}}}}


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """alice v1 published; v2 and v3 uploaded and pending."""
    home = Home(tmp_path_factory.mktemp("run_failure"))
    home.meta.create_persona("alice", {})
    home.meta.create_version("alice", {"files": []})
    publish_pack(home.meta, home.blobs, make_pack(home.blobs, "alice", 1, n_anchors=6))
    home.upload("alice", ["obama.jpg"])
    home.upload("alice", ["obama1.jpg"])
    return home


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(
            persona_versions.name or "persona_versions", [partition_key("alice", v) for v in (1, 2, 3)]
        )
        yield inst


def _job(home: Home) -> dg.JobDefinition:
    return make_defs(
        resources={
            "stores": StoresResource.from_settings(home.settings),
            "models": ModelsResource(),
            "pipeline_config": PipelineConfigResource(),
        }
    ).resolve_job_def(build_persona_version.name)


def _fail_a_run_then_tick(home: Home, instance: dg.DagsterInstance, version: int) -> str:
    """A build run of alice ``version`` that fails as it sets up, then one tick of the sensor on it."""
    result = _job(home).execute_in_process(
        partition_key=partition_key("alice", version),
        instance=instance,
        run_config={"resources": BAD_CONFIG},
        raise_on_error=False,
    )
    assert not result.success
    assert home.meta.get_version("alice", version).status is not VersionStatus.BUILDING  # never claimed
    [failure] = [e for e in result.all_events if e.event_type is dg.DagsterEventType.RUN_FAILURE]
    with dg.build_run_status_sensor_context(
        sensor_name="version_run_failure_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"stores": StoresResource.from_settings(home.settings)},
    ) as context:
        version_run_failure_sensor(context.for_run_failure())
    return result.run_id


def test_a_pending_version_whose_run_failed_before_claiming_it_fails_with_the_cause(
    home: Home, instance: dg.DagsterInstance
) -> None:
    run_id = _fail_a_run_then_tick(home, instance, 2)
    record = home.meta.get_version("alice", 2)
    assert record.status is VersionStatus.FAILED
    [reason] = record.reasons
    assert run_id in reason
    assert "unknown pipeline config keys: ['blurmin']" in reason, reason
    assert "re-run its partition" in reason
    assert instance.get_run_by_id(run_id).tags.get("persona/outcome") == "failed"
    # Nothing else moved: the published v1 and the other pending v3.
    assert home.meta.get_version("alice", 1).status is VersionStatus.PUBLISHED
    assert home.meta.get_version("alice", 3).status is VersionStatus.PENDING


def test_a_pending_version_another_run_is_about_to_build_stays_pending(
    home: Home, instance: dg.DagsterInstance
) -> None:
    # A re-run of alice v3 already queued (e.g. the operator re-ran it): that run will build it.
    queued = instance.create_run_for_job(_job(home), tags={PARTITION_TAG: partition_key("alice", 3)})
    assert not queued.is_finished
    _fail_a_run_then_tick(home, instance, 3)
    assert home.meta.get_version("alice", 3).status is VersionStatus.PENDING


def test_a_failed_rerun_of_a_published_version_changes_nothing(
    home: Home, instance: dg.DagsterInstance
) -> None:
    before = home.meta.get_version("alice", 1)
    _fail_a_run_then_tick(home, instance, 1)
    assert home.meta.get_version("alice", 1) == before
