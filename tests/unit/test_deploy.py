"""deploy/: the compose file passes the Compose Specification's schema and the Kubernetes
manifests pass Kubernetes' own schemas (offline, kubernetes-validate); every setting they pass is
one persona-core really reads, with values it accepts; every command they run parses with its
real options; images are pinned and run as the same non-root user; probes and health checks
ask routes and services that exist; the PostgreSQL connections they can open fit the server;
and the README's deploy section names only what is there."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from persona_cli.main import app as cli_app
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s" / "persona-core"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
FIELDS = set(ApiSettings.model_fields)  # persona_core Settings plus the registry's own
# The oldest Kubernetes release the manifests promise (gRPC probes, autoscaling/v2,
# policy/v1) and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
PERSONA_IMAGE = "persona-core:0.1.0"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- helpers ---------------------------------------------------------------------------


def _env_file() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation, as `docker compose --env-file deploy/.env` applies it."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        given = env.get(name)
        missing = given is None or (op.startswith(":") and given == "")
        if op.endswith("?") and missing:
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if missing and op.endswith("-") else (given or "")

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def _compose_raw() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # merges the <<: anchors


def _compose() -> dict[str, Any]:
    return _interpolate(_compose_raw(), _env_file())  # type: ignore[no-any-return]


def _values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "k8s" / "dagster-values.yaml").read_text())


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _manifest(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _container(kind: str, name: str) -> dict[str, Any]:
    (container,) = _manifest(kind, name)["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _settings_from(env: dict[str, Any]) -> ApiSettings:
    given = {k.removeprefix("PERSONA_").lower(): v for k, v in env.items() if k.startswith("PERSONA_")}
    unknown = sorted(set(given) - FIELDS)
    assert not unknown, f"deploy passes settings persona-core does not have: {unknown}"
    return ApiSettings(**given)


def _parse_cli(command: list[str]) -> dict[str, Any]:
    """The options `persona-core <command>` would run with: parsed and range-checked by the
    real CLI, not run."""
    assert command[0] == "persona-core", command
    group: Any = typer.main.get_command(cli_app)
    ctx = group.make_context("persona-core", list(command[1:]))
    sub = group.get_command(ctx, command[1])
    assert sub is not None, command
    return dict(sub.make_context(command[1], list(command[2:]), parent=ctx).params)


def _processes(serve: dict[str, Any]) -> int:
    # serve --workers N > 1: N HTTP workers and the process that serves gRPC (registry_api.server).
    workers = serve["workers"]
    return workers + 1 if workers > 1 else 1


def _registry_paths(tmp_path: Path) -> set[str]:
    from registry_api.main import create_app  # noqa: PLC0415 - needs stores; only here

    return set(create_app(ApiSettings(env="test", home=tmp_path)).openapi()["paths"])


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


# --- compose ---------------------------------------------------------------------------


def test_compose_passes_the_compose_specification_schema() -> None:
    """The vendored compose-spec schema (tests/fixtures/SOURCES.md) accepts the interpolated
    file; the same validator refuses a misspelt key, so it is really looking."""
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    compose = _compose()
    assert [e.message for e in validator.iter_errors(compose)] == []
    broken = copy.deepcopy(compose)
    broken["services"]["registry"]["healthcheck"]["intervall"] = "10s"
    assert list(validator.iter_errors(broken))


def test_compose_services_and_settings() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "registry", "dagster-webserver", "dagster-daemon", "dagster-code"} <= set(
        services
    )
    for name in ("registry", "dagster-code", "dagster-webserver", "dagster-daemon", "migrate"):
        settings = _settings_from(services[name]["environment"])
        assert settings.env == "prod"
        assert settings.resolved_database_url.startswith("postgresql+psycopg://")
        assert settings.resolved_blob_url == "s3://persona"
        assert settings.log_json is True


def test_compose_signs_urls_for_the_published_s3_port() -> None:
    """Reads and writes use MinIO's name inside the compose network; signed asset URLs name
    the published port on the host, so a client outside the network can fetch them."""
    compose = _compose()
    services = compose["services"]
    settings = _settings_from(services["registry"]["environment"])
    internal = urlsplit(settings.s3_endpoint_url or "")
    public = urlsplit(settings.s3_public_endpoint_url or "")
    assert internal.hostname in services  # a compose service: resolvable only inside
    assert public.hostname not in services
    published = dict(str(p).split(":")[-2:] for p in services[internal.hostname]["ports"])  # host: container
    assert published.get(str(public.port)) == str(internal.port)


def test_compose_images_are_pinned() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, (name, image)
        assert "/" not in tag, (name, image)
        assert tag != "latest", (name, image)
        assert re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag), (name, image)
    assert services["registry"]["image"] == PERSONA_IMAGE
    assert _compose_raw()["x-persona-image"]["image"].endswith(f":-{PERSONA_IMAGE}}}")


def test_compose_commands_parse_with_their_real_options(tmp_path: Path) -> None:
    services = _compose()["services"]
    serve = _parse_cli(services["registry"]["command"])
    assert serve["grpc_port"]  # gRPC on
    assert serve["workers"]  # set, not one per host core
    assert f"{serve['port']}:{serve['port']}" in services["registry"]["ports"]
    assert f"{serve['grpc_port']}:{serve['grpc_port']}" in services["registry"]["ports"]
    _parse_cli(services["migrate"]["command"])
    code = services["dagster-code"]["command"]
    assert importlib.util.find_spec(code[code.index("-m") + 1]) is not None
    port = code[code.index("-p") + 1]
    workspace = yaml.safe_load((DEPLOY / "dagster" / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert (grpc["host"], str(grpc["port"])) == ("dagster-code", port)
    health = services["registry"]["healthcheck"]["test"][-1]
    assert re.search(r"127\.0\.0\.1:8000(/[a-z]+)", health).group(1) in _registry_paths(tmp_path)  # type: ignore[union-attr]


def test_compose_health_checks_for_every_role_of_the_image() -> None:
    """The image's HEALTHCHECK is the registry's; each other long-running role of the image
    replaces it with its own (a Dagster command that exists), the one-shot migrate turns it off."""
    services = _compose()["services"]
    for name, service in services.items():
        if service.get("image") != PERSONA_IMAGE or name == "registry":
            continue
        check = service.get("healthcheck", {})
        if name == "migrate":
            assert check == {"disable": True}
            continue
        test = check["test"]
        assert test[0] == "CMD", (name, test)
        assert (ROOT / ".venv" / "bin" / test[1]).exists(), (name, test)  # installed in the image too
    code_check = services["dagster-code"]["healthcheck"]["test"]
    code_port = services["dagster-code"]["command"][services["dagster-code"]["command"].index("-p") + 1]
    assert code_check[code_check.index("-p") + 1] == code_port


def test_compose_postgres_connections_fit_the_server() -> None:
    """Every persona-core process may hold db_pool_size + db_max_overflow connections: the
    registry's processes and the code location with its concurrent runs take at most half of
    PostgreSQL's max_connections; Dagster's own storage and administration share the rest."""
    services = _compose()["services"]
    per_process = {}
    for name in ("registry", "dagster-code"):
        s = _settings_from(services[name]["environment"])
        per_process[name] = s.db_pool_size + s.db_max_overflow
    registry = _processes(_parse_cli(services["registry"]["command"])) * per_process["registry"]
    instance = yaml.safe_load((DEPLOY / "dagster" / "dagster.yaml").read_text())
    runs_env = instance["run_coordinator"]["config"]["max_concurrent_runs"]["env"]
    runs = int(services["dagster-daemon"]["environment"][runs_env])
    code = (1 + runs) * per_process["dagster-code"]
    command = services["postgres"]["command"]
    max_connections = int(next(c.split("=")[1] for c in command if c.startswith("max_connections=")))
    assert 2 * (registry + code) <= max_connections, (registry, code, max_connections)
    header = (DEPLOY / "compose.yaml").read_text()
    assert f"= {registry + code}, under half of\n# PostgreSQL's max_connections ({max_connections}" in header


# --- the image -------------------------------------------------------------------------


def test_dockerfile_copies_real_paths() -> None:
    for src in re.findall(r"^COPY (\S+) \./\S+$", _dockerfile(), flags=re.M):
        assert (ROOT / src).exists(), src


def test_image_is_pinned_non_root_with_a_health_check(tmp_path: Path) -> None:
    text = _dockerfile()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert re.findall(r"^FROM (\S+)", text, flags=re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users == ["10001:10001"]  # numeric, so runAsNonRoot can check it
    pod = _manifest("Deployment", "persona-registry")["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["runAsNonRoot"]) == (10001, 10001, True)
    check = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", text, flags=re.M)
    assert check, "no HEALTHCHECK"
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", check.group(1))
    assert url
    assert url.group(2) in _registry_paths(tmp_path)
    serve = _parse_cli(json.loads(re.search(r"^CMD (\[.*\])$", text, flags=re.M).group(1)))  # type: ignore[union-attr]
    assert str(serve["port"]) == url.group(1)
    # The extras the image installs are extras the project has.
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = re.search(r'"\.\[([a-z,]+),\$\{ORT_EXTRA\}\]"', text).group(1).split(",")  # type: ignore[union-attr]
    assert set(named) <= extras, set(named) - extras
    # One onnxruntime build, chosen by a build argument; never the second webrtcvad module.
    ort = re.search(r"^ARG ORT_EXTRA=(\w+)$", text, flags=re.M).group(1)  # type: ignore[union-attr]
    assert ort == "cpu"
    assert {"cpu", "gpu"} <= extras
    assert "webrtcvad-wheels" not in text


# --- Kubernetes ------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_pass_the_kubernetes_schemas(version: str) -> None:
    docs = _manifests()
    kinds = {d["kind"] for _, d in docs}
    assert {"ConfigMap", "Job", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
    # Strict validation refuses a field Kubernetes does not have (here, a misspelt probe key).
    broken = copy.deepcopy(_manifest("Deployment", "persona-registry"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_registry_deployment_probes_ports_and_settings(tmp_path: Path) -> None:
    deployment = _manifest("Deployment", "persona-registry")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    serve = _parse_cli(container["command"])
    assert serve["workers"] == 1  # the HPA scales pods; each pod holds one pool
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": serve["port"], "grpc": serve["grpc_port"]}
    paths = _registry_paths(tmp_path)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        assert container[probe]["httpGet"]["path"] in paths
    grpc_probe = container["readinessProbe"]["grpc"]
    assert grpc_probe["port"] == serve["grpc_port"]
    # grpc.health.v1 reports on the registry's service by its full name (registry_api.grpc_health).
    assert grpc_probe["service"] == pb.DESCRIPTOR.services_by_name["PersonaRegistry"].full_name
    # Settings: the ConfigMap defined here and the Secret whose keys the install notes list.
    refs = [e.get("configMapRef", e.get("secretRef")) for e in container["envFrom"]]
    assert refs == [{"name": "persona-core-config"}, {"name": "persona-core-secrets"}]
    assert [next(iter(e)) for e in container["envFrom"]] == ["configMapRef", "secretRef"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    assert container["image"] == PERSONA_IMAGE
    migrate = _container("Job", "persona-core-migrate")
    assert migrate["image"] == PERSONA_IMAGE
    assert migrate["envFrom"] == container["envFrom"]
    code = _values()["dagster-user-deployments"]["deployments"][0]["image"]
    assert f"{code['repository']}:{code['tag']}" == PERSONA_IMAGE
    _parse_cli(migrate["command"])


def test_registry_service_and_hpa_point_at_the_deployment() -> None:
    deployment = _manifest("Deployment", "persona-registry")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = _manifest("Service", "persona-registry")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == container_ports
    hpa = _manifest("HorizontalPodAutoscaler", "persona-registry")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "persona-registry"}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # CPU utilisation is measured against the request: a container without one never scales.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


def test_k8s_settings_and_connection_budget() -> None:
    """The ConfigMap's settings (with the Secret's keys) make valid prod settings, and the
    connection budget stated in its header is what the HPA's maximum, the registry's processes
    and the code location's concurrent runs add up to."""
    config = _manifest("ConfigMap", "persona-core-config")["data"]
    header = (K8S / "config.yaml").read_text()
    secret_keys = re.findall(
        r"--from-literal=(PERSONA_[A-Z0-9_]+)=", (DEPLOY / "k8s" / "dagster-values.yaml").read_text()
    )
    assert "PERSONA_SIGNING_SECRET" in secret_keys
    env = {**config, **dict.fromkeys(secret_keys, "stand-in-secret-value-for-tests")}
    env["PERSONA_DATABASE_URL"] = "postgresql+psycopg://persona:pw@persona-db:5432/persona"
    settings = _settings_from(env)
    assert settings.env == "prod"
    assert settings.resolved_blob_url.startswith("s3://")
    serve = _parse_cli(_container("Deployment", "persona-registry")["command"])
    assert settings.grpc_port == serve["grpc_port"]
    per_process = settings.db_pool_size + settings.db_max_overflow
    pods = _manifest("HorizontalPodAutoscaler", "persona-registry")["spec"]["maxReplicas"]
    registry = pods * _processes(serve)
    runs = _values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"]
    budget = (registry + 1 + runs) * per_process
    assert f"Connection budget: {budget}, so give PostgreSQL a max_connections of at least {2 * budget}" in (
        " ".join(header.replace("#", " ").split())
    )


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
    # Every pod and every run Job gets the same settings: the ConfigMap in deploy/k8s/persona-core.
    _manifest("ConfigMap", "persona-core-config")
    for section in (
        deployment,
        values["runLauncher"]["config"]["k8sRunLauncher"],
        values["dagsterWebserver"],
        values["dagsterDaemon"],
    ):
        assert {"name": "persona-core-config"} in section["envConfigMaps"]
        assert {"name": "persona-core-secrets"} in section["envSecrets"]
    # The install steps in the header apply the files that exist, in an order that works.
    header = (DEPLOY / "k8s" / "dagster-values.yaml").read_text()
    steps = re.findall(r"^#\s+(kubectl .*|helm upgrade .*)$", header, flags=re.M)
    applied = [s.split(" -f ")[1].split()[0] for s in steps if " apply -f " in s]
    assert applied == [
        "deploy/k8s/persona-core/config.yaml",
        "deploy/k8s/persona-core/migrate-job.yaml",
        "deploy/k8s/persona-core/registry.yaml",
    ]
    assert all((ROOT / path).is_file() for path in applied)
    keys = ("migrate-job", "wait", "helm", "registry")
    order = [next(i for i, s in enumerate(steps) if key in s) for key in keys]
    assert order == sorted(order)


def test_dagster_instance_yaml_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster.yaml passes Dagster's own instance schema and each class's config schema."""
    from dagster._config import validate_config  # noqa: PLC0415 - dagster is the pipeline extra
    from dagster._core.instance.config import dagster_instance_config  # noqa: PLC0415
    from dagster._serdes.config_class import ConfigurableClassData  # noqa: PLC0415

    for name, value in _compose()["services"]["dagster-daemon"]["environment"].items():
        monkeypatch.setenv(name, str(value))
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


def test_dagster_instance_is_the_same_in_compose_and_helm() -> None:
    """The instance both deployments give Dagster: runs in PostgreSQL, queued, compute logs in
    S3 under the same prefix, telemetry off. Only the launcher (one host vs a Job per run) and
    the number of concurrent runs (the host's cores vs the cluster's) differ."""
    instance = yaml.safe_load((DEPLOY / "dagster" / "dagster.yaml").read_text())
    values = _values()
    assert set(instance["storage"]) == {"postgres"}
    database = instance["storage"]["postgres"]["postgres_db"]["db_name"]
    assert values["postgresql"]["postgresqlDatabase"] == database
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert instance["compute_logs"]["class"] == values["computeLogManager"]["type"] == "S3ComputeLogManager"
    prefix = values["computeLogManager"]["config"]["s3ComputeLogManager"]["prefix"]
    assert instance["compute_logs"]["config"]["prefix"] == prefix
    assert instance["telemetry"]["enabled"] is False
    assert values["telemetry"]["enabled"] is False
    # Run monitoring on, with the same start timeout and poll interval.
    monitoring, helm_monitoring = instance["run_monitoring"], values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is helm_monitoring["enabled"] is True
    assert monitoring["start_timeout_seconds"] == helm_monitoring["startTimeoutSeconds"]
    assert monitoring["poll_interval_seconds"] == helm_monitoring["pollIntervalSeconds"]


def test_make_stack_runs_the_deployed_dagster_instance() -> None:
    """`make stack` (tests/stack.py) gives Dagster deploy/dagster/dagster.yaml unchanged, so the
    two cannot drift: every variable the file reads is set by compose's Dagster services and by the
    stack, and the stack's workspace is compose's with this host's code-server address."""
    from services import S3Service  # noqa: PLC0415 - tests/ is on the path under pytest
    from stack import INSTANCE_SOURCE, WORKSPACE_SOURCE, instance_env, stack_workspace  # noqa: PLC0415

    assert INSTANCE_SOURCE == DEPLOY / "dagster" / "dagster.yaml"
    assert WORKSPACE_SOURCE == DEPLOY / "dagster" / "workspace.yaml"
    read = set(re.findall(r"^\s*env: (\w+)$", INSTANCE_SOURCE.read_text(), flags=re.M))
    assert {"DAGSTER_PG_HOST", "DAGSTER_MAX_CONCURRENT_RUNS", "DAGSTER_S3_ENDPOINT_URL"} <= read
    services = _compose()["services"]
    for name in ("dagster-code", "dagster-webserver", "dagster-daemon"):
        assert read <= set(services[name]["environment"]), name
    s3 = S3Service("http://127.0.0.1:9000", "key", "secret")
    stack_env = instance_env("postgresql+psycopg://postgres@127.0.0.1:5433/postgres", s3, 2)
    assert read <= set(stack_env)
    assert stack_env["DAGSTER_PG_PORT"] == "5433"
    ours = stack_workspace(4321)["load_from"][0]["grpc_server"]
    theirs = yaml.safe_load(WORKSPACE_SOURCE.read_text())["load_from"][0]["grpc_server"]
    assert {**theirs, "host": "127.0.0.1", "port": 4321} == ours


# --- README ----------------------------------------------------------------------------


def test_readme_deploy_section_names_what_is_there() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("## For platform teams: deploy")
    section = text[start : text.index("\n## ", start + 1)]
    paths = re.findall(r"`(deploy/[^`\s]+)`", section)
    assert {"deploy/compose.yaml", "deploy/k8s/persona-core/registry.yaml"} <= set(paths)
    for path in paths:
        assert (ROOT / path).exists(), path
    settings = {s.removeprefix("PERSONA_").lower() for s in re.findall(r"\bPERSONA_[A-Z0-9_]+", section)}
    assert {"s3_public_endpoint_url", "db_pool_size", "db_max_overflow"} <= settings
    assert settings <= FIELDS, settings - FIELDS
    compose = _compose()["services"]
    # The ports the section says compose publishes, it publishes.
    published = {str(p).split(":")[0] for s in compose.values() for p in s.get("ports", [])}
    for port in re.findall(r"localhost:(\d+)", section):
        assert port in published, port
