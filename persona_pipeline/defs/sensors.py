"""Upload sensor: new manifests in the blob store (local folder or S3) -> a partition for
the version and one run request (run_key = the partition key).

Manifest keys start with the 20-digit ns time the upload was submitted, so they sort by
time. A write can land after a later-stamped one (a slow S3 PUT, another registry replica),
so a "last key seen" cursor alone would skip it forever. The cursor is therefore
``{"after": <newest key handled>, "seen": [<keys handled within LOOKBACK_NS of it>]}`` and
every tick lists from ``after`` minus the lookback, skipping what it has seen."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import json

import dagster as dg

from persona_core.errors import BlobNotFoundError, InvalidInputError, NotFoundError
from persona_core.ingest import MANIFEST_PREFIX, read_manifest
from persona_core.store.base import MetadataStore, VersionStatus
from persona_pipeline.defs.jobs import build_persona_version
from persona_pipeline.defs.partitions import persona_versions, personas
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.partition_keys import parse_partition_key, partition_key
from persona_pipeline.run_tags import version_tags

MAX_MANIFESTS_PER_TICK = 50
LOOKBACK_NS = 10 * 60 * 1_000_000_000  # how late a manifest write may land and still be built


@dg.sensor(
    job=build_persona_version,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a build for every new upload manifest under manifests/ in the blob store.",
)
def upload_manifest_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    after, seen, legacy = _read_cursor(context.cursor)
    blobs, meta = stores.blobs(), stores.meta()
    # A plain-key cursor (older format) meant "everything up to here is handled".
    start = after if legacy else _lookback_start(after)
    listed = blobs.list_objects(MANIFEST_PREFIX, start_after=start or None)
    keys = [k for k in listed if k not in seen][:MAX_MANIFESTS_PER_TICK]
    if not keys:
        return dg.SensorResult(skip_reason=f"no new upload manifests after {after or 'start'}")
    cursor = _write_cursor(max(after, keys[-1]), seen | set(keys), set(listed))
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
                                          tags={**version_tags(manifest.persona_id, manifest.version),
                                                "manifest": key}))
    if not requests:
        reasons = []
        if problems:
            reasons.append("skipped malformed manifest(s): " + "; ".join(problems))
        if already:
            reasons.append("not pending any more: " + "; ".join(already))
        return dg.SensorResult(cursor=cursor, skip_reason=" | ".join(reasons))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            persona_versions.build_add_request(partitions),
            # One partition per persona for the rebuild job (a backfill over personas).
            personas.build_add_request(sorted({parse_partition_key(pk)[0] for pk in partitions})),
        ],
        cursor=cursor,
    )


def _status(meta: MetadataStore, persona_id: str, version: int) -> VersionStatus | None:
    # Only "not found" means unknown; an outage must fail the tick rather than skip the upload.
    try:
        return meta.get_version(persona_id, version).status
    except NotFoundError:
        return None


def _stamp(key: str) -> int:
    digits = key[len(MANIFEST_PREFIX) : len(MANIFEST_PREFIX) + 20]
    return int(digits) if digits.isdigit() and digits.isascii() else 0


def _lookback_start(after: str) -> str | None:
    if not after:
        return None
    # A bare stamp sorts before every key carrying that stamp ("-" follows the end).
    return f"{MANIFEST_PREFIX}{max(_stamp(after) - LOOKBACK_NS, 0):020d}"


def _read_cursor(raw: str | None) -> tuple[str, set[str], bool]:
    """(newest key handled, keys handled inside the lookback window, older-format cursor?)"""
    if not raw:
        return "", set(), False
    if not raw.startswith("{"):
        return raw, set(), True
    doc = json.loads(raw)
    return str(doc.get("after", "")), set(doc.get("seen", [])), False


def _write_cursor(after: str, seen: set[str], listed: set[str]) -> str:
    # Keep only keys still inside the next tick's listing window, so the cursor stays small.
    start = _lookback_start(after) or ""
    keep = sorted(k for k in seen if k in listed and k > start)
    return json.dumps({"after": after, "seen": keep}, separators=(",", ":"))
