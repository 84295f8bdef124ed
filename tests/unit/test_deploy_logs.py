"""The deployments log JSON from their Dagster processes as from persona-core's: every Dagster
command of the compose file, and the Helm code server's, asks Dagster for ``--log-format json``
(parsed by Dagster's own command line) where PERSONA_LOG_JSON is on for that process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml
from dagster._cli import cli as dagster_cli
from dagster._daemon.cli import cli as daemon_cli
from dagster_webserver.cli import cli as webserver_cli

from persona_core.settings import LogSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WORKSPACE = "/opt/dagster/workspace.yaml"
CLIS: dict[str, click.Command] = {
    "dagster": dagster_cli,
    "dagster-daemon": daemon_cli,
    "dagster-webserver": webserver_cli,
}


def _params(command: list[str]) -> dict[str, Any]:
    """The options a Dagster command line runs with, parsed by Dagster's own click commands."""
    name, *args = command
    cli: click.Command | None = CLIS[name]
    ctx = None
    while isinstance(cli, click.Group):  # `dagster code-server start`: a group, then its command
        ctx = cli.make_context(name, [], parent=ctx, resilient_parsing=True)
        name, *args = args
        cli = cli.get_command(ctx, name)
    assert cli is not None, command
    # The compose file mounts deploy/dagster/workspace.yaml there (the option checks it exists).
    args = [str(DEPLOY / "dagster" / "workspace.yaml") if a == WORKSPACE else a for a in args]
    return dict(cli.make_context(name, args, parent=ctx).params)


def _log_json(env: dict[str, str]) -> bool:
    return LogSettings.model_validate({"log_json": env["PERSONA_LOG_JSON"]}).log_json


def test_compose_dagster_processes_log_json_with_the_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert _log_json(compose["x-persona-env"])
    for name in ("dagster-code", "dagster-webserver", "dagster-daemon"):
        service = compose["services"][name]
        assert _params(service["command"])["log_format"] == "json", name


def test_helm_code_server_logs_json_with_the_settings() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "dagster-values.yaml").read_text())
    [config_map] = [
        doc
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / "persona-core" / "config.yaml").read_text())
        if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "persona-core-config"
    ]
    assert _log_json(config_map["data"])
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert {"name": "persona-core-config"} in deployment["envConfigMaps"]
    params = _params(["dagster", "code-server", "start", *deployment["codeServerArgs"]])
    assert params["log_format"] == "json"
    assert (params["module_name"], params["attribute"]) == ("persona_pipeline.definitions", "deploy_defs")
