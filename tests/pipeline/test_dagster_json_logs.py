"""With PERSONA_LOG_JSON=1, `dagster dev` run as `make dagster` runs it then (``--log-format json``,
the SupersessionWarning filter) writes only JSON lines while the upload sensor builds a version:
the webserver, the daemon, the code server and the run worker, whose run messages carry the run
id, the job, the step, the event type and the persona tags."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster_dev_server import dagster_dev
from pipeline_support import OBAMA, Home

from persona_core.store.base import VersionStatus
from persona_pipeline.instance import ensure_dagster_home

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]
DONE = {VersionStatus.PUBLISHED, VersionStatus.BLOCKED, VersionStatus.FAILED}


def test_every_dagster_dev_line_is_json_while_the_sensor_builds_a_version(tmp_path: Path) -> None:
    home = Home(tmp_path / "persona")
    dagster_home = ensure_dagster_home(home.settings)
    # Tagged like examples/photos, so the default gate publishes it.
    upload = home.upload("logs", OBAMA, camera_modes=dict.fromkeys(OBAMA[:3], "A_SELFIE"))
    log_path = tmp_path / "dagster_dev.log"
    env = {"PERSONA_LOG_JSON": "1", "PERSONA_LOG_LEVEL": "INFO"}
    started = time.monotonic()
    with dagster_dev(dagster_home, home.settings.home, log_path, args=("--log-format", "json"), env=env):
        deadline = time.monotonic() + 240
        while home.meta.get_version("logs", upload.version).status not in DONE:
            assert time.monotonic() < deadline, "the sensor-launched build did not finish in 240 s"
            time.sleep(1)
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            [run] = instance.get_runs(dg.RunsFilter(tags={"persona_id": "logs"}))
            while not run.is_finished:  # the version is done a moment before its run
                assert time.monotonic() < deadline, "the run did not finish"
                time.sleep(0.5)
                run = instance.get_run_by_id(run.run_id) or run
    print(f"dagster dev + sensor-launched build + stop: {time.monotonic() - started:.0f} s")
    assert home.meta.get_version("logs", upload.version).status is VersionStatus.PUBLISHED

    plain, docs = [], []
    for line in log_path.read_text().splitlines():
        try:
            docs.append(json.loads(line))
        except json.JSONDecodeError:
            plain.append(line)
    assert not plain, "lines that are not JSON:\n" + "\n".join(plain[:40])
    run_lines = [d for d in docs if d.get("run_id") == run.run_id]
    events = {d.get("dagster_event_type") for d in run_lines}
    assert {"RUN_START", "STEP_START", "ASSET_MATERIALIZATION", "RUN_SUCCESS"} <= events, events
    assert {d["job_name"] for d in run_lines} == {"build_persona_version"}
    assert {(d.get("persona_id"), d.get("persona_version")) for d in run_lines} == {
        ("logs", str(upload.version))
    }
    assert any(d.get("step_key") == "persona_pack" for d in run_lines)
    # The other processes: Dagster's own JSON lines (webserver, daemon) and the code location's.
    assert any(d.get("logger") == "dagster.daemon.SensorDaemon" for d in docs), "no daemon line"
