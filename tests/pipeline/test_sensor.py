"""The upload sensor on a real blob store (local folder and S3): one run and one partition
per new manifest, nothing on a repeat tick, broken manifests skipped with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import OBAMA, Home

from persona_core.ingest import manifest_key
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.defs.sensors import upload_manifest_sensor

pytestmark = pytest.mark.dagster


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def sensor_home(blob_settings: Settings, tmp_path: Path) -> Home:
    settings = blob_settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'meta.db'}"})
    return Home(tmp_path, settings)


def tick(home: Home, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"stores": StoresResource.from_settings(home.settings)}) as ctx:
        result = upload_manifest_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def test_new_manifest_gives_one_run_and_one_partition_then_nothing(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    v = sensor_home.upload("obama", OBAMA[:2])
    first = tick(sensor_home, instance, None)
    assert [(r.run_key, r.partition_key) for r in first.run_requests or []] == [("obama.v1", "obama.v1")]
    [add] = first.dynamic_partitions_requests or []
    assert (add.partitions_def_name, list(add.partition_keys)) == (persona_versions.name, ["obama.v1"])
    assert first.cursor
    assert first.cursor.endswith(f"-obama-v{v.version}.json")

    second = tick(sensor_home, instance, first.cursor)
    assert not second.run_requests
    assert second.skip_reason is not None
    assert "no new upload manifests" in (second.skip_reason.skip_message or "")


def test_broken_manifest_is_skipped_with_a_reason_and_later_uploads_still_run(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    bad = manifest_key("obama", 7)
    sensor_home.blobs.put_object(bad, b'{"persona_id": "obama", "version": 7, "inputs": {"files": "nope"}}')
    broken = tick(sensor_home, instance, None)
    assert not broken.run_requests
    assert broken.skip_reason is not None
    assert bad in (broken.skip_reason.skip_message or "")
    assert broken.cursor == bad

    sensor_home.upload("obama", OBAMA[:1])
    after = tick(sensor_home, instance, broken.cursor)
    assert [r.run_key for r in after.run_requests or []] == ["obama.v1"]


def test_versions_already_built_elsewhere_get_no_second_run(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    """A version the CLI or an in-process build already took is skipped, with the reason."""
    v = sensor_home.upload("obama", OBAMA[:1])
    sensor_home.meta.set_status("obama", v.version, VersionStatus.BUILDING)
    result = tick(sensor_home, instance, None)
    assert not result.run_requests
    assert not result.dynamic_partitions_requests
    assert result.skip_reason is not None
    assert "obama.v1 is building" in (result.skip_reason.skip_message or "")
