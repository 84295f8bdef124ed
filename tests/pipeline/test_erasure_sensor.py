"""The Dagster purger on a real (SQLite) instance with small stand-in assets, the erasure sensor
and the retention job: a version's erasure takes only that version; a persona's takes its
rebuild runs and its persona partition; an erasure made without the purger (the registry's)
reaches the instance on the sensor's next tick; the daily gc job erases expired versions from
the instance too and reports its counts."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from erasure_support import survivors
from pipeline_support import OBAMA, Home

from persona_core.erasure import erase
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_pipeline import instance_storage
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.erasure import erasure_sensor
from persona_pipeline.defs.partitions import persona_versions, personas
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.erasure import dagster_purger, purger_for
from persona_pipeline.instance import project_instance
from persona_pipeline.partition_keys import partition_key

pytestmark = pytest.mark.dagster
ROOT = Path(__file__).resolve().parents[2]


def secret_of(key: str) -> str:
    """Stands in for a contact sheet: bytes that name one partition and appear nowhere else."""
    return f"thumbnails-of-{key}-{hashlib.sha256(key.encode()).hexdigest()}"


@dg.asset(partitions_def=persona_versions)
def sheet(context: dg.AssetExecutionContext) -> dg.Output[str]:
    secret = secret_of(context.partition_key)
    print(secret)  # the run's compute log
    return dg.Output(secret, metadata={"contact_sheet": dg.MetadataValue.md(secret)})


@dg.asset_check(asset=sheet)
def sheet_ok(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    key = context.op_execution_context.run.tags["dagster/partition"]
    return dg.AssetCheckResult(passed=True, metadata={"seen": secret_of(key) + "-check"})


@dg.op
def resubmit(context: dg.OpExecutionContext) -> None:
    print(secret_of(context.partition_key))


@dg.job(partitions_def=personas)
def rebuild_like() -> None:
    resubmit()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path, Settings(home=tmp_path, retention_days=1e-9, gc_grace_s=0))


@pytest.fixture
def instance(home: Home) -> Iterator[dg.DagsterInstance]:
    inst = project_instance(home.settings)
    yield inst
    inst.dispose()


@pytest.fixture
def sqlite_keeps_deleted_bytes() -> Iterator[None]:
    """SQLite's default where it was built without SECURE_DELETE: a deleted row's bytes stay in
    free pages. (Debian's build deletes securely, which would hide a missing VACUUM.)"""

    def insecure(dbapi_conn: object, _: object) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute("PRAGMA secure_delete=OFF")  # type: ignore[attr-defined]

    sa.event.listen(sa.engine.Engine, "connect", insecure)
    yield
    sa.event.remove(sa.engine.Engine, "connect", insecure)


def materialize(instance: dg.DagsterInstance, persona: str, version: int, *, tagged: bool = True) -> str:
    """A build-like run of the version's partition: tagged as the CLI and the sensor tag theirs,
    or only with its partition, as a launch from the UI is. Returns the run id."""
    key = partition_key(persona, version)
    instance.add_dynamic_partitions(persona_versions.name, [key])
    if not instance.has_dynamic_partition(personas.name, persona):
        instance.add_dynamic_partitions(personas.name, [persona])
    tags = {"persona_id": persona, "persona_version": str(version)} if tagged else {}
    result = dg.materialize([sheet, sheet_ok], partition_key=key, instance=instance, tags=tags)
    assert result.success
    return result.run_id


def rebuild(instance: dg.DagsterInstance, persona: str) -> str:
    result = rebuild_like.execute_in_process(partition_key=persona, instance=instance)
    return result.run_id


def run_ids(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_run_ids())


def materialized(instance: dg.DagsterInstance, key: str) -> list[str]:
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=sheet.key, asset_partitions=[key]), limit=10)
    return [r.run_id for r in found.records]


def check_runs(instance: dg.DagsterInstance) -> set[str]:
    history = instance.event_log_storage.get_asset_check_execution_history(sheet_ok.check_key, limit=100)
    return {h.run_id for h in history}


def secrets(*keys: str) -> dict[str, bytes]:
    return {k: secret_of(k).encode() for k in keys}


def test_version_erasure_takes_that_version_and_nothing_else(
    home: Home, instance: dg.DagsterInstance, sqlite_keeps_deleted_bytes: None
) -> None:
    for persona, photos in (("ann", OBAMA[:1]), ("ann", OBAMA[1:2]), ("bob", OBAMA[2:3])):
        home.upload(persona, photos)
    v1 = materialize(instance, "ann", 1)
    v1_again = materialize(instance, "ann", 1, tagged=False)
    v2 = materialize(instance, "ann", 2, tagged=False)
    persona_run = rebuild(instance, "ann")
    bob = materialize(instance, "bob", 1)
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "sheet", partition="ann.v1", metadata={"note": secret_of("ann.v1") + "-runless"}))
    dagster_home = home.settings.resolved_dagster_home
    assert set(survivors(dagster_home, secrets("ann.v1"))) == {"ann.v1"}  # the scan's control

    erase(home.meta, home.blobs, "ann", 1, actor="test", reason="asked", purgers=[dagster_purger(instance)])

    assert run_ids(instance) == {v2, persona_run, bob}
    assert materialized(instance, "ann.v1") == []
    assert materialized(instance, "ann.v2") == [v2]
    assert materialized(instance, "bob.v1") == [bob]
    assert check_runs(instance) == {v2, bob}
    assert set(instance.get_dynamic_partitions(persona_versions.name)) == {"ann.v2", "bob.v1"}
    assert set(instance.get_dynamic_partitions(personas.name)) == {"ann", "bob"}
    storage = Path(instance.storage_directory())
    assert not (storage / "sheet" / "ann.v1").exists()
    assert (storage / "sheet" / "ann.v2").exists()
    for gone in (v1, v1_again):
        assert not (storage / gone).exists()
    assert (storage / v2 / "compute_logs").is_dir()
    assert survivors(dagster_home, secrets("ann.v1")) == {}
    assert set(survivors(dagster_home, secrets("ann.v2", "bob.v1", "ann"))) == {"ann.v2", "bob.v1", "ann"}


@pytest.mark.postgres
def test_version_erasure_on_a_postgres_backed_instance(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same purge on dagster-postgres storage: no row of Dagster's tables keeps the version."""
    pg = sa.make_url(postgres_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    monkeypatch.setenv("DAGSTER_PG_URL", pg)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.postgres.yaml", dagster_home / "dagster.yaml")
    home = Home(tmp_path / "home")
    home.upload("ann", OBAMA[:1])
    home.upload("ann", OBAMA[1:2])
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        materialize(instance, "ann", 1)
        v2 = materialize(instance, "ann", 2, tagged=False)
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "sheet", partition="ann.v1", metadata={"note": secret_of("ann.v1") + "-runless"}))

        purgers = [dagster_purger(instance)]
        erase(home.meta, home.blobs, "ann", 1, actor="test", reason="asked", purgers=purgers)

        assert run_ids(instance) == {v2}
        assert materialized(instance, "ann.v1") == []
        assert materialized(instance, "ann.v2") == [v2]
        assert check_runs(instance) == {v2}
        assert instance.get_dynamic_partitions(persona_versions.name) == ["ann.v2"]
    engine = sa.create_engine(pg)
    try:
        with engine.connect() as conn:
            for table in ("event_logs", "asset_keys", "asset_check_executions", "runs", "run_tags"):
                found = conn.execute(sa.text(f"SELECT count(*) FROM {table} t WHERE t::text LIKE :s"),
                                     {"s": f"%{secret_of('ann.v1')}%"}).scalar_one()
                assert found == 0, table
                kept = conn.execute(sa.text(f"SELECT count(*) FROM {table} t WHERE t::text LIKE :s"),
                                    {"s": "%ann.v2%"}).scalar_one()
                assert kept > 0, table
    finally:
        engine.dispose()
    assert survivors(dagster_home, secrets("ann.v1")) == {}


def test_persona_erasure_takes_its_rebuild_runs_and_persona_partition(
    home: Home, instance: dg.DagsterInstance
) -> None:
    home.upload("ann", OBAMA[:1])
    home.upload("ann", OBAMA[1:2])
    home.upload("bob", OBAMA[2:3])
    materialize(instance, "ann", 1)
    materialize(instance, "ann", 2, tagged=False)
    rebuild(instance, "ann")
    bob = materialize(instance, "bob", 1)
    purge = dagster_purger(instance)

    erase(home.meta, home.blobs, "ann", actor="test", reason="asked", purgers=[purge])

    assert run_ids(instance) == {bob}
    assert instance.get_dynamic_partitions(persona_versions.name) == ["bob.v1"]
    assert instance.get_dynamic_partitions(personas.name) == ["bob"]
    assert survivors(home.settings.resolved_dagster_home, secrets("ann.v1", "ann.v2", "ann")) == {}
    # Idempotent: a second purge of the same job deletes nothing more.
    job = home.meta.tombstones.job_for("ann")
    assert job is not None
    purge(job)
    assert run_ids(instance) == {bob}
    assert materialized(instance, "bob.v1") == [bob]


def test_deleted_rows_leave_no_bytes_once_the_instance_is_compacted(
    home: Home, instance: dg.DagsterInstance, sqlite_keeps_deleted_bytes: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where SQLite keeps deleted bytes, the purge's VACUUM is what removes them."""
    home.upload("ann", OBAMA[:1])
    materialize(instance, "ann", 1)
    with monkeypatch.context() as patched:
        patched.setattr(instance_storage, "compact", lambda _: None)
        erase(home.meta, home.blobs, "ann", actor="test", reason="asked", purgers=[dagster_purger(instance)])
    dagster_home = home.settings.resolved_dagster_home
    assert materialized(instance, "ann.v1") == []
    assert survivors(dagster_home, secrets("ann.v1")) != {}, "rows deleted, bytes still in the files"
    instance_storage.compact(instance)
    assert survivors(dagster_home, secrets("ann.v1")) == {}


def tick(home: Home, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    stores = StoresResource.from_settings(home.settings)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"stores": stores}) as ctx:
        result = erasure_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def said(result: dg.SensorResult) -> str:
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


def test_erasure_sensor_purges_what_the_registry_erased(home: Home, instance: dg.DagsterInstance) -> None:
    home.upload("ann", OBAMA[:1])
    home.upload("bob", OBAMA[1:2])
    home.upload("cid", OBAMA[2:3])
    materialize(instance, "ann", 1)
    bob = materialize(instance, "bob", 1)
    cid = materialize(instance, "cid", 1)
    # The registry erases without the Dagster purger (it does not import the pipeline).
    erase(home.meta, home.blobs, "ann", actor="registry", reason="asked")
    assert materialized(instance, "ann.v1") != []

    first = tick(home, instance, None)
    assert run_ids(instance) == {bob, cid}
    assert "ann" not in instance.get_dynamic_partitions(personas.name)
    assert survivors(home.settings.resolved_dagster_home, secrets("ann.v1")) == {}
    assert "ann" not in said(first)  # ticks are kept: they name job ids only
    again = tick(home, instance, first.cursor)
    assert said(again) == "no new erasures"
    assert again.cursor == first.cursor

    # An erasure still running (started, not finished) is purged when first seen ...
    job = home.meta.tombstones.start("bob", None, actor="registry", reason="asked")
    running = tick(home, instance, again.cursor)
    assert run_ids(instance) == {cid}
    assert json.loads(running.cursor or "")["open"] == [job.id]
    assert said(tick(home, instance, running.cursor)) == "no new erasures"
    # ... and again once it has finished, for what a run wrote in between.
    late = materialize(instance, "bob", 1)
    home.meta.tombstones.finish(job, {})
    done = tick(home, instance, running.cursor)
    assert late not in run_ids(instance)
    assert json.loads(done.cursor or "")["open"] == []
    assert said(tick(home, instance, done.cursor)) == "no new erasures"


def gc_defs(home: Home) -> dg.Definitions:
    return make_defs(resources={"stores": StoresResource.from_settings(home.settings),
                                "models": ModelsResource(), "pipeline_config": PipelineConfigResource()})


def gc_report(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [output] = [e for e in result.all_node_events if e.is_successful_output]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def test_gc_job_erases_expired_versions_from_the_instance(
    home: Home, instance: dg.DagsterInstance, sqlite_keeps_deleted_bytes: None
) -> None:
    """A version that never published, older than retention_days (here ~0), is erased by the
    daily job, which purges its runs from the instance and compacts it once at the end; a dry
    run only counts."""
    home.upload("ann", OBAMA[:1])
    ann = materialize(instance, "ann", 1)
    job = gc_defs(home).resolve_job_def("gc_job")

    dry = job.execute_in_process(instance=instance,
                                 run_config={"ops": {"collect_garbage": {"config": {"dry_run": True}}}})
    assert gc_report(dry)["dry_run"] is True
    assert gc_report(dry)["expired_versions"] == 1
    assert ann in run_ids(instance)

    result = job.execute_in_process(instance=instance)
    report = gc_report(result)
    assert (report["dry_run"], report["expired_versions"]) == (False, 1)
    assert {"resumed_erasures", "blobs_deleted", "bytes_reclaimed", "kept_young", "seconds"} <= set(report)
    assert home.meta.list_versions("ann")[0].status is VersionStatus.ERASED
    assert ann not in run_ids(instance)
    assert materialized(instance, "ann.v1") == []
    assert survivors(home.settings.resolved_dagster_home, secrets("ann.v1")) == {}
    assert instance.get_run_by_id(result.run_id) is not None  # the gc run itself stays


def test_gc_runs_daily_and_every_sensor_is_on_in_the_code_location(home: Home) -> None:
    defs = gc_defs(home)
    schedule = defs.resolve_schedule_def("daily_gc_schedule")
    assert (schedule.job_name, schedule.cron_schedule) == ("gc_job", "30 3 * * *")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    sensor = defs.resolve_sensor_def("erasure_sensor")
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30


def test_purger_for_a_home_where_dagster_never_ran_does_nothing(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.upload("ann", OBAMA[:1])
    erase(home.meta, home.blobs, "ann", actor="cli", reason="asked", purgers=[purger_for(home.settings)])
    assert not home.settings.resolved_dagster_home.exists()
