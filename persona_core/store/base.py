"""Store interfaces. Implementations: ``local.LocalBlobStore`` / ``s3.S3BlobStore`` and
``metadata.SqlMetadataStore`` (SQLite or PostgreSQL). Pick them with ``persona_core.settings``."""

from __future__ import annotations

import os
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from persona_core.errors import InvalidNameError

if TYPE_CHECKING:
    from persona_core.store.aliases import AliasStore
    from persona_core.store.ref_index import RefIndex
    from persona_core.store.tombstones import Tombstones

# Object keys outside the content-addressed area (uploads, manifests) are built only
# from validated segments: no "..", no absolute paths, no control characters.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_segment(name: str) -> str:
    """``name`` if it is one safe path segment, else InvalidNameError."""
    if not isinstance(name, str) or not _SEGMENT_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"unsafe name {name!r}: use letters, digits, '.', '_', '-' (max 128)")
    return name


def safe_key(*segments: str) -> str:
    """An object key joined from validated segments."""
    return "/".join(safe_segment(s) for s in segments)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A blob ref (``sha256:<hex>``) or an object key, and when it was last written."""

    name: str
    modified_at: datetime
    size: int


class BlobStore(ABC):
    """Content-addressed blobs (``sha256:<hex>`` refs) plus a few named objects."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store bytes, return their ref. Idempotent; the hash is checked after writing."""

    @abstractmethod
    def get(self, ref: str) -> bytes:
        """Bytes of a ref; raises BlobNotFoundError, or IntegrityError if they do not hash to it."""

    @abstractmethod
    def exists(self, ref: str) -> bool: ...

    @abstractmethod
    def put_object(self, key: str, data: bytes) -> None:
        """Write a named object (upload, manifest) atomically."""

    @abstractmethod
    def get_object(self, key: str) -> bytes: ...

    @abstractmethod
    def list_objects(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys under a prefix, sorted; with ``start_after``, only keys greater than it
        (a cursor: the last key a caller has already seen)."""

    @abstractmethod
    def signed_url(self, ref: str, ttl_s: int) -> str:
        """An expiring URL for a blob (S3 presign, or an HMAC URL the registry serves)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError when the store cannot be reached."""

    @abstractmethod
    def delete(self, ref: str) -> bool:
        """Remove a blob; False when it was not there. Only erasure and GC call this, after
        the reference index said nothing holds it (persona_core.store.ref_index)."""

    @abstractmethod
    def delete_object(self, key: str) -> bool:
        """Remove a named object; False when it was not there."""

    def delete_many(self, refs: Sequence[str]) -> int:
        """Remove many blobs (a store with a batch delete does it in few calls); how many."""
        return sum(self.delete(ref) for ref in refs)

    def delete_objects(self, keys: Sequence[str]) -> int:
        """Remove many named objects; how many."""
        return sum(self.delete_object(key) for key in keys)

    @abstractmethod
    def iter_blobs(self) -> Iterator[StoredItem]:
        """Every blob in the store with its age, in no particular order (GC's sweep)."""

    @abstractmethod
    def iter_objects(self, prefix: str = "") -> Iterator[StoredItem]:
        """Every named object under ``prefix`` with its age."""

    def close(self) -> None:  # noqa: B027 - optional hook: most stores hold nothing to release
        """Release what the store holds (connections, clients); idempotent. No-op by default."""


class VersionStatus(StrEnum):
    PENDING = "pending"
    BUILDING = "building"
    BLOCKED = "blocked"
    FAILED = "failed"
    PUBLISHED = "published"
    ERASING = "erasing"  # an erasure has started: reads answer 410 Gone from now on
    ERASED = "erased"  # a tombstone: what the version held is gone
    RETRACTED = "retracted"  # published, then withdrawn: readable by number, skipped by latest


@dataclass(frozen=True, slots=True)
class PersonaRecord:
    persona_id: str
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BuildLease:
    """Who builds a ``building`` version: the process (host, pid) and its Dagster run, if any.
    Stored in the version row's lease columns, beside the time of its last heartbeat."""

    host: str
    pid: int
    run_id: str = ""

    @classmethod
    def here(cls, run_id: str = "") -> BuildLease:
        return cls(socket.gethostname(), os.getpid(), run_id)

    def describe(self) -> str:
        return f"run {self.run_id or '-'}, pid {self.pid} on {self.host}"

    def same_process(self, other: BuildLease) -> bool:
        return (self.host, self.pid) == (other.host, other.pid)

    def process_gone(self) -> bool:
        """True only when the process is on this host and no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass(frozen=True, slots=True)
class VersionRecord:
    persona_id: str
    version: int
    status: VersionStatus
    reasons: list[str]
    inputs: dict[str, Any]
    checks: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None = None
    pack_ref: str | None = None
    content_hash: str | None = None
    lease: BuildLease | None = None  # set while ``building``
    heartbeat_at: datetime | None = None  # the lease's last heartbeat
    retracted_at: datetime | None = None
    retraction_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PublishedPack:
    persona_id: str
    version: int
    pack_ref: str
    content_hash: str
    blob_refs: list[str] = field(default_factory=list)
    retracted_at: datetime | None = None  # set when the version was retracted (served by number only)
    retraction_reason: str | None = None


class MetadataStore(ABC):
    """Personas, versions and published-pack records. One implementation over SQLAlchemy
    (SQLite file by default, PostgreSQL for real use), schema managed by Alembic."""

    @abstractmethod
    def create_persona(self, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        """Raises AlreadyExistsError if it exists, InvalidNameError for a bad id."""

    @abstractmethod
    def get_persona(self, persona_id: str) -> PersonaRecord:
        """Raises PersonaNotFoundError."""

    @abstractmethod
    def list_personas(self, limit: int = 50, after: str | None = None) -> list[PersonaRecord]:
        """Sorted by id; ``after`` is the last id of the previous page."""

    @abstractmethod
    def ensure_persona(self, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        """The persona, created with ``metadata`` when missing; safe when many callers race."""

    @abstractmethod
    def create_version(
        self, persona_id: str, inputs: dict[str, Any], *, lease: BuildLease | None = None
    ) -> VersionRecord:
        """Allocate the next version number (safe under concurrency), status ``pending``; with
        ``lease`` it is born ``building`` under that lease, so a build that dies at any point
        after this leaves a lease for mark_dead_builds to find."""

    @abstractmethod
    def get_version(self, persona_id: str, version: int) -> VersionRecord:
        """Raises PersonaNotFoundError / VersionNotFoundError."""

    @abstractmethod
    def list_versions(self, persona_id: str) -> list[VersionRecord]:
        """Ascending by version."""

    # Status changes: every one goes through persona_core.store.version_states, as a
    # compare-and-set in the database.
    @abstractmethod
    def transition(
        self,
        persona_id: str,
        version: int,
        to: VersionStatus,
        *,
        reasons: list[str] | None = None,
        checks: list[dict[str, Any]] | None = None,
        holder: BuildLease | None = None,
        run_id: str | None = None,
        expected: Collection[VersionStatus] | None = None,
    ) -> VersionRecord:
        """Move a version to ``to`` (not ``building``: see :meth:`claim`; not ``published``:
        see :meth:`publish`). ``holder`` / ``run_id``: a ``building`` version moves only when
        its lease is that one (that run's); ``expected`` narrows the states it may leave.
        Raises ImmutableVersionError for a published version, InvalidTransitionError when
        ``to`` is not allowed from where it stands."""

    @abstractmethod
    def claim(self, persona_id: str, version: int, lease: BuildLease) -> VersionRecord:
        """Mark the version ``building`` under ``lease`` (from pending, blocked or failed, or
        from ``building`` under a lease of the same process). Raises BuildInProgressError when
        another live build holds it."""

    @abstractmethod
    def heartbeat(self, persona_id: str, version: int, lease: BuildLease) -> bool:
        """Renew ``lease``'s heartbeat; False when the version is no longer held by it."""

    @abstractmethod
    def settle(self, seen: VersionRecord, cause: str) -> VersionRecord | None:
        """Fail a version found dead (a ``building`` one whose build is gone, a ``pending`` one
        no build ever started) with ``cause``, only if it is still exactly as ``seen`` (same
        status, lease and heartbeat). The failed record, or None when it moved on."""

    @abstractmethod
    def publish(self, pack: PublishedPack, checks: list[dict[str, Any]]) -> VersionRecord:
        """In one transaction: record the pack and flip the version to ``published``.
        Raises ImmutableVersionError if it is already published."""

    @abstractmethod
    def retract(self, persona_id: str, version: int, *, reason: str) -> VersionRecord:
        """Withdraw a published version: readable by number, skipped by latest. Refused while
        an alias points at it (AliasInUseError)."""

    @property
    @abstractmethod
    def aliases(self) -> AliasStore:
        """Named pointers per persona (persona_core.store.aliases)."""

    @property
    @abstractmethod
    def refs(self) -> RefIndex:
        """Which blobs and objects each version holds (persona_core.store.ref_index)."""

    @property
    @abstractmethod
    def tombstones(self) -> Tombstones:
        """Erasure jobs, persona tombstones and the audit log (persona_core.store.tombstones)."""

    def compact(self) -> None:  # noqa: B027 - optional hook
        """Leave no copy of deleted rows in the database's files (after an erasure)."""

    @abstractmethod
    def get_published(self, persona_id: str, version: int | None = None) -> PublishedPack:
        """The published pack record; ``version=None`` = newest published.
        Raises VersionNotFoundError when there is none."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError when the database cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook, overridden by stores with a pool
        """Release pooled connections; idempotent. No-op by default."""
