"""The project's Dagster instance: one folder (``Settings.resolved_dagster_home``, by default
``<PERSONA_HOME>/dagster``) that `make dagster`, ``persona-core build`` and the upload sensor
share, so every version's runs, materializations and checks are in the same UI.

``python -m persona_pipeline.instance`` makes the folder (with its ``dagster.yaml`` when it
has none) and prints its path: `make dagster` uses it as ``DAGSTER_HOME``.
"""

from __future__ import annotations

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
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return home


def project_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under ``settings``' Dagster home (made on first use)."""
    return dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))


if __name__ == "__main__":
    print(ensure_dagster_home(Settings()))
