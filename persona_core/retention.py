"""Keep nothing longer than needed: the retention schedule and the blob garbage collector
(``persona-core gc``, the daily Dagster schedule).

One run:

1. finishes erasures a crash interrupted, and deletions a crashed deleter left marked;
2. erases every version that never published (failed, blocked, or pending that no build took)
   and is older than ``retention_days``: its inputs and build outputs go, a tombstone stays;
3. sweeps the blob store (mark and sweep): a blob or named object no version holds and that is
   older than ``grace_s`` is deleted. The grace period is longer than any upload, and the
   per-reference handshake in persona_core.store.ref_index makes an upload that reuses a blob
   being swept write it again, so neither an upload in flight nor a live version loses a blob.
   A manifest of a version that still exists stays, held or not.

Every run leaves an audit line with its counts (no names, no hashes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from persona_core.erasure import BATCH, Purger, delete_held, erase, resume_unfinished
from persona_core.errors import PersonaCoreError
from persona_core.ingest import MANIFEST_PREFIX
from persona_core.store.base import BlobStore, MetadataStore, StoredItem, VersionStatus
from persona_core.store.ref_index import BLOB, OBJECT, STALE_MARK_S, Held, RefKind

__all__ = ["GcReport", "collect_garbage"]

S = VersionStatus
NEVER_PUBLISHED = (S.FAILED, S.BLOCKED, S.PENDING)
SWEPT_PREFIXES = ("cache/", MANIFEST_PREFIX)
_MANIFEST_NAME = re.compile(r"^manifests/\d{20}-(?P<persona>.+)-v(?P<version>\d+)\.json$")


@dataclass
class GcReport:
    dry_run: bool
    expired_versions: list[str] = field(default_factory=list)  # "<persona> v<n>"
    resumed_erasures: int = 0
    blobs_deleted: int = 0
    objects_deleted: int = 0
    bytes_reclaimed: int = 0
    kept_young: int = 0  # unheld, but inside the grace period
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_garbage(
    meta: MetadataStore,
    blobs: BlobStore,
    *,
    retention_days: float,
    grace_s: float,
    dry_run: bool = False,
    actor: str = "gc",
    purgers: Sequence[Purger] = (),
    now: datetime | None = None,
) -> GcReport:
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    report = GcReport(dry_run=dry_run)
    if not dry_run:
        report.resumed_erasures = len(resume_unfinished(meta, blobs, purgers=purgers))
        _finish_stale_marks(meta, blobs)
    cutoff = now - timedelta(days=retention_days)
    for persona_id, version in _expired(meta, cutoff):
        report.expired_versions.append(f"{persona_id} v{version}")
        if not dry_run:
            erase(
                meta,
                blobs,
                persona_id,
                version,
                actor=actor,
                purgers=purgers,
                reason=f"retention: never published, older than {retention_days:g} days",
            )
    sweeper = _Sweeper(meta, blobs, report, young=now - timedelta(seconds=grace_s))
    held_blobs = meta.refs.all_held(BLOB)
    for item in blobs.iter_blobs():
        sweeper.sweep(BLOB, item, held_blobs)
    held_objects = meta.refs.all_held(OBJECT)
    for prefix in SWEPT_PREFIXES:
        for item in blobs.iter_objects(prefix):
            if item.name in held_objects or (
                prefix == MANIFEST_PREFIX and _manifest_still_needed(meta, item.name)
            ):
                continue
            sweeper.sweep(OBJECT, item, held_objects)
    sweeper.flush()
    report.seconds = round(time.perf_counter() - started, 3)
    if not dry_run:
        detail = report.as_dict()
        detail["expired_versions"] = len(report.expired_versions)
        meta.tombstones.audit("gc.run", actor, None, detail)
    return report


@dataclass
class _Sweeper:
    """Collects what nothing holds and deletes it in batches (one transaction and one store
    batch delete for each)."""

    meta: MetadataStore
    blobs: BlobStore
    report: GcReport
    young: datetime  # written after this: inside the grace period
    _pending: dict[Held, int] = field(default_factory=dict)  # candidate -> its size

    def sweep(self, kind: RefKind, item: StoredItem, held: set[str]) -> None:
        if item.name in held:
            return
        if item.modified_at > self.young:
            self.report.kept_young += 1
            return
        self._pending[Held(kind, item.name)] = item.size
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        # Marked only if still unheld now: something recorded since the mark keeps its blob.
        marked = list(pending) if self.report.dry_run else self.meta.refs.begin_delete(list(pending))
        if not self.report.dry_run:
            delete_held(self.blobs, marked)
            self.meta.refs.end_delete(marked)
        for held in marked:
            self.report.bytes_reclaimed += pending[held]
            if held.kind == BLOB:
                self.report.blobs_deleted += 1
            else:
                self.report.objects_deleted += 1


def _finish_stale_marks(meta: MetadataStore, blobs: BlobStore) -> None:
    """A deleter killed between its mark and its unmark: the blob is unheld (it checked), so
    finish the deletion; uploads waiting on the mark then write the blob again."""
    stale = list(meta.refs.stale_deletions(STALE_MARK_S))
    delete_held(blobs, stale)
    meta.refs.end_delete(stale)


def _expired(meta: MetadataStore, cutoff: datetime) -> list[tuple[str, int]]:
    expired = []
    after: str | None = None
    while True:
        page = meta.list_personas(limit=200, after=after)
        for persona in page:
            for record in meta.list_versions(persona.persona_id):
                if record.status in NEVER_PUBLISHED and record.created_at < cutoff:
                    expired.append((record.persona_id, record.version))
        if len(page) < 200:
            return expired
        after = page[-1].persona_id


def _manifest_still_needed(meta: MetadataStore, key: str) -> bool:
    """A manifest (written before versions recorded what they hold) of a version that still
    exists unerased: the upload sensor may yet need it."""
    match = _MANIFEST_NAME.fullmatch(key)
    if match is None:
        return False
    try:
        record = meta.get_version(match["persona"], int(match["version"]))
    except PersonaCoreError:  # an unknown or erased persona, a missing version
        return False
    return record.status not in (S.ERASING, S.ERASED)
