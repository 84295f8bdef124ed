"""Erasure sensor: an erasure started anywhere (the registry over HTTP or gRPC, which does not
import the pipeline, the CLI, the retention job) reaches the Dagster instance within one
interval. Each tick reads the erasure jobs (``persona_core.store.tombstones``) that finished since
its cursor, and those still running, and purges the instance of their versions
(:mod:`persona_pipeline.erasure`: runs, event logs, compute logs, partitions). Purging is
idempotent: a job the CLI already purged costs a few queries.

A running job is purged when first seen and again once it has finished, so a run that wrote
events for the versions in between goes too. Finish times come from the registry's clock and
commits can land out of order, so the cursor is ``{"after": <newest finish handled>, "seen":
[<ids finished within LOOKBACK_S of it>], "open": [<running ids purged>]}`` and each tick reads
from ``after`` minus the lookback."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import json
from datetime import datetime, timedelta

import dagster as dg

from persona_core.store.tombstones import ErasureJob
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.erasure import DagsterPurger

ERASURE_SENSOR_INTERVAL_S = 30
LOOKBACK_S = 10 * 60  # how late an erasure's end may be committed and still be seen
MAX_JOBS_PER_TICK = 50


@dg.sensor(
    minimum_interval_seconds=ERASURE_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Removes erased personas and versions from this Dagster instance: their runs, event "
                "logs (contact sheets, QC tables), compute logs, stored values and partitions.",
)
def erasure_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    after, seen, purged_open = _read_cursor(context.cursor)
    tombstones = stores.meta().tombstones
    since = after - timedelta(seconds=LOOKBACK_S) if after else None
    listed = tombstones.jobs(since=since)
    finished = [j for j in listed if j.id not in seen][:MAX_JOBS_PER_TICK]
    running = [j for j in tombstones.unfinished() if j.id not in purged_open]
    todo = finished + running
    if not todo:
        return dg.SensorResult(cursor=context.cursor, skip_reason="no new erasures")
    report = DagsterPurger(context.instance).purge(todo)
    ends = [j.finished_at for j in finished if j.finished_at is not None]
    newest = max([after, *ends]) if after else max(ends, default=None)
    cursor = _write_cursor(newest, seen | {j.id for j in finished}, listed,
                           (purged_open | {j.id for j in running}) - {j.id for j in finished})
    # Job ids and counts only: the ticks are kept, and need not name anyone.
    return dg.SensorResult(cursor=cursor, skip_reason=(
        f"purged erasure job(s) {', '.join(str(j.id) for j in todo)}: {report.runs_deleted} run(s), "
        f"{report.partitions_deleted} partition(s), {report.files_deleted} file(s)"))


def _read_cursor(raw: str | None) -> tuple[datetime | None, set[int], set[int]]:
    if not raw:
        return None, set(), set()
    doc = json.loads(raw)
    after = datetime.fromisoformat(doc["after"]) if doc.get("after") else None
    return after, set(doc.get("seen", [])), set(doc.get("open", []))


def _write_cursor(
    after: datetime | None, seen: set[int], listed: list[ErasureJob], purged_open: set[int]
) -> str:
    # Keep only ids the next tick's listing can return again, so the cursor stays small.
    start = after - timedelta(seconds=LOOKBACK_S) if after else None
    keep = sorted(j.id for j in listed
                  if j.id in seen and j.finished_at and (start is None or j.finished_at > start))
    doc = {"after": after.isoformat() if after else None, "seen": keep, "open": sorted(purged_open)}
    return json.dumps(doc, separators=(",", ":"))
