"""The builder's models are chosen without code, at every door: `persona-core build
--identity-model ...` and a run the upload sensor starts with the model named by the environment
(``PERSONA_IDENTITY_MODEL``, ``PERSONA_MODEL_DIR``, ``PERSONA_ALLOW_NONCOMMERCIAL``) both
publish a pack that records the chosen model, the opt-in, and that its identity lines come from
the pack alone (the model has no measured impostor scale). Without the opt-in the choice is
refused with a typed error before anything is written."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import OBAMA, Home
from tiny_models import write_buffalo_l
from typer.testing import CliRunner

from persona_cli.common import ExitCode
from persona_cli.main import app
from persona_core.pack import PersonaPack
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.partitions import ensure_partition, persona_versions, personas
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.defs.sensors import upload_manifest_sensor

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "photos"
IDENTITY = "buffalo_l:identity"
MODES = {
    "obama.jpg": "A_SELFIE",
    "obama1.jpg": "A_SELFIE",
    "obama2.jpg": "A_SELFIE",
    "obama3.jpg": "C_CUTAWAY",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PERSONA_* setting from the caller's shell decides a model here; root logging restored."""
    for name in [n for n in os.environ if n.startswith("PERSONA_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _published_pack(settings: Settings, persona_id: str, version: int) -> PersonaPack:
    home = Home(settings.home, settings)
    record = home.meta.get_published(persona_id, version)
    return PersonaPack.model_validate_json(home.blobs.get(record.pack_ref))


def _assert_records_the_chosen_model(pack: PersonaPack) -> None:
    models = {m.task: m for m in pack.provenance.models}
    assert models["identity"].name == IDENTITY
    assert models["identity"].noncommercial_opt_in is True
    assert models["detect"].name == "yunet-2023mar-int8"  # not chosen: the default
    assert pack.identity.embedding_model == IDENTITY
    assert pack.identity.embedding_dim == 512
    cal = pack.refresh_policy.identity_calibration
    assert cal is not None
    assert cal.model == IDENTITY
    assert cal.impostor_scale_measured is False
    assert cal.source == "pack_only", cal.reason


def test_cli_build_with_identity_model_records_it_in_the_pack(tmp_path: Path) -> None:
    model_dir = write_buffalo_l(tmp_path / "models", same_identity_for_all=True)
    folder = tmp_path / "upload"
    shutil.copytree(EXAMPLES, folder)
    home = tmp_path / "home"
    args = [
        "--home",
        str(home),
        "--json",
        "build",
        str(folder),
        "--persona",
        "alice",
        "--identity-model",
        IDENTITY,
        "--model-dir",
        str(model_dir),
    ]

    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == ExitCode.USAGE, refused.output
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "model_noncommercial", error
    assert IDENTITY in error["message"]
    listed = CliRunner().invoke(app, ["--home", str(home), "versions", "alice"])
    assert listed.exit_code == ExitCode.NOT_FOUND, listed.stdout  # refused before the persona was made

    result = CliRunner().invoke(app, [*args, "--allow-noncommercial"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == VersionStatus.PUBLISHED.value
    _assert_records_the_chosen_model(_published_pack(Settings(home=home), "alice", summary["version"]))

    # A model upgrade: the same inputs rebuilt with a model that has a measured scale.
    rebuilt = CliRunner().invoke(
        app, ["--home", str(home), "--json", "rebuild", "alice", "--identity-model", "sface-2021dec-int8"]
    )
    assert rebuilt.exit_code == 0, rebuilt.stderr
    pack = _published_pack(Settings(home=home), "alice", json.loads(rebuilt.stdout)["version"])
    assert {m.task: m.name for m in pack.provenance.models}["identity"] == "sface-2021dec-int8"
    cal = pack.refresh_policy.identity_calibration
    assert cal is not None
    assert (cal.source, cal.impostor_scale_measured) == ("calibrated", True)


def test_a_sensor_run_builds_with_the_model_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = write_buffalo_l(tmp_path / "models", same_identity_for_all=True)
    home = Home(tmp_path / "home")
    version = home.upload("alice", OBAMA, camera_modes=MODES).version
    # The environment of the code location's run worker; the default gate (3 A_SELFIE anchors).
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_IDENTITY_MODEL", IDENTITY)
    monkeypatch.setenv("PERSONA_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("PERSONA_ALLOW_NONCOMMERCIAL", "1")
    from persona_pipeline.definitions import defs  # noqa: PLC0415 - the code location, its own resources

    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources={"stores": StoresResource()}) as ctx:
            tick = upload_manifest_sensor(ctx)
        assert isinstance(tick, dg.SensorResult)
        [request] = tick.run_requests or []
        assert request.partition_key == f"alice.v{version}"
        ensure_partition(instance, persona_versions, request.partition_key)
        ensure_partition(instance, personas, "alice")
        run = defs.resolve_job_def(build_persona_version.name).execute_in_process(
            partition_key=request.partition_key, instance=instance, tags=request.tags, raise_on_error=False
        )
    record = home.meta.get_version("alice", version)
    assert run.success, record.reasons
    assert record.status == VersionStatus.PUBLISHED
    _assert_records_the_chosen_model(_published_pack(home.settings, "alice", version))


def test_a_sensor_run_without_the_opt_in_fails_with_the_licence_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = write_buffalo_l(tmp_path / "models", same_identity_for_all=True)
    home = Home(tmp_path / "home")
    version = home.upload("alice", OBAMA, camera_modes=MODES).version
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_IDENTITY_MODEL", IDENTITY)
    monkeypatch.setenv("PERSONA_MODEL_DIR", str(model_dir))
    from persona_pipeline.definitions import defs  # noqa: PLC0415

    with dg.instance_for_test() as instance:
        key = f"alice.v{version}"
        ensure_partition(instance, persona_versions, key)
        run = defs.resolve_job_def(build_persona_version.name).execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False
        )
    assert not run.success
    failure = next(e for e in run.all_events if e.is_failure)
    assert "PERSONA_ALLOW_NONCOMMERCIAL" in str(failure.event_specific_data)
    # Refused as the run set up, before its build lease claimed the version.
    assert home.meta.get_version("alice", version).status == VersionStatus.PENDING
