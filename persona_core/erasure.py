"""Erase a person: a whole persona or one version, everything persona-core stores about it.

An erasure is a resumable job (:class:`~persona_core.store.tombstones.ErasureJob`):

1. start: in one transaction the job row is written and every version of the subject moves to
   ``erasing`` (a persona's metadata is cleared and its id retired). From that commit on every
   read answers 410 Gone, so a half-erased pack is never served.
2. purgers: stores outside persona-core's own (the Dagster instance: runs, event logs with
   their contact sheets, compute logs, partitions) are cleared by the callables passed in.
3. blobs and named objects: every one the subject's versions hold (uploads, video frames,
   crops, masks, embeddings, pack JSON, manifests, step-cache entries) is deleted unless a
   version outside the subject holds it too (the same photo uploaded for someone else).
4. finish: versions become ``erased`` tombstones with no content, their published-pack rows
   go, the job and an audit line record who, when and why; the database files are compacted.

Calling :func:`erase` again resumes an interrupted job, or reports a finished one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from persona_core.errors import InvalidInputError
from persona_core.ingest import MANIFEST_PREFIX
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.ref_index import BLOB, Held
from persona_core.store.tombstones import ErasureJob

__all__ = [
    "ARCHIVES_NOTE",
    "MAX_REASON_CHARS",
    "ErasureReport",
    "Purger",
    "erase",
    "readers_forget",
    "resume_unfinished",
]

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1000  # the column's width
BATCH = 200  # references per transaction and per store batch delete

Purger = Callable[[ErasureJob], None]
"""Clears what a store outside persona-core keeps about the job's versions (idempotent)."""


def readers_forget(wait_s: float) -> Purger:
    """A purger that returns ``wait_s`` (``Settings.erasure_wait_s``) after the job started: a
    registry worker answers from memory only within that long of a look at the erasure log,
    so none serves the subject from memory once erase returns."""

    def wait(job: ErasureJob) -> None:
        # started_at is this process's clock for a job it started; clamped for one resumed
        # from a process whose clock disagrees.
        left = wait_s - (datetime.now(UTC) - job.started_at).total_seconds()
        if left > 0:
            time.sleep(min(left, wait_s))

    return wait


ARCHIVES_NOTE = (
    "exported .personapack archives are outside the registry's reach: delete any copies "
    "made with `persona-core pack export` yourself"
)


@dataclass(frozen=True, slots=True)
class ErasureReport:
    persona_id: str
    version: int | None
    versions: tuple[int, ...]
    state: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    blobs_deleted: int = 0
    objects_deleted: int = 0
    kept_shared: int = 0  # held by another persona's or version's data too: kept for them
    already_erased: bool = False

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["versions"] = list(self.versions)
        doc["started_at"] = self.started_at.isoformat()
        doc["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        doc["note"] = ARCHIVES_NOTE
        return doc


def erase(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    version: int | None = None,
    *,
    actor: str,
    reason: str,
    purgers: Sequence[Purger] = (),
) -> ErasureReport:
    """Erase ``persona_id`` (or only its ``version``) and return what was removed. Resumes an
    interrupted erasure of the same subject; an erased subject is reported, not erased twice."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("an erasure needs a reason (--reason)")
    if len(reason.strip()) > MAX_REASON_CHARS:
        raise InvalidInputError(f"an erasure's reason is at most {MAX_REASON_CHARS} characters")
    job = meta.tombstones.start(persona_id, version, actor=actor, reason=reason)
    if job.done:
        return _report(job, {}, already_erased=True)
    # The reason is an admin's free text about a person: it stays in the erasure record only.
    log.warning("erasing %s (%d versions, job %d)", job.subject, len(job.versions), job.id)
    for purge in purgers:
        purge(job)
    counts = _delete_held(meta, blobs, job)
    counts["objects_deleted"] += _delete_unrecorded_manifests(blobs, job)
    job = meta.tombstones.finish(job, counts)
    meta.compact()
    log.warning("erased %s: %s", job.subject, counts)
    return _report(job, counts)


def _delete_held(meta: MetadataStore, blobs: BlobStore, job: ErasureJob) -> dict[str, int]:
    index = meta.refs
    # A whole persona: none of its versions count as holders; one version: only that one.
    mine: tuple[int, ...] = () if job.version is None else job.versions
    counts = {"blobs_deleted": 0, "objects_deleted": 0, "kept_shared": 0}
    held = index.held_by(job.persona_id, job.versions)
    for start in range(0, len(held), BATCH):
        batch = held[start : start + BATCH]
        marked = index.begin_delete(batch, except_persona=job.persona_id, except_versions=mine)
        kept = sorted(set(batch) - set(marked), key=lambda h: (h.kind, h.ref))
        index.forget(job.persona_id, mine, kept)
        # A crash from here on leaves the marks: the next erase (or GC) finishes the deletion.
        delete_held(blobs, marked)
        index.end_delete(marked, persona_id=job.persona_id, versions=mine)
        counts["blobs_deleted"] += sum(h.kind == BLOB for h in marked)
        counts["objects_deleted"] += sum(h.kind != BLOB for h in marked)
        counts["kept_shared"] += len(kept)
    return counts


def delete_held(blobs: BlobStore, held: Sequence[Held]) -> None:
    """Delete blobs and named objects from the store (batched where the store can)."""
    blobs.delete_many([h.ref for h in held if h.kind == BLOB])
    blobs.delete_objects([h.ref for h in held if h.kind != BLOB])


def _delete_unrecorded_manifests(blobs: BlobStore, job: ErasureJob) -> int:
    """Manifests written before versions recorded what they hold (named by persona and
    version, so found by name)."""
    names = {f"-{job.persona_id}-v{v}.json" for v in job.versions}
    deleted = 0
    for key in blobs.list_objects(MANIFEST_PREFIX):
        if any(key.endswith(name) for name in names) and blobs.delete_object(key):
            deleted += 1
    return deleted


def resume_unfinished(
    meta: MetadataStore, blobs: BlobStore, *, purgers: Sequence[Purger] = ()
) -> list[ErasureReport]:
    """Finish every erasure a crash left ``erasing`` (GC calls this first)."""
    return [
        erase(meta, blobs, job.persona_id, job.version, actor=job.actor, reason=job.reason, purgers=purgers)
        for job in meta.tombstones.unfinished()
    ]


def _report(job: ErasureJob, counts: dict[str, int], *, already_erased: bool = False) -> ErasureReport:
    return ErasureReport(
        persona_id=job.persona_id,
        version=job.version,
        versions=job.versions,
        state=job.state,
        actor=job.actor,
        started_at=job.started_at,
        finished_at=job.finished_at,
        already_erased=already_erased,
        blobs_deleted=counts.get("blobs_deleted", 0),
        objects_deleted=counts.get("objects_deleted", 0),
        kept_shared=counts.get("kept_shared", 0),
    )
