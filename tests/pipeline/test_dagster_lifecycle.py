"""The version lifecycle under a real `dagster dev` (webserver + daemon + code server), one
server for the module: a sensor-launched run whose worker is SIGKILLed mid-build leaves its
version `failed` with "build process died" within one stuck-builds sensor interval; the runs
list tells a blocked build from a crashed one (persona/outcome tags, screenshot); the asset
page of a re-run published partition is not failed and shows "already published" (screenshot).
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import httpx
import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from dagster_dev_server import DagsterDev, dagster_dev
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home
from playwright.sync_api import sync_playwright

from persona_core.store.base import BuildLease, VersionStatus
from persona_core.versions import DIED_PREFIX
from persona_pipeline.build import build_version
from persona_pipeline.defs.lifecycle import OUTCOME_TAG, STUCK_SENSOR_INTERVAL_S
from persona_pipeline.instance import ensure_dagster_home
from persona_pipeline.steps.config import PipelineConfig

T = TypeVar("T")
REBUILT = ("r1", "r2", "r3")
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]
STRICT = PipelineConfig(
    required_modes=("A_SELFIE", "C_CUTAWAY"), min_anchors_per_mode={"A_SELFIE": 1, "C_CUTAWAY": 5}
)


class World:
    def __init__(self, home: Home, dagster_home: Path, dev: DagsterDev, published: str, blocked: str) -> None:
        self.home, self.dagster_home, self.dev = home, dagster_home, dev
        self.published, self.blocked = published, blocked
        self.published_hash = home.meta.get_version("pub", 1).content_hash


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("lifecycle")
    home = Home(root / "persona")
    dagster_home = ensure_dagster_home(home.settings)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # Built in-process before the server starts: the sensor leaves non-pending versions alone.
        first = build_version(
            "pub", home.upload("pub", OBAMA).version, home.settings, instance, config=FIXTURE_CONFIG
        )
        assert first.status is VersionStatus.PUBLISHED
        again = build_version("pub", 1, home.settings, instance, config=FIXTURE_CONFIG)
        assert again.success
        for persona in REBUILT:  # tagged like examples/photos: the default gate publishes them
            tagged = home.upload(persona, OBAMA, camera_modes=dict.fromkeys(OBAMA[:3], "A_SELFIE"))
            assert (
                build_version(persona, tagged.version, home.settings, instance).status
                is VersionStatus.PUBLISHED
            )
        blocked = build_version(
            "blk", home.upload("blk", OBAMA).version, home.settings, instance, config=STRICT
        )
        assert blocked.status is VersionStatus.BLOCKED
    with dagster_dev(dagster_home, home.settings.home, root / "dagster_dev.log") as dev:
        dev.wait_for_assets()
        yield World(home, dagster_home, dev, first.partition_key, blocked.partition_key)


def wait_for(what: str, check: Callable[[], T | bool | None], timeout_s: float) -> T | bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_killing_a_sensor_launched_run_worker_fails_the_version_within_one_sensor_interval(
    world: World,
) -> None:
    meta = world.home.meta
    upload = world.home.upload("kill", OBAMA)

    def leased() -> BuildLease | None:
        record = meta.get_version("kill", upload.version)
        lease = record.lease if record.status is VersionStatus.BUILDING else None
        return lease if lease is not None and lease.run_id else None

    lease = wait_for("the sensor-launched run to lease the version", leased, timeout_s=240)
    os.kill(lease.pid, signal.SIGKILL)  # the run worker, mid-build
    killed_at = time.monotonic()

    def failed() -> bool:
        return meta.get_version("kill", upload.version).status is VersionStatus.FAILED

    wait_for("the version to be failed", failed, timeout_s=STUCK_SENSOR_INTERVAL_S + 20)
    elapsed = time.monotonic() - killed_at
    [reason] = meta.get_version("kill", upload.version).reasons
    assert reason.startswith(DIED_PREFIX), reason
    assert f"run {lease.run_id}" in reason
    print(f"killed worker -> failed in {elapsed:.1f} s (sensor interval {STUCK_SENSOR_INTERVAL_S} s)")
    with dg.DagsterInstance.from_config(str(world.dagster_home)) as instance:
        run = instance.get_run_by_id(lease.run_id)
        assert run is not None
        assert run.tags["dagster/partition"] == f"kill.v{upload.version}"


def test_runs_list_tells_blocked_from_failed_and_rerun_page_is_not_failed(world: World) -> None:
    with dg.DagsterInstance.from_config(str(world.dagster_home)) as instance:
        outcomes = {r.tags.get("dagster/partition"): r.tags.get(OUTCOME_TAG) for r in instance.get_runs()}
        blocked_run = next(r for r in instance.get_runs() if r.tags.get("dagster/partition") == world.blocked)
        first_error = next(
            e for e in instance.all_logs(blocked_run.run_id) if e.level >= 40 and e.user_message
        )  # logging.ERROR
    assert outcomes[world.blocked] == "blocked"
    assert outcomes["kill.v1"] == "failed"  # the killed worker's run
    assert outcomes[world.published] in {"published", "unchanged"}
    assert first_error.user_message.startswith(
        "BLOCKED blk v1: C_CUTAWAY: "
    )
    ARTIFACTS.mkdir(exist_ok=True)
    runs_png, asset_png = (
        ARTIFACTS / "dagster_runs_blocked_vs_failed.png",
        ARTIFACTS / "dagster_rerun_published.png",
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{world.dev.base_url}/runs", wait_until="load")
            page.get_by_role("button", name="Skip").click(timeout=30_000)  # first-visit dialog
            page.get_by_text(f"{OUTCOME_TAG}: blocked").first.wait_for(timeout=30_000)
            page.screenshot(path=str(runs_png), animations="disabled")
            page.goto(
                f"{world.dev.base_url}/assets/persona_pack?view=partitions&partition={world.published}",
                wait_until="load",
            )
            page.wait_for_timeout(8000)
            page.screenshot(path=str(asset_png), animations="disabled", full_page=True)
            body = page.inner_text("body")
            assert "Materialized" in body  # the re-run left the partition green, not failed
            assert f"v1 already published as {world.published_hash}" in body
        finally:
            browser.close()
    assert runs_png.stat().st_size > 20_000
    assert asset_png.stat().st_size > 20_000


def test_a_backfill_over_three_personas_rebuilds_each_newest_version(world: World) -> None:
    params = {
        "selector": {
            "partitionSetName": "rebuild_newest_version_partition_set",
            "repositorySelector": {
                "repositoryLocationName": "persona_pipeline",
                "repositoryName": "__repository__",
            },
        },
        "partitionNames": list(REBUILT),
    }
    resp = httpx.post(
        f"{world.dev.base_url}/graphql", json={"query": BACKFILL, "variables": {"params": params}}, timeout=30
    )
    answer = resp.json()["data"]["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    meta = world.home.meta

    def all_published() -> bool:
        return all(
            [v.status for v in meta.list_versions(p)] == [VersionStatus.PUBLISHED, VersionStatus.PUBLISHED]
            for p in REBUILT
        )

    wait_for("three rebuilt versions to publish", all_published, timeout_s=420)
    with dg.DagsterInstance.from_config(str(world.dagster_home)) as instance:
        rebuilds = instance.get_runs(dg.RunsFilter(job_name="rebuild_newest_version"))
        assert sorted(r.tags["dagster/partition"] for r in rebuilds) == sorted(REBUILT)
        assert all(r.is_success for r in rebuilds)
    for persona in REBUILT:  # same inputs, same thresholds: the same pack content, a new version
        v1, v2 = meta.list_versions(persona)
        # The same files and config; the rebuild also records its source and (no) thresholds.
        def same(inputs: dict[str, object]) -> dict[str, object]:
            return {k: v for k, v in inputs.items() if k != "rebuilt_from"}

        assert same(v2.inputs) == same(v1.inputs)
        assert v2.inputs["rebuilt_from"] == {"version": 1, "thresholds": None}
        assert meta.get_published(persona, 1).content_hash == v1.content_hash
