"""The deployed topology on one machine: PostgreSQL (persona metadata and Dagster's storage), an
S3 server (blobs, Dagster's IO manager and compute logs), a Dagster code server, the daemon and
the webserver as processes of their own, and the registry with two HTTP workers.

Dagster's instance is deploy/dagster/dagster.yaml copied unchanged (queued runs with a
concurrency limit, run monitoring, PostgreSQL storage, S3 compute logs); what compose sets for
its host (x-dagster-env) this sets for this one. The workspace is deploy/dagster/workspace.yaml
with this host's address for the code server.

Used by `make stack` / `make stack-down` (scripts/stack.py: detached, servers of its own, state
in a folder), by tests/integration/test_stack*.py (the session's PostgreSQL and S3 servers,
every process dies with pytest) and by bench/bench_stack.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
import yaml
from services import PostgresService, S3Service, _die_with_parent, free_ports, settings_env

from persona_core.store.from_settings import migrate_metadata_store
from persona_core.store.metadata import SqlMetadataStore
from registry_api.api_keys import create_key

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INSTANCE_SOURCE = ROOT / "deploy" / "dagster" / "dagster.yaml"
WORKSPACE_SOURCE = ROOT / "deploy" / "dagster" / "workspace.yaml"
MAX_CONCURRENT_RUNS = 2  # one build per core on a 2-core machine
BLOB_BUCKET = "persona"
DAGSTER_BUCKET = "dagster"  # deploy/dagster/dagster.yaml's compute-log bucket; the IO manager's too
DAGSTER_DB = "dagster"  # deploy/dagster/dagster.yaml's db_name
PERSONA_DB = "persona"
# Start order; stop order is the reverse (the registry first, the code server last).
PROCESSES = ("code", "daemon", "webserver", "registry")


@dataclass
class Ports:
    registry: int
    grpc: int
    webserver: int
    code: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*free_ports(4))


def stack_workspace(code_port: int) -> dict[str, Any]:
    """deploy/dagster/workspace.yaml, pointed at this host's code server."""
    doc: dict[str, Any] = yaml.safe_load(WORKSPACE_SOURCE.read_text())
    (entry,) = doc["load_from"]
    entry["grpc_server"].update(host="127.0.0.1", port=code_port)
    return doc


def instance_env(postgres_url: str, s3: S3Service, max_concurrent_runs: int) -> dict[str, str]:
    """The variables deploy/dagster/dagster.yaml reads (compose sets them in x-dagster-env),
    and boto3's for the compute logs and the IO manager."""
    pg = sa.make_url(postgres_url)
    return {
        "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_USERNAME": pg.username or "postgres",
        "DAGSTER_PG_PASSWORD": pg.password or "stack",  # trust auth: any password
        "DAGSTER_MAX_CONCURRENT_RUNS": str(max_concurrent_runs),
        "DAGSTER_S3_ENDPOINT_URL": s3.endpoint_url,
        "DAGSTER_S3_IO_BUCKET": DAGSTER_BUCKET,
        "DAGSTER_S3_IO_PREFIX": "io",
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": s3.region,
        "AWS_ENDPOINT_URL": s3.endpoint_url,
    }


@dataclass
class StackState:
    """What `make stack-down` needs and what a person reads: written to <root>/stack.json."""

    root: str
    ports: Ports
    admin_key: str
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)  # process name -> pid (own session each)
    groups: list[int] = field(default_factory=list)  # every session started, restarts included
    servers: dict[str, int] = field(default_factory=dict)  # postgres/s3 pids this stack started

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.registry}"

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.webserver}"

    def save(self) -> None:
        path = Path(self.root) / "stack.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)  # it holds the admin key and the S3 secret

    @classmethod
    def load(cls, root: Path) -> StackState:
        doc = json.loads((root / "stack.json").read_text())
        return cls(**{**doc, "ports": Ports(**doc["ports"])})


class Stack:
    """The processes of the topology over a PostgreSQL and an S3 server given to it."""

    def __init__(
        self,
        root: Path,
        postgres: PostgresService,
        s3: S3Service,
        *,
        ports: Ports | None = None,
        detached: bool = False,
        max_concurrent_runs: int = MAX_CONCURRENT_RUNS,
    ) -> None:
        self.root, self.postgres, self.s3, self.detached = root, postgres, s3, detached
        self.ports = ports or Ports.free()
        self.max_concurrent_runs = max_concurrent_runs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed_workers: set[int] = set()  # a killed run worker's lease stays until it is settled
        self.state: StackState | None = None

    # --- set-up ---------------------------------------------------------------------------

    def prepare(self) -> StackState:
        """Fresh databases and buckets, the metadata schema, an admin key, DAGSTER_HOME."""
        self.root.mkdir(parents=True, exist_ok=True)
        persona_url = self._fresh_database(PERSONA_DB)
        self._fresh_database(DAGSTER_DB)
        for bucket in (BLOB_BUCKET, DAGSTER_BUCKET):
            self.s3.delete_bucket(bucket)
            self.s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        settings = self.s3.settings(
            BLOB_BUCKET,
            self.root / "home",
            database_url=persona_url,
            signing_secret=secrets.token_urlsafe(32),
            public_base_url=f"http://127.0.0.1:{self.ports.registry}",
        )
        migrate_metadata_store(settings)  # as the deploy's migrate job, before anything starts
        meta = SqlMetadataStore.open(persona_url)
        try:
            admin_key = create_key(meta, "stack-admin", ["admin"])[1]
        finally:
            meta.close()
        home = self.root / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_bytes(INSTANCE_SOURCE.read_bytes())
        (self.root / "workspace.yaml").write_text(yaml.safe_dump(stack_workspace(self.ports.code)))
        (self.root / "logs").mkdir(exist_ok=True)
        env = {
            **settings_env(settings),
            **instance_env(self.postgres.admin_url, self.s3, self.max_concurrent_runs),
            "DAGSTER_HOME": str(home),
        }
        self.state = StackState(str(self.root), self.ports, admin_key, env)
        return self.state

    def _fresh_database(self, name: str) -> str:
        admin = sa.make_url(self.postgres.admin_url)
        libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)

    # --- processes ------------------------------------------------------------------------

    def command(self, name: str) -> list[str]:
        workspace = str(self.root / "workspace.yaml")
        p = self.ports
        return {
            "code": [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(p.code),
                "-m",
                "persona_pipeline.definitions",
                "-a",
                "deploy_defs",
            ],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            "webserver": [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p.webserver),
                "-w",
                workspace,
            ],
            "registry": [
                str(BIN / "persona-core"),
                "serve",
                "--port",
                str(p.registry),
                "--grpc-port",
                str(p.grpc),
                "--workers",
                "2",
            ],
        }[name]

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start one process in a session of its own (a SIGKILL of it reaches only it)."""
        state = self._state()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_", "AWS_"))}
        with (self.root / "logs" / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                self.command(name),
                cwd=ROOT,
                env={**clean, **state.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Attached (tests), a killed pytest takes the stack with it.
                preexec_fn=None if self.detached else _die_with_parent(signal.SIGKILL),  # noqa: PLW1509
            )
        self.procs[name] = proc
        state.pids[name] = proc.pid
        state.groups.append(proc.pid)
        state.save()
        return proc

    def start(self, timeout_s: float = 240) -> StackState:
        state = self.state or self.prepare()
        self.spawn("code")
        self.spawn("registry")  # starts while the code server loads
        self.wait_code_server(timeout_s)
        self.spawn("daemon")
        self.spawn("webserver")
        self.wait_ready(timeout_s)
        return state

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process itself (not its session: a code server's runs live on)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        proc.wait(30)

    def restart(self, name: str, timeout_s: float = 240) -> None:
        self.spawn(name)
        if name == "code":
            self.wait_code_server(timeout_s)
        else:
            self.wait_ready(timeout_s)

    def stop(self) -> None:
        stop_groups(self._state())

    def _state(self) -> StackState:
        if self.state is None:
            raise RuntimeError("the stack is not prepared")
        return self.state

    # --- readiness ------------------------------------------------------------------------

    def wait_code_server(self, timeout_s: float) -> None:
        from dagster._grpc.client import DagsterGrpcClient  # noqa: PLC0415 - dagster loads slowly

        client = DagsterGrpcClient(port=self.ports.code, host="127.0.0.1")
        self._until(lambda: client.ping("stack") is not None, "the code server", timeout_s, "code")

    def wait_ready(self, timeout_s: float) -> None:
        state = self._state()
        self._until(
            lambda: httpx.get(f"{state.registry_url}/readyz", timeout=2).status_code == 200,
            "the registry",
            timeout_s,
            "registry",
        )
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"

        def loaded() -> bool:
            resp = httpx.post(f"{state.dagster_url}/graphql", json={"query": query}, timeout=5)
            entries = resp.json()["data"]["workspaceOrError"]["locationEntries"]
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        self._until(loaded, "the webserver", timeout_s, "webserver")

    def _until(self, check: Any, what: str, timeout_s: float, name: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; log:\n{self.log_tail(name)}")
            with contextlib.suppress(Exception):  # anything here only means "not ready yet"
                if check():
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s; log:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # --- access ---------------------------------------------------------------------------

    def meta(self) -> SqlMetadataStore:
        return SqlMetadataStore.open(self._state().env["PERSONA_DATABASE_URL"])

    @contextlib.contextmanager
    def instance(self) -> Iterator[Any]:
        """The stack's DagsterInstance in this process (its variables set while it is open)."""
        import dagster as dg  # noqa: PLC0415

        env = self._state().env
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                yield instance
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.post(
            f"{self._state().dagster_url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=30,
        )
        resp.raise_for_status()
        doc: dict[str, Any] = resp.json()
        if doc.get("errors"):
            raise RuntimeError(doc["errors"])
        return doc["data"]


def stop_groups(state: StackState, grace_s: float = 30) -> None:
    """SIGTERM every session the stack started (the newest first: the registry, the webserver,
    the daemon, then code servers with the runs they launched), SIGKILL what is left after
    ``grace_s``; then the servers it started (PostgreSQL with a fast shutdown)."""
    groups = list(reversed(state.groups))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    _wait_gone(groups, grace_s, killpg=True)
    signals = {"postgres": signal.SIGINT, "s3": signal.SIGTERM}
    for name, pid in state.servers.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signals[name])
        _wait_gone([pid], grace_s, killpg=False)


def _wait_gone(ids: list[int], timeout_s: float, *, killpg: bool) -> None:
    send = os.killpg if killpg else os.kill
    deadline = time.monotonic() + timeout_s
    left = list(ids)
    while left and time.monotonic() < deadline:
        for i in list(left):
            try:
                send(i, 0)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(i, os.WNOHANG)  # reap our own children so they stop existing
            except ProcessLookupError:
                left.remove(i)
        time.sleep(0.2)
    for i in left:
        with contextlib.suppress(ProcessLookupError):
            send(i, signal.SIGKILL)


# --- the backfill's uploads ----------------------------------------------------------------

FACES = ROOT / "tests" / "fixtures" / "faces"
PORTRAITS = ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")


def persona_photos(index: int, count: int = 8) -> list[tuple[str, bytes]]:
    """``count`` JPEGs of the fixture portraits, varied by persona ``index`` (brightness,
    contrast, crop, mirror), so no two personas upload the same bytes."""
    import cv2  # noqa: PLC0415 - only the uploads need OpenCV
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(index)
    photos = []
    for i in range(count):
        img = cv2.imread(str(FACES / PORTRAITS[i % len(PORTRAITS)]))
        if img is None:
            raise RuntimeError(f"cannot read {PORTRAITS[i % len(PORTRAITS)]}")
        h, w = img.shape[:2]
        top, left = (int(rng.integers(0, d // 16 + 1)) for d in (h, w))
        img = img[top : h - int(rng.integers(0, h // 16 + 1)), left : w - int(rng.integers(0, w // 16 + 1))]
        img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.85, 1.15)), beta=float(rng.uniform(-15, 15)))
        if rng.random() < 0.5:
            img = cv2.flip(img, 1)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        photos.append((f"p{index:03d}_{i}.jpg", buf.tobytes()))
    return photos


def upload_persona(client: Any, persona_id: str, index: int, count: int = 8) -> int:
    """Create the persona and upload its photos (all A_SELFIE) over HTTP; the pending version."""
    from persona_core.client import UploadItem  # noqa: PLC0415

    client.create_persona(persona_id, {"display_name": persona_id})
    photos = persona_photos(index, count)
    files = [UploadItem(name, data, "image/jpeg") for name, data in photos]
    manifest = {"files": {name: {"camera_mode": "A_SELFIE"} for name, _ in photos}}
    return int(client.create_version(persona_id, files, manifest=manifest).version)


# --- watching the backfill -------------------------------------------------------------------

ENDED = ("published", "blocked", "failed")
# What an ops script names (README, "The GraphQL path of an ops script").
REPOSITORY = {"repositoryLocationName": "persona_pipeline", "repositoryName": "__repository__"}
REBUILD_PARTITION_SET = "rebuild_newest_version_partition_set"
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""
BACKFILL_RUNNING = ("REQUESTED", "CANCELING", "FAILING")
UNFINISHED_RUN_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


def statuses(stack: Stack, versions: dict[str, int]) -> dict[str, Any]:
    """persona -> its version record, read from the metadata database."""
    meta = stack.meta()
    try:
        return {p: meta.get_version(p, v) for p, v in versions.items()}
    finally:
        meta.close()


def wait_ended(stack: Stack, versions: dict[str, int], timeout_s: float) -> dict[str, Any]:
    """persona -> version record once every version is published, blocked or failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = statuses(stack, versions)
        if all(r.status.value in ENDED for r in records.values()):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not ended after {timeout_s:.0f} s: { {p: r.status.value for p, r in records.items()} }"
            )
        time.sleep(1)


def building_workers(stack: Stack) -> dict[str, int]:
    """persona -> pid of the live run worker building its version now (from the version's
    lease), leaving out workers this stack has killed (their leases stand until settled)."""
    meta = stack.meta()
    try:
        found = {}
        for summary in meta.list_personas(limit=1000):
            for record in meta.list_versions(summary.persona_id):
                lease = record.lease
                if record.status.value != "building" or lease is None or not lease.pid:
                    continue
                if lease.pid in stack.killed_workers or lease.process_gone():
                    continue
                found[record.persona_id] = lease.pid
        return found
    finally:
        meta.close()


def kill_a_run_worker(stack: Stack, timeout_s: float = 240) -> str:
    """SIGKILL the live process of a run that is building a version; the persona it was building."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for persona, pid in building_workers(stack).items():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            stack.killed_workers.add(pid)
            return persona
        time.sleep(0.5)
    raise AssertionError(f"no run was building within {timeout_s:.0f} s")


def rerun(stack: Stack, partition: str) -> str:
    """Launch the build job for ``partition`` as the UI's re-run does (through the queue)."""
    params = {
        "selector": {
            "repositoryLocationName": "persona_pipeline",
            "repositoryName": "__repository__",
            "jobName": "build_persona_version",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        "runConfigData": {},
    }
    result = stack.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"re-run of {partition} refused: {result}")
    return str(result["run"]["runId"])


def launch_rebuild_backfill(stack: Stack, personas: list[str]) -> str:
    """A rebuild of ``personas`` launched as the UI's backfill is, through GraphQL: its id."""
    params = {
        "selector": {"partitionSetName": REBUILD_PARTITION_SET, "repositorySelector": REPOSITORY},
        "partitionNames": personas,
    }
    answer = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return str(answer["backfillId"])


def backfill_status(stack: Stack, backfill_id: str) -> str:
    """The backfill's status (one of BACKFILL_RUNNING while it still runs)."""
    return str(stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"])


def unfinished_runs(stack: Stack) -> list[Any]:
    """Runs queued, starting, started or canceling in the stack's instance."""
    import dagster as dg  # noqa: PLC0415

    unfinished = [dg.DagsterRunStatus(s) for s in UNFINISHED_RUN_STATUSES]
    with stack.instance() as instance:
        return list(instance.get_runs(dg.RunsFilter(statuses=unfinished)))


def wait_drained(stack: Stack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while unfinished_runs(stack):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"runs left in the queue after {timeout_s:.0f} s: "
                f"{[(r.run_id, r.status.value) for r in unfinished_runs(stack)]}"
            )
        time.sleep(2)
