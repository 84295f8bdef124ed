"""Upload sensor: new manifests in the blob store (local folder or S3) -> a partition for
the version and one run request (run_key = the partition key). The cursor is the last
manifest key seen; keys start with a 20-digit ns timestamp, so they sort by time."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import dagster as dg

from persona_core.errors import BlobNotFoundError, InvalidManifestError, PersonaCoreError
from persona_core.ingest import MANIFEST_PREFIX, read_manifest
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.keys import partition_key

MAX_MANIFESTS_PER_TICK = 50


@dg.sensor(
    job=build_persona_version,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a build for every new upload manifest under manifests/ in the blob store.",
)
def upload_manifest_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    cursor = context.cursor or ""
    keys = [k for k in stores.blobs().list_objects(MANIFEST_PREFIX) if k > cursor]
    if not keys:
        return dg.SensorResult(skip_reason=f"no new upload manifests after {cursor or 'start'}")
    keys = keys[:MAX_MANIFESTS_PER_TICK]
    blobs = stores.blobs()
    requests, partitions, problems = [], [], []
    for key in keys:
        try:
            manifest = read_manifest(blobs, key)
            pk = partition_key(manifest.persona_id, manifest.version)
        except (InvalidManifestError, BlobNotFoundError, PersonaCoreError) as exc:
            # A broken manifest must not stop the uploads behind it: report it and move on.
            problems.append(f"{key}: {exc}")
            context.log.warning(f"skipped malformed manifest {key}: {exc}")
            continue
        if pk not in partitions:
            partitions.append(pk)
            requests.append(dg.RunRequest(run_key=pk, partition_key=pk,
                                          tags={"persona_id": manifest.persona_id,
                                                "persona_version": str(manifest.version),
                                                "manifest": key}))
    if not requests:
        reason = "skipped malformed manifest(s): " + "; ".join(problems)
        return dg.SensorResult(cursor=keys[-1], skip_reason=reason)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[persona_versions.build_add_request(partitions)],
        cursor=keys[-1],
    )
