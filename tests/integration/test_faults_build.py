"""``make faults``, builds: seeded SIGKILLs of a real ``persona-core build`` (real models, the
project's Dagster instance) at uniform random points of its run, on SQLite + folder and on
PostgreSQL + S3. After every kill the next ``persona-core versions`` shows no version left
``pending`` or ``building`` (a dead build is failed with "build process died"), every published
pack still verifies, and a rebuild afterwards publishes. Adds its rows to the faults table."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import settings_env
from test_faults import BACKENDS, COLUMNS, TALLY, backend_settings, pack_is_whole, report

from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.versions import DIED_PREFIX

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.models, pytest.mark.dagster]
PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"
TRIALS_PER_BACKEND = 6
SEED = 23
CLI = [sys.executable, "-m", "persona_cli.main"]


def _cli(settings: Settings, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    return subprocess.Popen(
        [*CLI, "--json", *args],
        env={**env, **settings_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the kill takes the whole build, whatever it started
    )


def _build(settings: Settings, kill_after_s: float | None) -> tuple[bool, float]:
    """Run one build; SIGKILL it ``kill_after_s`` in (None: let it end). (killed, seconds)."""
    started = time.monotonic()
    proc = _cli(settings, "build", str(PHOTOS), "--persona", "crash")
    try:
        proc.wait(kill_after_s if kill_after_s is not None else 300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        return True, time.monotonic() - started
    finally:
        proc.communicate()
    assert kill_after_s is not None or proc.returncode == 0, proc.returncode
    return False, time.monotonic() - started


def _versions(settings: Settings) -> list[dict[str, object]]:
    proc = _cli(settings, "versions", "crash")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return list(json.loads(out))


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_sigkills_mid_build_leave_nothing_stuck(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = backend_settings(backend, request, tmp_path)
    rng = random.Random(f"{SEED}-{backend}")
    tally = dict.fromkeys(COLUMNS, 0)
    killed, span_s = _build(settings, None)  # one whole build: kills land uniformly inside it
    assert not killed
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    published: set[int] = set()
    for _ in range(TRIALS_PER_BACKEND):
        tally["trials"] += 1
        tally["faults"] += _build(settings, rng.uniform(0.5, 0.8 * span_s))[0]
        docs = _versions(settings)  # looking is what settles a dead build
        tally["stuck"] += sum(d["status"] in ("pending", "building") for d in docs)
        assert all(
            d["status"] != "failed" or str(d["reasons"][0]).startswith(DIED_PREFIX)
            for d in docs
        ), docs
        now = {int(str(d["version"])) for d in docs if d["status"] == "published"}
        tally["lost"] += len(published - now)  # a pack published before a kill is there after it
        published |= now
        tally["corrupt"] += sum(not pack_is_whole(meta, blobs, "crash", v) for v in now)
    proc = _cli(settings, "rebuild", "crash")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    tally["recoveries"] += json.loads(out)["status"] == "published"
    meta.close()
    TALLY[f"build {backend}"] = tally
    report()
    assert tally["faults"] >= TRIALS_PER_BACKEND // 2
    assert (tally["lost"], tally["corrupt"], tally["stuck"]) == (0, 0, 0), tally
