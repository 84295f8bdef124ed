"""`dagster dev` for tests: a DAGSTER_HOME holding the project's dagster.yaml, the server
started with the project's workspace.yaml on a free port in its own process group, its
GraphQL endpoint, and a clean stop of the whole group (webserver, daemon, code server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from services import free_ports

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).parent / "dagster"
# What `make dagster` sets: `dagster dev` warns, before any logging is set up, that `dg dev`
# supersedes it (a command the project does not install); the warning names this function.
DAGSTER_DEV_QUIET = {"PYTHONWARNINGS": "ignore:Function `dev_command` is superseded"}
ASSETS_QUERY = """{
  version
  assetNodes { assetKey { path } }
  workspaceOrError { ... on Workspace { locationEntries { name } } }
}"""


def make_dagster_home(path: Path) -> Path:
    """A fresh DAGSTER_HOME at ``path`` with the project's dagster.yaml (SQLite storage)."""
    path.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", path / "dagster.yaml")
    return path


def dagster_env(dagster_home: Path, persona_home: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(dagster_home), "PERSONA_HOME": str(persona_home)}


def stop_sensor(name: str, env: dict[str, str]) -> None:
    """Stop a sensor in the instance (as the UI's toggle does) before ``dagster dev`` starts,
    so its daemon never ticks it."""
    subprocess.run([str(DAGSTER), "sensor", "stop", name, "-w", "workspace.yaml"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)


@dataclass
class DagsterDev:
    proc: subprocess.Popen[bytes]
    port: int
    exit_code: int | None = None  # set when the server has stopped
    group_gone: bool = False  # every child of the process group exited after the stop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str) -> dict:
        resp = httpx.post(f"{self.base_url}/graphql", json={"query": query}, timeout=10)
        resp.raise_for_status()
        return resp.json()["data"]

    def wait_for_assets(self, timeout_s: float = 180) -> dict:
        """The ASSETS_QUERY answer once the code location has loaded its assets."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited early with {self.proc.returncode}")
            try:
                data = self.graphql(ASSETS_QUERY)
                if data["assetNodes"]:  # the webserver answers before the code location has loaded
                    return data
            except (httpx.HTTPError, KeyError, TypeError) as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"GraphQL did not answer within {timeout_s} s: {last}")


@contextmanager
def dagster_dev(
    dagster_home: Path, persona_home: Path, log_path: Path, *, args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[DagsterDev]:
    """``dagster dev -w workspace.yaml`` on a free port, with ``args`` and the variables in
    ``env`` (as `make dagster`: no SupersessionWarning); SIGTERM to its group on exit.

    Raises AssertionError when the server ignores SIGTERM for 120 s (it is then killed); a loaded
    2-core machine has taken over 60 s to stop the daemon, webserver and code server.
    """
    [port] = free_ports(1)
    with log_path.open("wb") as log:
        # Own session = own process group: dagster dev starts the webserver, daemon and code
        # server as children, and the whole group must go when the test ends.
        proc = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port), *args],
            cwd=ROOT, env={**dagster_env(dagster_home, persona_home), **DAGSTER_DEV_QUIET, **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        dev = DagsterDev(proc, port)
        try:
            yield dev
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                dev.exit_code = proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                raise AssertionError("dagster dev did not stop within 120 s of SIGTERM") from None
            dev.group_gone = _group_gone(proc.pid, timeout_s=60)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    # The children get the same SIGTERM and shut down on their own schedule.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    return False
