"""Upload sensor: new manifests in the blob store (local folder or S3) -> a partition for
the version and one run request (run_key = the partition key). The cursor is the last
manifest key seen; keys start with a 20-digit ns timestamp, so they sort by time."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import dagster as dg

from persona_core.errors import BlobNotFoundError, InvalidInputError, NotFoundError
from persona_core.ingest import MANIFEST_PREFIX, read_manifest
from persona_core.store.base import MetadataStore, VersionStatus
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
    keys = stores.blobs().list_objects(MANIFEST_PREFIX, start_after=cursor or None)
    if not keys:
        return dg.SensorResult(skip_reason=f"no new upload manifests after {cursor or 'start'}")
    keys = keys[:MAX_MANIFESTS_PER_TICK]
    blobs, meta = stores.blobs(), stores.meta()
    requests, partitions, problems, already = [], [], [], []
    for key in keys:
        try:
            manifest = read_manifest(blobs, key)
            pk = partition_key(manifest.persona_id, manifest.version)
        except (InvalidInputError, BlobNotFoundError) as exc:
            # Only a verdict on this manifest (InvalidManifestError and InvalidNameError are
            # InvalidInputErrors; BlobNotFoundError: deleted since listing) is skipped, so a
            # broken manifest does not stop the uploads behind it. A store outage
            # (StoreUnavailableError) propagates: the tick fails and the cursor stays put,
            # so the next healthy tick reads this manifest again.
            problems.append(f"{key}: {exc}")
            context.log.warning(f"skipped malformed manifest {key}: {exc}")
            continue
        status = _status(meta, manifest.persona_id, manifest.version)
        if status is not VersionStatus.PENDING:
            # Built already (in-process, by the CLI, or an earlier run): a second run would
            # only fail on the immutable version, so the UI would show a spurious failure.
            already.append(f"{pk} is {status.value if status else 'unknown to the database'}")
            continue
        if pk not in partitions:
            partitions.append(pk)
            requests.append(dg.RunRequest(run_key=pk, partition_key=pk,
                                          tags={"persona_id": manifest.persona_id,
                                                "persona_version": str(manifest.version),
                                                "manifest": key}))
    if not requests:
        reasons = []
        if problems:
            reasons.append("skipped malformed manifest(s): " + "; ".join(problems))
        if already:
            reasons.append("not pending any more: " + "; ".join(already))
        return dg.SensorResult(cursor=keys[-1], skip_reason=" | ".join(reasons))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[persona_versions.build_add_request(partitions)],
        cursor=keys[-1],
    )


def _status(meta: MetadataStore, persona_id: str, version: int) -> VersionStatus | None:
    # Only "not found" means unknown; an outage must fail the tick rather than skip the upload.
    try:
        return meta.get_version(persona_id, version).status
    except NotFoundError:
        return None
