"""The upload sensor on a real blob store (local folder and S3): one run and one partition
per new manifest, nothing on a repeat tick, broken manifests skipped with a reason, and a
store outage failing the tick without moving the cursor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
from pipeline_support import OBAMA, Home

from persona_core.errors import StoreUnavailableError
from persona_core.ingest import MANIFEST_PREFIX, manifest_key
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, BuildLease, VersionStatus
from persona_core.store.local import LocalBlobStore
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


def tick(home: Home, instance: dg.DagsterInstance, cursor: str | None,
         stores: StoresResource | None = None) -> dg.SensorResult:
    stores = stores or StoresResource.from_settings(home.settings)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"stores": stores}) as ctx:
        result = upload_manifest_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


class _UnreachableObject(LocalBlobStore):
    """The local folder, except that reading one object fails the way an S3 outage does: a
    fault no real store produces on demand, for one key, in the middle of a tick."""

    down_key = ""

    def get_object(self, key: str) -> bytes:
        if key == self.down_key:
            raise StoreUnavailableError("S3 at http://127.0.0.1:1 unreachable: connection refused")
        return super().get_object(key)


class _StoresWithOutage(StoresResource):
    down_key: str

    def blobs(self) -> BlobStore:
        settings = self.settings()
        secret = settings.signing_secret.get_secret_value().encode()
        root = urlparse(settings.resolved_blob_url).path
        store = _UnreachableObject(root, secret, settings.public_base_url)
        store.down_key = self.down_key
        return store


def test_new_manifest_gives_one_run_and_one_partition_then_nothing(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    v = sensor_home.upload("obama", OBAMA[:2])
    first = tick(sensor_home, instance, None)
    assert [(r.run_key, r.partition_key) for r in first.run_requests or []] == [("obama.v1", "obama.v1")]
    [add, add_persona] = first.dynamic_partitions_requests or []
    assert (add.partitions_def_name, list(add.partition_keys)) == (persona_versions.name, ["obama.v1"])
    assert (add_persona.partitions_def_name, list(add_persona.partition_keys)) == ("personas", ["obama"])
    assert first.cursor
    assert json.loads(first.cursor)["after"].endswith(f"-obama-v{v.version}.json")

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
    assert broken.cursor is not None
    assert json.loads(broken.cursor)["after"] == bad

    sensor_home.upload("obama", OBAMA[:1])
    after = tick(sensor_home, instance, broken.cursor)
    assert [r.run_key for r in after.run_requests or []] == ["obama.v1"]


def test_versions_already_built_elsewhere_get_no_second_run(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    """A version the CLI or an in-process build already took is skipped, with the reason."""
    v = sensor_home.upload("obama", OBAMA[:1])
    sensor_home.meta.claim("obama", v.version, BuildLease.here())
    result = tick(sensor_home, instance, None)
    assert not result.run_requests
    assert not result.dynamic_partitions_requests
    assert result.skip_reason is not None
    assert "obama.v1 is building" in (result.skip_reason.skip_message or "")


def test_blob_store_outage_fails_the_tick_and_the_next_tick_requests_the_run(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """An outage while reading a good manifest is not a malformed manifest: the tick fails,
    the cursor stays where it was, and the next healthy tick requests the build."""
    home.upload("obama", OBAMA[:1])
    home.upload("obama", OBAMA[1:2])
    _first, second = home.blobs.list_objects(MANIFEST_PREFIX)
    outage = _StoresWithOutage(**StoresResource.from_settings(home.settings).model_dump(), down_key=second)
    with pytest.raises(StoreUnavailableError):
        tick(home, instance, None, outage)
    healthy = tick(home, instance, None)
    assert [r.run_key for r in healthy.run_requests or []] == ["obama.v1", "obama.v2"]
    assert healthy.cursor is not None
    assert json.loads(healthy.cursor)["after"] == second
    assert home.meta.get_version("obama", 2).status == VersionStatus.PENDING


def test_database_outage_fails_the_tick_and_the_next_tick_requests_the_run(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The version lookup failing (database unreachable) must not read as "unknown version"."""
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    home = Home(tmp_path, Settings(home=tmp_path, database_url=f"sqlite:///{db_dir / 'meta.db'}"))
    home.upload("obama", OBAMA[:1])
    stores = StoresResource.from_settings(home.settings)  # opens its stores on each tick
    down = home.settings.model_copy(update={"database_url": "postgresql+psycopg://u:p@127.0.0.1:1/gone"})
    with pytest.raises(StoreUnavailableError):  # the database server is unreachable
        tick(home, instance, None, StoresResource.from_settings(down))
    healthy = tick(home, instance, None, stores)
    assert [r.run_key for r in healthy.run_requests or []] == ["obama.v1"]


def test_a_manifest_that_lands_late_is_still_built_once(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    """A manifest stamped before the cursor (its write landed late) is picked up by the next
    tick, and nothing already requested is requested again."""
    sensor_home.upload("obama", OBAMA[:1])
    first = tick(sensor_home, instance, None)
    assert [r.run_key for r in first.run_requests or []] == ["obama.v1"]
    # v2 was submitted a second before v1's manifest, but its write lands only now.
    after = json.loads(first.cursor or "{}")["after"]
    doc = json.loads(sensor_home.blobs.get_object(after))
    v2 = sensor_home.meta.create_version("obama", doc["inputs"])
    stamp = int(after[len(MANIFEST_PREFIX):][:20]) - 1_000_000_000
    late = manifest_key("obama", v2.version, now_ns=stamp)
    assert late < after
    sensor_home.blobs.put_object(late, json.dumps({**doc, "version": v2.version}).encode())
    second = tick(sensor_home, instance, first.cursor)
    assert [r.run_key for r in second.run_requests or []] == ["obama.v2"], second.skip_reason
    third = tick(sensor_home, instance, second.cursor)
    assert not third.run_requests
    assert "no new upload manifests" in (third.skip_reason.skip_message if third.skip_reason else "")


def test_the_older_plain_key_cursor_is_still_understood(
    sensor_home: Home, instance: dg.DagsterInstance
) -> None:
    """A cursor from before the lookback format means "everything up to this key is handled"."""
    sensor_home.upload("obama", OBAMA[:1])
    [key] = sensor_home.blobs.list_objects(MANIFEST_PREFIX)
    assert not tick(sensor_home, instance, key).run_requests
    sensor_home.upload("obama", OBAMA[1:2])
    assert [r.run_key for r in tick(sensor_home, instance, key).run_requests or []] == ["obama.v2"]
