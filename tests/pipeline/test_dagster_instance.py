"""Dagster on the project's instance configs: dagster.postgres.yaml on a real PostgreSQL
runs a build and keeps its runs, partitions and check results there; dagster.yaml gives
SQLite storage under DAGSTER_HOME."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home

from persona_core.store.base import VersionStatus
from persona_pipeline.build import build_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dagster


def instance_from(config_file: str, dagster_home: Path) -> dg.DagsterInstance:
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / config_file, dagster_home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(dagster_home))


def test_default_instance_config_is_sqlite_under_dagster_home(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with instance_from("dagster.yaml", tmp_path) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        instance.add_dynamic_partitions("persona_versions", ["obama.v1"])
        assert instance.get_dynamic_partitions("persona_versions") == ["obama.v1"]
    assert list(tmp_path.rglob("*.db"))


@pytest.mark.postgres
@pytest.mark.models
@pytest.mark.slow
def test_build_on_a_postgres_backed_instance(postgres_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # dagster-postgres speaks psycopg2 (its event watcher uses LISTEN/NOTIFY the psycopg2 way).
    pg = sa.make_url(postgres_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    monkeypatch.setenv("DAGSTER_PG_URL", pg)
    home = Home(tmp_path / "home")
    v = home.upload("obama", OBAMA)
    with instance_from("dagster.postgres.yaml", tmp_path / "dagster_home") as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = build_version("obama", v.version, home.settings, instance, config=FIXTURE_CONFIG)
        assert result.status == VersionStatus.PUBLISHED
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert run.is_success
        assert instance.get_dynamic_partitions("persona_versions") == ["obama.v1"]
    # A second instance on the same database sees the run: the history lives in PostgreSQL.
    with instance_from("dagster.postgres.yaml", tmp_path / "other_home") as again:
        assert again.get_run_by_id(result.run_id) is not None
