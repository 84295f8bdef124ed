"""Faults in the deployed topology (tests/stack.py) mid-backfill: a run worker, the daemon and
the code server are each SIGKILLed while personas uploaded over HTTP are being built, and
restarted. Every version ends published or failed with a reason (a re-run through the queue
then publishes it), none is left building, no persona gets a second version, and the queue
drains. `make bench` (bench/bench_stack.py) repeats this with 3 kills of each kind."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import PostgresService, S3Service
from stack import (
    Stack,
    kill_a_run_worker,
    rerun,
    statuses,
    unfinished_runs,
    upload_persona,
    wait_drained,
    wait_ended,
)

from persona_core.client import RegistryClient
from persona_pipeline.partition_keys import partition_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.s3,
    pytest.mark.dagster,
    pytest.mark.models,
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.faults,
]
PERSONAS = 3


@pytest.fixture
def stack(tmp_path: Path, postgres_server: PostgresService, s3_server: S3Service) -> Iterator[Stack]:
    stack = Stack(tmp_path / "stack", postgres_server, s3_server)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(600)
def test_kills_of_a_run_worker_the_daemon_and_the_code_server_lose_no_version(stack: Stack) -> None:
    state = stack.state
    assert state is not None
    with RegistryClient(state.registry_url, state.admin_key) as client:
        versions = {f"fault-{i}": upload_persona(client, f"fault-{i}", i) for i in range(PERSONAS)}
    killed = kill_a_run_worker(stack)  # mid-build: its version holds the worker's lease
    stack.kill("daemon", signal.SIGKILL)
    time.sleep(2)
    stack.restart("daemon")
    stack.kill("code", signal.SIGKILL)
    stack.restart("code")

    records = wait_ended(stack, versions, timeout_s=360)
    wait_drained(stack, timeout_s=120)
    failed = {p: r for p, r in records.items() if r.status.value != "published"}
    assert killed in failed, f"the version whose worker was killed ended {records[killed].status.value}"
    for persona, record in failed.items():
        assert record.status.value == "failed", (persona, record.status.value, record.reasons)
        assert record.reasons, persona  # failed with a reason
        assert record.reasons[0], persona
        rerun(stack, partition_key(persona, versions[persona]))
    wait_drained(stack, timeout_s=240)  # the re-runs, queued by now, have run
    records = wait_ended(stack, versions, timeout_s=30)
    assert {p: r.status.value for p, r in records.items()} == dict.fromkeys(versions, "published")
    meta = stack.meta()
    try:
        for persona, version in versions.items():  # no duplicate version: one upload, one version
            assert [v.version for v in meta.list_versions(persona)] == [version]
    finally:
        meta.close()
    assert not unfinished_runs(stack)
    assert all(r.status.value == "published" for r in statuses(stack, versions).values())
