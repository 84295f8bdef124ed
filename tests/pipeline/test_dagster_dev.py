"""`dagster dev` with the project's workspace.yaml serves the code location: the GraphQL
endpoint answers with the build assets, job and sensor, and the process group stops cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from services import free_ports

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
pytestmark = [pytest.mark.dagster, pytest.mark.slow]

QUERY = """{
  version
  assetNodes { assetKey { path } }
  workspaceOrError { ... on Workspace { locationEntries { name } } }
}"""


def _graphql(port: int, query: str) -> dict:
    resp = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]


def _wait_for_assets(proc: subprocess.Popen[bytes], port: int, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited early with {proc.returncode}")
        try:
            data = _graphql(port, QUERY)
            if data["assetNodes"]:  # the webserver answers before the code location has loaded
                return data
        except (httpx.HTTPError, KeyError, TypeError) as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"GraphQL did not answer within {timeout_s} s: {last}")


def test_dagster_dev_serves_the_workspace_and_stops_cleanly(tmp_path: Path) -> None:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    [port] = free_ports(1)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PERSONA_HOME": str(tmp_path / "persona")}
    log = (tmp_path / "dagster_dev.log").open("wb")
    # Own session = own process group: dagster dev starts the webserver, daemon and code
    # server as children, and the whole group must go when the test ends.
    proc = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        data = _wait_for_assets(proc, port)
        assert data["version"]
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert keys == {"inputs", "qc", "faces", "masks", "face_embeddings", "style_embeddings",
                        "voice_embedding", "anchor_sets", "persona_pack"}
        assert [e["name"] for e in data["workspaceOrError"]["locationEntries"]] == ["persona_pipeline"]
        repo = _graphql(port, """{ repositoriesOrError { ... on RepositoryConnection { nodes {
            jobs { name } sensors { name sensorState { status } } } } } }""")
        [node] = repo["repositoriesOrError"]["nodes"]
        assert "build_persona_version" in {j["name"] for j in node["jobs"]}
        assert {s["name"]: s["sensorState"]["status"] for s in node["sensors"]} == {
            "upload_manifest_sensor": "RUNNING"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError("dagster dev did not stop within 60 s of SIGTERM") from None
        finally:
            log.close()
    assert code in (0, -signal.SIGTERM)
    assert _group_gone(proc.pid, timeout_s=60), "code server / daemon children outlived dagster dev"


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
