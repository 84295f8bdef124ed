"""The deployed topology on one machine (tests/stack.py): personas uploaded over HTTP to the
registry are built by runs that the upload sensor queues and the daemon dequeues, two at a
time, on the code server; every version publishes and its pack is served. The Dagster instance
the processes run on is deploy/dagster/dagster.yaml, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from services import PostgresService, S3Service
from stack import INSTANCE_SOURCE, MAX_CONCURRENT_RUNS, Stack, upload_persona

from persona_core.client import RegistryClient
from persona_pipeline.partition_keys import partition_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.s3,
    pytest.mark.dagster,
    pytest.mark.models,
    pytest.mark.slow,
    pytest.mark.e2e,
]


@pytest.fixture
def stack(tmp_path: Path, postgres_server: PostgresService, s3_server: S3Service) -> Iterator[Stack]:
    stack = Stack(tmp_path / "stack", postgres_server, s3_server)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def wait_all_ended(client: RegistryClient, versions: dict[str, int], timeout_s: float) -> dict[str, object]:
    """persona -> its version record once every version is published, blocked or failed."""
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while True:
        records = {p: client.get_version(p, v) for p, v in versions.items()}
        if all(r.status in ("published", "blocked", "failed") for r in records.values()):
            return records  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError({p: r.status for p, r in records.items()})
        time.sleep(2)


@pytest.mark.timeout(420)
def test_uploads_over_http_publish_through_the_sensor_and_the_queue(stack: Stack) -> None:
    state = stack.state
    assert state is not None
    home = Path(state.env["DAGSTER_HOME"])
    assert (home / "dagster.yaml").read_bytes() == INSTANCE_SOURCE.read_bytes()
    with RegistryClient(state.registry_url, state.admin_key) as client:
        versions = {f"stack-{i}": upload_persona(client, f"stack-{i}", i) for i in range(2)}
        records = wait_all_ended(client, versions, timeout_s=300)
        assert {p: r.status for p, r in records.items()} == dict.fromkeys(versions, "published"), records
        for persona, version in versions.items():
            pack = client.get_pack(persona, version)
            assert pack.version == version
    with stack.instance() as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.get_run_queue_config().max_concurrent_runs == MAX_CONCURRENT_RUNS
        assert instance.run_monitoring_enabled
        runs = instance.get_runs()
        # One run per version, requested by the upload sensor, queued, then launched by the daemon.
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(
            partition_key(p, v) for p, v in versions.items()
        )
        for run in runs:
            assert run.tags.get("dagster/sensor_name") == "upload_manifest_sensor"
            assert run.status.value == "SUCCESS"
            queued = instance.get_records_for_run(run.run_id, of_type=_queued()).records
            assert queued, f"run {run.run_id} did not go through the queue"


def _queued() -> object:
    import dagster as dg  # noqa: PLC0415

    return dg.DagsterEventType.RUN_ENQUEUED
