"""The data-ops view of a fleet on the deployed topology (tests/stack.py: PostgreSQL, S3, the
Dagster code server, daemon and webserver on deploy/dagster/dagster.yaml, the registry), through
Dagster's GraphQL API as an ops script uses it (and in headless Chromium for the screenshots in
test-artifacts/):

- `persona-core build` and `rebuild`, run as an operator runs them on that host (its
  ``PERSONA_*`` and ``DAGSTER_*`` environment), record their runs in the stack's PostgreSQL
  instance, in their own process (not through the daemon's queue), and use its stores;
- a rebuild backfill over two personas, launched with `launchPartitionBackfill`, completes;
- the build job's runs (GraphQL `runsOrError(filter: {pipelineName})`, and its Runs tab, which
  also filters on the repository label) hold the runs of `persona-core build` and `rebuild`, of
  the upload sensor (an upload over the registry's HTTP API), of the UI and of the GraphQL API
  alike, each with the persona tags;
- every check result is stored with its version (`assetCheckExecutions(partition: ...)`);
- a blocked version is a verdict: its run succeeds with publish skipped and the gate failed at
  ERROR, and no asset of the graph has a failed partition.

One stack serves the whole module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright
from services import PostgresService, S3Service
from stack import (
    BACKFILL_RUNNING,
    REPOSITORY,
    Stack,
    StackState,
    backfill_status,
    launch_rebuild_backfill,
    upload_persona,
)

from persona_core.client import RegistryClient
from persona_core.store.base import VersionStatus

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.s3,
    pytest.mark.dagster,
    pytest.mark.models,
    pytest.mark.slow,
    pytest.mark.e2e,
    # The first test also starts the stack and runs two CLI builds; on 2 loaded cores each
    # build and each wait for the sensor's and the backfill's runs take minutes.
    pytest.mark.timeout(1500),
]
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
PERSONA_CORE = Path(sys.executable).with_name("persona-core")
BUILD_JOB = "build_persona_version"
STRICT = json.dumps({"min_anchors_per_mode": {"A_SELFIE": 9}})  # the example folder has 3 selfies

RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status pipelineName tags { key value } stepStats { stepKey status } } } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
CHECK_EXECUTIONS = """query($partition: String) { assetCheckExecutions(assetKey: {path: ["anchor_sets"]},
  checkName: "enough_anchors", partition: $partition, limit: 10) {
  runId status partition evaluation { success severity partition metadataEntries { label } } } }"""
PARTITION_STATS = """{ assetNodes { assetKey { path } partitionStats { numMaterialized numFailed } } }"""


@dataclass
class Fleet:
    stack: Stack
    cli_runs: dict[str, str]  # what the CLI built -> its run id

    @property
    def state(self) -> StackState:
        assert self.stack.state is not None
        return self.stack.state

    @property
    def base_url(self) -> str:
        return self.state.dagster_url

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.stack.graphql(query, variables)

    def runs(self, **filter_: Any) -> list[dict[str, Any]]:
        return self.gql(RUNS, filter=filter_)["runsOrError"]["results"]

    def run(self, run_id: str) -> dict[str, Any]:
        [run] = self.runs(runIds=[run_id])
        return run

    def status(self, persona: str, version: int) -> VersionStatus:
        meta = self.stack.meta()
        try:
            return meta.get_version(persona, version).status
        finally:
            meta.close()

    def published(self, persona: str, version: int) -> bool:
        return self.status(persona, version) is VersionStatus.PUBLISHED


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def cli(state: StackState, *argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it on the stack's host: the environment the stack's Dagster
    processes get (PERSONA_* for its stores, DAGSTER_HOME and DAGSTER_* for its instance), no
    --home, none of this process's own PERSONA_* / DAGSTER_* / AWS_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_", "AWS_"))}
    return subprocess.run(
        [str(PERSONA_CORE), "--json", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**clean, **state.env},
    )


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresService, s3_server: S3Service
) -> Iterator[Fleet]:
    stack = Stack(tmp_path_factory.mktemp("ops_view") / "stack", postgres_server, s3_server)
    try:
        state = stack.start()
        built = cli(state, "build", str(ROOT / "examples" / "photos"), "--persona", "alice")
        assert built.returncode == 0, built.stderr
        blocked = cli(state, "rebuild", "alice", "--thresholds", STRICT)
        assert blocked.returncode == 5, blocked.stderr  # blocked: exit 5, alice v2
        cli_runs = {
            "build alice v1": json.loads(built.stdout)["run_id"],
            "rebuild alice v2": json.loads(blocked.stdout)["run_id"],
        }
        # Uploaded over the registry's HTTP API: the upload sensor builds bob v1 (a sensor run).
        with RegistryClient(state.registry_url, state.admin_key) as client:
            assert upload_persona(client, "bob", 0) == 1
        fleet = Fleet(stack, cli_runs)
        # Built before the tests look: the graph's screenshot shows settled statuses, none mid-run.
        wait_for("the sensor to build bob v1", lambda: fleet.published("bob", 1), timeout_s=600)
        yield fleet
    finally:
        stack.stop()


def test_the_clis_runs_are_in_the_stacks_instance_and_stores(fleet: Fleet) -> None:
    """An operator's CLI on the deployed host records in the deployed instance (PostgreSQL run
    storage), not in a SQLite folder under PERSONA_HOME; its runs executed in its own process,
    never queued for the daemon; the versions are in the stack's PostgreSQL and S3 stores."""
    import dagster as dg  # noqa: PLC0415 - dagster loads slowly

    assert not (Path(fleet.state.env["PERSONA_HOME"]) / "dagster").exists()
    with fleet.stack.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for door, run_id in fleet.cli_runs.items():
            run = instance.get_run_by_id(run_id)
            assert run is not None, door
            assert run.status is dg.DagsterRunStatus.SUCCESS, door
            enqueued = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
            assert enqueued.records == [], door
    assert fleet.published("alice", 1)
    assert fleet.status("alice", 2) is VersionStatus.BLOCKED
    with RegistryClient(fleet.state.registry_url, fleet.state.admin_key) as client:
        assert client.get_pack("alice", 1).version == 1  # served from the stack's stores


def test_blocked_version_is_a_verdict_and_checks_are_found_by_version(fleet: Fleet) -> None:
    assert fleet.status("alice", 2) is VersionStatus.BLOCKED
    run = fleet.run(fleet.cli_runs["rebuild alice v2"])
    assert run["status"] == "SUCCESS"
    steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
    assert steps["anchor_sets"] == "SUCCESS"
    assert steps["persona_pack"] == "SKIPPED"  # publish skipped, not failed
    assert tags_of(run)["persona/outcome"] == "blocked"

    [gate] = fleet.gql(CHECK_EXECUTIONS, partition="alice.v2")["assetCheckExecutions"]
    assert (gate["partition"], gate["evaluation"]["partition"]) == ("alice.v2", "alice.v2")
    assert gate["runId"] == run["runId"]
    assert gate["status"] == "FAILED"
    assert (gate["evaluation"]["success"], gate["evaluation"]["severity"]) == (False, "ERROR")
    [passed] = fleet.gql(CHECK_EXECUTIONS, partition="alice.v1")["assetCheckExecutions"]
    assert passed["status"] == "SUCCEEDED"
    assert passed["runId"] == fleet.cli_runs["build alice v1"]

    stats = {
        "/".join(n["assetKey"]["path"]): n["partitionStats"] for n in fleet.gql(PARTITION_STATS)["assetNodes"]
    }
    assert {name: s["numFailed"] for name, s in stats.items()} == dict.fromkeys(stats, 0)
    assert stats["anchor_sets"]["numMaterialized"] >= 2  # alice v1 and the blocked v2

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = welcomed(browser.new_page(viewport={"width": 1600, "height": 1000}), fleet)
            page.goto(f"{fleet.base_url}/asset-groups/persona_build", wait_until="load")
            page.get_by_text("persona_pack").first.wait_for(timeout=60_000)
            page.wait_for_timeout(12_000)  # the statuses fill in after the graph
            page.screenshot(
                path=str(ARTIFACTS / "dagster_graph_after_blocked_version.png"), animations="disabled"
            )
            page.goto(
                f"{fleet.base_url}/assets/anchor_sets?view=checks&checkDetail=enough_anchors",
                wait_until="load",
            )
            page.get_by_text("Execution history").first.click(timeout=60_000)
            # The check's history names the version of each result: blocked v2 failed, v1 passed.
            page.get_by_text("alice.v2").first.wait_for(timeout=60_000)
            page.get_by_text("alice.v1").first.wait_for(timeout=60_000)
            page.screenshot(
                path=str(ARTIFACTS / "dagster_gate_check_by_version.png"),
                animations="disabled",
                full_page=True,
            )
        finally:
            browser.close()


def welcomed(page: Page, fleet: Fleet) -> Page:
    page.goto(f"{fleet.base_url}/runs", wait_until="load")
    # A fresh browser meets the first-visit dialog (once per browser, not per instance).
    with contextlib.suppress(PlaywrightError):
        page.get_by_role("button", name="Skip").click(timeout=15_000)
    return page


def test_a_rebuild_backfill_over_two_personas_completes(fleet: Fleet) -> None:
    backfill = launch_rebuild_backfill(fleet.stack, ["alice", "bob"])

    def done() -> str | None:
        status = backfill_status(fleet.stack, backfill)
        return status if status not in BACKFILL_RUNNING else None

    assert wait_for("the backfill to finish", done, timeout_s=600) in {"COMPLETED", "COMPLETED_SUCCESS"}
    rebuilds = fleet.runs(pipelineName="rebuild_newest_version")
    assert sorted(tags_of(r)["dagster/partition"] for r in rebuilds) == ["alice", "bob"]
    assert {r["status"] for r in rebuilds} == {"SUCCESS"}
    # Each rebuild made a new pending version; the upload sensor builds them with the defaults.
    wait_for(
        "alice v3 and bob v2 to publish",
        lambda: fleet.published("alice", 3) and fleet.published("bob", 2),
        timeout_s=900,
    )


def test_the_build_jobs_runs_hold_every_door_with_persona_tags(fleet: Fleet) -> None:
    # A run launched through the GraphQL API (a re-run of alice v1: unchanged), as a script would.
    launched = fleet.gql(
        LAUNCH,
        params={
            "selector": {**REPOSITORY, "jobName": BUILD_JOB},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "alice.v1"}]},
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    graphql_run = launched["run"]["runId"]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = welcomed(browser.new_page(viewport={"width": 1600, "height": 1100}), fleet)
            # A run from the UI: the sensor run's page, "Re-execute all" (bob v1 again: unchanged).
            sensor_run = next(
                r["runId"]
                for r in fleet.runs(
                    pipelineName=BUILD_JOB, tags=[{"key": "dagster/partition", "value": "bob.v1"}]
                )
                if tags_of(r).get("dagster/sensor_name")
            )
            page.goto(f"{fleet.base_url}/runs/{sensor_run}", wait_until="load")
            page.get_by_role("button", name=re.compile(r"Re-execute all")).first.click(timeout=60_000)
            page.wait_for_url(re.compile(r".*/runs/(?!" + sensor_run + r").+"), timeout=60_000)
            ui_run = page.url.rstrip("/").rsplit("/", 1)[1]

            def finished() -> bool:
                return all(
                    fleet.run(r)["status"] in {"SUCCESS", "FAILURE", "CANCELED"}
                    for r in (graphql_run, ui_run)
                )

            wait_for("the GraphQL and UI runs to finish", finished, timeout_s=600)
            # What the job's Runs tab asks for: the job, and the label of the repository it is in.
            label = [{"key": ".dagster/repository", "value": "__repository__@persona_pipeline"}]
            runs = {r["runId"]: r for r in fleet.runs(pipelineName=BUILD_JOB, tags=label)}
            doors = {**fleet.cli_runs, "graphql": graphql_run, "ui": ui_run, "sensor": sensor_run}
            for door, run_id in doors.items():
                assert run_id in runs, door
                tags = tags_of(runs[run_id])
                persona, version = tags["dagster/partition"].split(".v")
                assert (tags.get("persona_id"), tags.get("persona_version")) == (persona, version), door
            assert fleet.run(graphql_run)["status"] == "SUCCESS"
            assert fleet.run(ui_run)["status"] == "SUCCESS"

            # The job's own Runs tab (it filters on the job and the repository label) lists them all.
            page.goto(f"{fleet.base_url}/locations/persona_pipeline/jobs/{BUILD_JOB}/runs", wait_until="load")
            page.get_by_text(graphql_run[:8]).first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            body = page.inner_text("body")
            missing = {door: run_id for door, run_id in doors.items() if run_id[:8] not in body}
            page.screenshot(
                path=str(ARTIFACTS / "dagster_build_job_runs_tab.png"), animations="disabled", full_page=True
            )
            assert not missing, f"the Runs tab misses {missing}"
        finally:
            browser.close()
