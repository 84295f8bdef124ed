"""The tags that make a run findable as a build of one persona version, whichever door started
it: ``persona_id`` and ``persona_version`` (erasure and the runs list search by them), next to
Dagster's own ``dagster/partition``; and the repository label Dagster gives the runs it launches
from the code location, which the job's Runs tab filters on.

A run started by the upload sensor or the CLI is given the persona tags when it is made; one
launched from the UI, a backfill or the GraphQL API gets them as its resources set up."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from persona_core.errors import InvalidInputError
from persona_pipeline.partition_keys import parse_partition_key

PARTITION_TAG = "dagster/partition"
PERSONA_TAG = "persona_id"
VERSION_TAG = "persona_version"
# The workspace's location name (workspace.yaml, deploy/dagster/workspace.yaml) and the name
# Dagster gives a Definitions object's repository: their label is what the UI filters a job's
# runs by (Dagster's hidden `.dagster/repository` tag).
LOCATION_NAME = "persona_pipeline"
REPOSITORY_NAME = "__repository__"
REPOSITORY_LABEL_TAG = ".dagster/repository"
REPOSITORY_LABEL = f"{REPOSITORY_NAME}@{LOCATION_NAME}"


def version_tags(persona_id: str, version: int) -> dict[str, str]:
    """The persona tags of a build of ``persona_id`` v``version``."""
    return {PERSONA_TAG: persona_id, VERSION_TAG: str(version)}


def run_version(run: dg.DagsterRun | None) -> tuple[str, int] | None:
    """(persona_id, version) when ``run`` builds a version (its partition is a version key,
    whichever job it runs: the build job or the UI's asset job); None otherwise (a sensor tick,
    a rebuild run over personas, an alias or gc run)."""
    key = run.tags.get(PARTITION_TAG) if run is not None else None
    if not key:
        return None
    try:
        return parse_partition_key(key)
    except InvalidInputError:
        return None  # a persona key (the rebuild job's partitions)


def runs_asset(run: dg.DagsterRun, asset: str) -> bool:
    """``run`` materializes ``asset``: it runs the whole job (no asset selection; an in-process
    run stores an empty one) or a selection that holds it."""
    return not run.asset_selection or dg.AssetKey(asset) in run.asset_selection


def tag_build_run(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> None:
    """Give a build run its persona tags when it lacks them (a run launched from the UI, a
    backfill or the GraphQL API carries only its partition)."""
    version = run_version(run)
    if run is None or version is None:
        return
    missing = _missing(run.tags, version_tags(*version))
    if missing:
        instance.add_run_tags(run.run_id, missing)


def _missing(tags: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in wanted.items() if tags.get(k) != v}
