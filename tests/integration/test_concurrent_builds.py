"""Four `persona-core build` processes started at the same instant on a fresh home: for four
new personas, and for one new persona. Every build publishes and prints its JSON, and the
project's Dagster instance stays healthy (one Alembic revision per storage, every run a
success). The first use of a home creates the Dagster instance and the persona under locks and
idempotent inserts, so no build loses a creation race.

One round of each in the default run; `make faults` repeats each ten times."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.models, pytest.mark.dagster]
PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"
BUILDS = 4
# Each child imports the CLI, then waits for the same wall-clock instant before it runs.
AT_ONCE = """
import sys, time
from persona_cli.main import main
start = float(sys.argv[1])
sys.argv = ["persona-core", *sys.argv[2:]]
time.sleep(max(0.0, start - time.time()))
main()
"""


def _rounds(config: pytest.Config) -> int:
    return 10 if "faults" in (config.getoption("markexpr") or "") else 1


def _build_at_once(home: Path, personas: list[str]) -> list[subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_"))}
    start = time.time() + 8  # time for every child to import the CLI first
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", AT_ONCE, str(start), "--home", str(home), "--json", "build", str(PHOTOS),
             "--persona", persona],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for persona in personas
    ]
    results = []
    for proc, persona in zip(procs, personas, strict=True):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess([persona], proc.returncode, out, err))
    return results


def _assert_instance_healthy(dagster_home: Path, runs: int) -> None:
    for db in dagster_home.rglob("*.db"):
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" in tables:
                heads = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                assert len(heads) == 1, f"{db.name}: alembic heads {heads}"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        statuses = [r.status for r in instance.get_runs()]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * runs


@pytest.mark.timeout(3600)  # ten rounds in make faults, a minute each on a loaded 2-core machine
@pytest.mark.parametrize("shape", ["four-new-personas", "one-new-persona"])
def test_concurrent_first_builds_on_a_fresh_home_all_publish(
    shape: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for round_ in range(_rounds(request.config)):
        home = tmp_path / f"home-{round_}"
        personas = [f"p{i}" for i in range(BUILDS)] if shape == "four-new-personas" else ["solo"] * BUILDS
        started = time.monotonic()
        results = _build_at_once(home, personas)
        for result in results:
            assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{result.stderr[-3000:]}"
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
            summary = json.loads(result.stdout)  # every run prints its one JSON document
            assert summary["status"] == "published", summary
        docs = [json.loads(r.stdout) for r in results]
        versions = sorted((d["persona_id"], d["version"]) for d in docs)
        expected = [(p, 1) for p in personas] if shape == "four-new-personas" else [
            ("solo", v) for v in range(1, BUILDS + 1)]
        assert versions == sorted(expected)
        _assert_instance_healthy(home / "dagster", runs=BUILDS)
        print(f"{shape} round {round_ + 1}: {BUILDS} builds published in {time.monotonic() - started:.0f} s")
