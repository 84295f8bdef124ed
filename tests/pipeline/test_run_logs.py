"""A run's messages go through persona-core's handler whatever launched it: a job run with no
``loggers:`` in its config (as the schedule, the sensor and the Launchpad send it) writes JSON
lines with PERSONA_LOG_JSON=1 carrying the run id, job, step and event type, and text lines
otherwise; secrets logged by a step are redacted; every job of the code location, the UI's asset
job included, has the run logger under Dagster's ``console`` key."""

# No `from __future__ import annotations` here: Dagster reads the op's annotations.

import contextlib
import json
from pathlib import Path

import dagster as dg
import pytest

from persona_pipeline.definitions import defs
from persona_pipeline.defs.run_logs import RUN_LOGGER, RUN_LOGS_CONFIG, run_logger

pytestmark = [pytest.mark.dagster]
DRY_RUN = {"ops": {"collect_garbage": {"config": {"dry_run": True}}}}  # no `loggers:`


@pytest.fixture
def persona_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path))
    return tmp_path


def _json_lines(text: str) -> list[dict]:
    docs = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            docs.append(json.loads(line))
    return docs


def test_a_run_launched_without_loggers_writes_json_run_lines(
    persona_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERSONA_LOG_JSON", "1")
    result = defs.resolve_job_def("gc_job").execute_in_process(run_config=DRY_RUN)
    assert result.success
    err = capsys.readouterr().err
    run_lines = [d for d in _json_lines(err) if d.get("run_id") == result.run_id]
    assert run_lines[0]["dagster_event_type"] == "RUN_START"
    assert run_lines[-1]["dagster_event_type"] == "RUN_SUCCESS"
    assert {d["job_name"] for d in run_lines} == {"gc_job"}
    assert {d["logger"] for d in run_lines} == {"persona_pipeline.run"}
    step = next(d for d in run_lines if d["dagster_event_type"] == "STEP_SUCCESS")
    assert step["step_key"] == "collect_garbage"
    assert step["message"].startswith('Finished execution of step "collect_garbage"')  # no prefix
    # No line of the run in Dagster's own text format.
    assert not [ln for ln in err.splitlines() if result.run_id in ln and not ln.startswith("{")]


def test_without_json_the_run_lines_are_text_with_the_run_fields(
    persona_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERSONA_LOG_JSON", raising=False)
    result = defs.resolve_job_def("gc_job").execute_in_process(run_config=DRY_RUN)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if f"run_id={result.run_id}" in ln]
    assert any("persona_pipeline.run: Finished execution of run" in ln for ln in lines), lines
    assert any("dagster_event_type=RUN_SUCCESS" in ln and "job_name=gc_job" in ln for ln in lines)
    assert not _json_lines("\n".join(lines))


def test_a_secret_a_step_logs_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERSONA_LOG_JSON", "1")

    @dg.op
    def leaky(context: dg.OpExecutionContext) -> None:
        context.log.info("calling the store with api_key=sk-live-0123456789abcdef")

    @dg.job(logger_defs={RUN_LOGGER: run_logger}, config=RUN_LOGS_CONFIG)
    def leaky_job() -> None:
        leaky()

    result = leaky_job.execute_in_process()
    err = capsys.readouterr().err
    assert "sk-live-0123456789abcdef" not in err
    [line] = [d for d in _json_lines(err) if d.get("step_key") == "leaky" and "api_key" in d["message"]]
    assert line["message"] == "calling the store with api_key=***"
    assert line["run_id"] == result.run_id


def test_every_job_has_the_run_logger() -> None:
    jobs = [defs.resolve_job_def(j.name) for j in defs.resolve_all_job_defs()]
    assert {"build_persona_version", "rebuild_newest_version", "gc_job", "__ASSET_JOB"} <= {
        j.name for j in jobs
    }
    for job in jobs:
        assert job.loggers == {RUN_LOGGER: run_logger}, job.name
