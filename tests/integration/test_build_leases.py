"""Build leases: a version is never left `building` without a live build. A SIGKILLed build
process, a heartbeat that stopped on another host, or a Dagster run that is over all end in
`failed` with "build process died" the next time someone looks (mark_dead_builds: the
`versions` command, the stuck-builds sensor); a live build is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.settings import Settings
from persona_core.store.base import BuildLease, MetadataStore, VersionStatus
from persona_core.store.from_settings import open_metadata_store
from persona_core.versions import DIED_PREFIX, LeaseKeeper, mark_dead_builds

HOLDER = """
import sys, time
from persona_core.settings import Settings
from persona_core.store.from_settings import open_metadata_store
from persona_core.versions import LeaseKeeper
meta = open_metadata_store(Settings(home=sys.argv[1]))
LeaseKeeper(meta, "alice", 1, run_id="run-1", heartbeat_s=0.2).start()
print("leased", flush=True)
time.sleep(600)
"""


@pytest.fixture
def meta(tmp_path: Path) -> MetadataStore:
    store = open_metadata_store(Settings(home=tmp_path))
    store.create_persona("alice", {})
    store.create_version("alice", {"files": []})
    return store


def test_a_sigkilled_build_process_fails_its_version_with_the_cause(
    meta: MetadataStore, tmp_path: Path
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"leased"
        time.sleep(0.5)  # a few heartbeats
        assert mark_dead_builds(meta, ttl_s=30) == []  # alive: left alone
        assert meta.get_version("alice", 1).status is VersionStatus.BUILDING
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    [marked] = mark_dead_builds(meta, ttl_s=30)  # well inside the TTL: the pid is gone
    assert marked.status is VersionStatus.FAILED
    [reason] = marked.reasons
    assert reason.startswith(DIED_PREFIX)
    assert f"run run-1, pid {proc.pid}" in reason
    assert "the process is gone" in reason
    assert mark_dead_builds(meta, ttl_s=30) == []  # once


def test_a_stale_heartbeat_from_another_host_fails_the_version(meta: MetadataStore) -> None:
    elsewhere = BuildLease(host="builder-7", pid=4242, run_id="")
    meta.claim("alice", 1, elsewhere)
    assert mark_dead_builds(meta, ttl_s=30) == []  # fresh heartbeat: alive as far as we know
    time.sleep(0.05)
    [marked] = mark_dead_builds(meta, "alice", ttl_s=0.01)
    assert marked.reasons[0].startswith(f"{DIED_PREFIX} (run -, pid 4242 on builder-7: no heartbeat for")


def test_a_run_that_is_over_fails_its_version(meta: MetadataStore) -> None:
    lease = BuildLease(host="builder-7", pid=4242, run_id="abc")
    meta.claim("alice", 1, lease)
    runs = {"abc": "Dagster run abc failure"}
    [marked] = mark_dead_builds(meta, ttl_s=30, run_cause=runs.get)
    assert marked.reasons == [f"{DIED_PREFIX} (run abc, pid 4242 on builder-7: Dagster run abc failure)"]


def test_a_live_lease_keeps_beating_and_the_end_of_the_build_stops_it(meta: MetadataStore) -> None:
    keeper = LeaseKeeper(meta, "alice", 1, heartbeat_s=0.05)
    first = keeper.start()
    time.sleep(0.3)
    beat = meta.get_version("alice", 1)
    assert beat.heartbeat_at is not None
    assert first.heartbeat_at is not None
    assert beat.heartbeat_at > first.heartbeat_at
    assert mark_dead_builds(meta, ttl_s=0.2) == []
    # The build ends it (blocked): the heartbeat never turns it back into building.
    meta.transition("alice", 1, VersionStatus.BLOCKED, reasons=["too few anchors"], holder=keeper.lease)
    time.sleep(0.2)
    keeper.stop()
    assert meta.get_version("alice", 1).status is VersionStatus.BLOCKED


def test_versions_command_fails_a_dead_build_when_it_looks(meta: MetadataStore, tmp_path: Path) -> None:
    gone = BuildLease(host=BuildLease.here().host, pid=_dead_pid(), run_id="")
    meta.claim("alice", 1, gone)
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "--json", "versions", "alice"])
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["reasons"][0].startswith(DIED_PREFIX)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid



BORN_AND_KILLED = """
import os, signal, sys
from persona_core.ingest import submit_version
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.base import BuildLease
s = Settings(home=sys.argv[1])
submit_version(open_metadata_store(s), open_blob_store(s), "alice", [("a.wav", b"RIFF", "voice")],
               lease=BuildLease.here())
os.kill(os.getpid(), signal.SIGKILL)  # before any build step could claim it
"""


def test_a_build_killed_right_after_its_upload_is_failed_not_left_pending(
    meta: MetadataStore, tmp_path: Path
) -> None:
    """The CLI creates its version already under its lease: no moment is left in which a
    kill leaves a `pending` version that nothing will ever build."""
    proc = subprocess.run([sys.executable, "-c", BORN_AND_KILLED, str(tmp_path)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert meta.get_version("alice", 2).status is VersionStatus.BUILDING
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "--json", "versions", "alice"])
    assert [d["status"] for d in json.loads(result.stdout)] == ["pending", "failed"]
    assert json.loads(result.stdout)[1]["reasons"][0].startswith(DIED_PREFIX)
