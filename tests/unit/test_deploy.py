"""deploy/: the compose file, Dagster instance files and Helm values parse, and every setting
they pass is one persona-core really reads, with values it accepts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from persona_cli.main import app as cli_app
from registry_api.config import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FIELDS = set(ApiSettings.model_fields)  # persona_core Settings plus the registry's own
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "k8s" / "dagster-values.yaml").read_text())


def _persona_env(env: dict[str, Any]) -> dict[str, str]:
    # Interpolate ${VAR...} with a stand-in long enough to pass the prod secret checks.
    return {k: _VAR.sub(lambda m: f"stand-in-{m.group(1).lower()}-value", str(v)) for k, v in env.items()}


def _settings_from(env: dict[str, str]) -> ApiSettings:
    given = {k.removeprefix("PERSONA_").lower(): v for k, v in env.items() if k.startswith("PERSONA_")}
    unknown = sorted(set(given) - FIELDS)
    assert not unknown, f"deploy passes settings persona-core does not have: {unknown}"
    return ApiSettings(**given)  # type: ignore[arg-type]


def test_compose_services_and_settings() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "minio", "registry", "dagster-webserver", "dagster-daemon", "dagster-code"} <= set(
        services
    )
    for name in ("registry", "dagster-code", "dagster-webserver", "dagster-daemon", "migrate"):
        settings = _settings_from(_persona_env(services[name]["environment"]))
        assert settings.env == "prod"
        assert settings.resolved_database_url.startswith("postgresql+psycopg://")
        assert settings.resolved_blob_url == "s3://persona"
        assert settings.log_json is True


def test_compose_commands_exist(tmp_path: Path) -> None:
    services = _compose()["services"]
    runner = CliRunner()
    for name in ("registry", "migrate"):
        command = services[name]["command"]
        assert command[0] == "persona-core"
        assert runner.invoke(cli_app, [*command[1:2], "--help"]).exit_code == 0
    code = services["dagster-code"]["command"]
    module = code[code.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None
    port = code[code.index("-p") + 1]
    workspace = yaml.safe_load((DEPLOY / "dagster" / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert (grpc["host"], str(grpc["port"])) == ("dagster-code", port)
    health = services["registry"]["healthcheck"]["test"][-1]
    from registry_api.main import create_app  # noqa: PLC0415 - needs stores; only here

    paths = create_app(ApiSettings(env="test", home=tmp_path)).openapi()["paths"]
    assert re.search(r"127\.0\.0\.1:8000(/[a-z]+)", health).group(1) in paths  # type: ignore[union-attr]


def test_dagster_instance_yaml_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster.yaml passes Dagster's own instance schema and each class's config schema."""
    from dagster._config import validate_config  # noqa: PLC0415 - dagster is the pipeline extra
    from dagster._core.instance.config import dagster_instance_config  # noqa: PLC0415
    from dagster._serdes.config_class import ConfigurableClassData  # noqa: PLC0415

    monkeypatch.setenv("DAGSTER_PG_USERNAME", "persona")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "secret")
    config, _ = dagster_instance_config(str(DEPLOY / "dagster"))
    assert set(config["storage"]) == {"postgres"}
    for key in ("run_coordinator", "run_launcher", "compute_logs"):
        section = config[key]
        data = ConfigurableClassData(
            section["module"], section["class"], yaml.safe_dump(section.get("config") or {})
        )
        cls = getattr(importlib.import_module(data.module_name), data.class_name)
        result = validate_config(cls.config_type(), section.get("config") or {})
        assert result.success, (key, result.errors)


def test_helm_values_k8s_launcher_postgres_s3_and_settings() -> None:
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["computeLogManager"]["config"]["s3ComputeLogManager"]["bucket"]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    args = deployment["codeServerArgs"]
    module = importlib.import_module(args[args.index("-m") + 1])
    # The attribute the code server loads exists and keeps intermediate values in S3.
    deploy_defs = getattr(module, args[args.index("-a") + 1])
    io_manager = deploy_defs.resources["io_manager"]
    assert type(io_manager).__name__ == "S3PickleIOManager"
    configmaps = {
        m["metadata"]["name"]: m["data"] for m in values["extraManifests"] if m["kind"] == "ConfigMap"
    }
    config = configmaps["persona-core-config"]
    # Every pod and every run Job gets the same settings.
    for section in (
        deployment,
        values["runLauncher"]["config"]["k8sRunLauncher"],
        values["dagsterWebserver"],
        values["dagsterDaemon"],
    ):
        assert {"name": "persona-core-config"} in section["envConfigMaps"]
        assert {"name": "persona-core-secrets"} in section["envSecrets"]
    # The secret's keys are documented in the file's header, next to the kubectl command.
    secret_keys = re.findall(
        r"--from-literal=(PERSONA_[A-Z0-9_]+)=", (DEPLOY / "k8s" / "dagster-values.yaml").read_text()
    )
    assert "PERSONA_SIGNING_SECRET" in secret_keys
    env = {**config, **dict.fromkeys(secret_keys, "stand-in-secret-value-for-tests")}
    env["PERSONA_DATABASE_URL"] = "postgresql+psycopg://persona:pw@persona-db:5432/persona"
    settings = _settings_from(env)
    assert settings.env == "prod"
    assert settings.resolved_blob_url.startswith("s3://")


def test_dockerfile_copies_real_paths() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) \./\S+$", text, flags=re.M):
        assert (ROOT / src).is_dir(), src
