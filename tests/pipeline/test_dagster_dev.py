"""`dagster dev` with the project's workspace.yaml serves the code location: the GraphQL
endpoint answers with the build assets, the jobs, sensors and the daily gc schedule, and the
process group stops cleanly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from dagster_dev_server import dagster_dev, make_dagster_home

pytestmark = [pytest.mark.dagster, pytest.mark.slow]


def test_dagster_dev_serves_the_workspace_and_stops_cleanly(tmp_path: Path) -> None:
    with dagster_dev(make_dagster_home(tmp_path / "dagster_home"), tmp_path / "persona",
                     tmp_path / "dagster_dev.log") as dev:
        data = dev.wait_for_assets()
        assert data["version"]
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert keys == {"inputs", "qc", "faces", "masks", "face_embeddings", "style_embeddings",
                        "voice_embedding", "anchor_sets", "persona_pack"}
        assert [e["name"] for e in data["workspaceOrError"]["locationEntries"]] == ["persona_pipeline"]
        repo = dev.graphql("""{ repositoriesOrError { ... on RepositoryConnection { nodes {
            jobs { name } sensors { name sensorState { status } }
            schedules { name cronSchedule scheduleState { status } } } } } }""")
        [node] = repo["repositoriesOrError"]["nodes"]
        assert "build_persona_version" in {j["name"] for j in node["jobs"]}
        assert "gc_job" in {j["name"] for j in node["jobs"]}
        assert {s["name"]: s["sensorState"]["status"] for s in node["sensors"]} == {
            "upload_manifest_sensor": "RUNNING", "version_run_failure_sensor": "RUNNING",
            "stuck_builds_sensor": "RUNNING", "erasure_sensor": "RUNNING"}
        assert [(s["name"], s["cronSchedule"], s["scheduleState"]["status"]) for s in node["schedules"]] == [
            ("daily_gc_schedule", "30 3 * * *", "RUNNING")]
    assert dev.exit_code in (0, -signal.SIGTERM)
    assert dev.group_gone, "code server / daemon children outlived dagster dev"
