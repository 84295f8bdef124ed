"""The project's Dagster instance: one folder (``Settings.resolved_dagster_home``, by default
``<PERSONA_HOME>/dagster``) that `make dagster`, ``persona-core build`` and the upload sensor
share, so every version's runs, materializations and checks are in the same UI.

``python -m persona_pipeline.instance`` makes the folder (with its ``dagster.yaml`` when it
has none) and prints its path: `make dagster` uses it as ``DAGSTER_HOME``.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from persona_core.settings import Settings

# SQLite run/event/schedule storage in the folder itself; the daemon's queue runs two at a
# time (each run loads the models once, in-process) so a 2-core machine stays responsive.
# Run monitoring fails runs whose worker died; the lifecycle sensor fails their versions.
INSTANCE_YAML = """\
# The persona-core Dagster instance (written by persona_pipeline.instance; edit freely).
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
run_monitoring:
  enabled: true
  poll_interval_seconds: 15
telemetry:
  enabled: false
"""


def ensure_dagster_home(settings: Settings) -> Path:
    """The instance folder, made with a ``dagster.yaml`` when it has none."""
    home = settings.resolved_dagster_home
    with _creation_lock(home):
        _write_config(home)
    return home


def project_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under ``settings``' Dagster home, made on first use.

    Opening an instance creates its SQLite storages (runs, events, schedules) when they are
    missing; two processes doing that at once race (``table runs already exists``, two
    Alembic heads). So every open of the project's instance happens under one file lock, and
    the first one touches each storage while it holds it.
    """
    home = settings.resolved_dagster_home
    with _creation_lock(home):
        _write_config(home)
        instance = dg.DagsterInstance.from_config(str(home))
        # Each touch creates its storage's tables now, under the lock, if they are missing.
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("personas")
        instance.all_instigator_state()
    return instance


@contextmanager
def _creation_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".persona-instance.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_config(home: Path) -> None:
    config = home / "dagster.yaml"
    if not config.exists():
        tmp = home / f".dagster.yaml.{id(home)}.tmp"
        tmp.write_text(INSTANCE_YAML)
        tmp.replace(config)  # never a half-written file for a process that does not lock


if __name__ == "__main__":
    print(ensure_dagster_home(Settings()))
