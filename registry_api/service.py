"""The registry's service layer: one object both the HTTP routes and the gRPC servicer call.

Every method takes the caller's :class:`Principal` first and checks it here, so the two
transports cannot disagree about who may do what.

Published packs are immutable, so their bytes and ETag are cached in memory per
(persona, version) after the first read; ``latest`` is resolved to a number that is
re-read from the database every ``latest_cache_ttl_s`` (1 s by default).

An alias (``live``) names a version wherever a number or ``latest`` does; its target is
cached like ``latest``'s, for the same ``latest_cache_ttl_s``, and served with the same
validator ``"<content_hash>.v<N>"``. A cached numbered pack is re-checked against the database
once per ``latest_cache_ttl_s`` at most (never per request), so a retraction another worker made
shows in its ``Persona-Retracted`` header within that time; one this worker made shows at once.

A numbered pack's ETag is its content hash. The content hash leaves out the version, so two
versions can share it; ``latest`` therefore answers with ``"<content_hash>.v<N>"``, which
changes whenever ``latest`` moves to another version, even one with the same content.

Erasure is the one way a served pack goes away: every cache here is dropped for a persona an
erasure names, in this worker and in every other one (registry_api.erasure_watch), and a
cache fill that raced the erasure is never stored (the generation check).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from cachetools import FIFOCache, TTLCache

from persona_core.erasure import ErasureReport, erase, readers_forget
from persona_core.errors import (
    AliasNotFoundError,
    BlobNotFoundError,
    ErasedError,
    InvalidInputError,
    MetadataTooLargeError,
    PackNotPublishedError,
    PersonaErasedError,
    SignatureError,
    VersionErasedError,
    VersionNotFoundError,
)
from persona_core.pack import PersonaPack, check_persona_id
from persona_core.pack_diff import PackDiff, centroid_cosine, diff_packs
from persona_core.refs import parse_ref
from persona_core.signing import MAX_TTL_S, verify_blob_signature
from persona_core.store.aliases import ALIAS_PATTERN, RESERVED, Alias, AliasMove
from persona_core.store.base import (
    BlobStore,
    MetadataStore,
    PersonaRecord,
    PublishedPack,
    VersionRecord,
    VersionStatus,
)
from persona_core.store.local import LocalBlobStore
from persona_core.store.ref_index import BLOB, Held
from persona_core.store.tombstones import ErasureJob
from persona_core.uploads import ValidatedUpload, submit_upload
from persona_core.versions import settle_dead_build
from registry_api.auth import AuthThrottle, KeyVerifier, Principal
from registry_api.config import ApiSettings
from registry_api.erasure_watch import ErasureWatch
from registry_api.errors import PersonaForbiddenError, RequestTooLargeError
from registry_api.events import EventsService
from registry_api.key_store import ApiKeyRecord, ApiKeyStore
from registry_api.upload_slots import UploadSlots

LATEST: Literal["latest"] = "latest"
# ASCII digits only: str.isdigit() also accepts "²" or "١", which int() then refuses or reads.
_MAX_VERSION_DIGITS = 9
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ALIAS = re.compile(ALIAS_PATTERN)
# Personas whose `latest` number is held; expired entries go at every insert, so this only
# bounds a burst of distinct personas within one latest_cache_ttl_s.
_LATEST_MAX = 100_000
# Blob refs known to exist, per pack the cache may hold.
_BLOBS_PER_PACK = 256
_GONE = (VersionStatus.ERASING, VersionStatus.ERASED)


@dataclass(frozen=True, slots=True)
class ServedPack:
    """A published pack as the GET-pack route serves it: the stored bytes and its validators."""

    persona_id: str
    version: int
    body: bytes
    content_hash: str
    etag: str
    blob_refs: frozenset[str]
    # The validator when this pack is served as `latest` (see the module doc).
    latest_etag: str = ""
    # ETag and X-Persona-Version, encoded once: the GET-pack route appends them as they are.
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    latest_raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    retracted_at: datetime | None = None
    retraction_reason: str | None = None
    # time.monotonic() after which the version's record is read again (a retraction elsewhere).
    fresh_until: float = 0.0

    def is_current(self, if_none_match: str | None, latest: bool) -> bool:
        """Whether a client's ``If-None-Match`` names this very representation.

        A numbered version also accepts its own ``latest`` validator (same bytes, same
        version); ``latest`` accepts only that validator, never a bare content hash.
        """
        if not if_none_match:
            return False
        if if_none_match.strip() == "*":
            return True
        accepted = (self.latest_etag,) if latest else (self.etag, self.latest_etag)
        return any(tag.strip().removeprefix("W/") in accepted for tag in if_none_match.split(","))


@dataclass(frozen=True, slots=True)
class SignedUrl:
    ref: str
    url: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class AssetBytes:
    ref: str
    data: bytes


# A version path segment as the code reads it: a number (is_version_number) or a name, which is
# `latest` or an alias (the OpenAPI document states it; a name that breaks it is a typed 400).
VERSION_SPEC_PATTERN: Final = f"^(?:[0-9]{{1,{_MAX_VERSION_DIGITS}}}|{ALIAS_PATTERN})$"


def is_version_number(spec: str) -> bool:
    """``spec`` is 1 to 9 ASCII digits (so ``int(spec)`` cannot fail or overflow a column)."""
    return spec.isascii() and spec.isdigit() and len(spec) <= _MAX_VERSION_DIGITS


def is_alias_spec(spec: str | int) -> bool:
    """``spec`` names an alias (``live``), not a number or ``latest``."""
    return isinstance(spec, str) and spec not in RESERVED and _ALIAS.fullmatch(spec) is not None


def retraction_header(retracted_at: datetime, reason: str | None) -> str:
    """``Persona-Retracted``'s value: the time, and the reason as a JSON string (ASCII only)."""
    return f"{retracted_at.isoformat()}; reason={json.dumps(reason or '')}"


def parse_version_spec(spec: str | int) -> int | Literal["latest"]:
    """``latest`` or a version number >= 1; anything else is a typed 400."""
    if spec == LATEST:
        return LATEST
    if isinstance(spec, int) and not isinstance(spec, bool):
        number = spec
    elif isinstance(spec, str) and is_version_number(spec):
        number = int(spec)
    else:
        raise InvalidInputError(f"version must be a positive integer or 'latest', got {spec!r}")
    if number < 1:
        raise InvalidInputError(f"version must be >= 1, got {number}")
    return number


class RegistryService:
    def __init__(self, settings: ApiSettings, metadata: MetadataStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.metadata = metadata
        self.blobs = blobs
        throttle = AuthThrottle(settings.auth_failure_limit, settings.auth_failure_window_s)
        self.keys = KeyVerifier(self._verify_key, settings.api_key_cache_ttl_s, throttle)
        # The event feed and webhook subscriptions (registry_api.events).
        self.events = EventsService(settings, metadata)
        # Uploads in flight in this worker, HTTP and gRPC together (registry_api.upload_slots).
        self.uploads = UploadSlots(settings.max_concurrent_uploads)
        # First in, first out. A FIFOCache read does not reorder (an LRU one would), so the
        # hot routes read these two without a lock; only writers take it.
        self._packs: FIFOCache[tuple[str, int], ServedPack] = FIFOCache(settings.pack_cache_max_entries)
        # Blob refs known to exist. Blobs are content-addressed and go only through erasure or
        # GC of what nothing holds, so a ref seen once stays valid until an erasure clears this
        # cache (_forget_erased): a repeat resolve needs no store round trip (an S3 HEAD).
        self._known_blobs: FIFOCache[str, bool] = FIFOCache(settings.pack_cache_max_entries * _BLOBS_PER_PACK)
        self._lock = threading.Lock()
        # A TTLCache read reorders its entries: every access holds this lock (a dict lookup).
        self._latest: TTLCache[str, int] = TTLCache(_LATEST_MAX, ttl=settings.latest_cache_ttl_s)
        self._latest_lock = threading.Lock()
        # (persona, alias) -> version, held like `latest` (same TTL, same lock).
        self._aliases: TTLCache[tuple[str, str], int] = TTLCache(_LATEST_MAX, ttl=settings.latest_cache_ttl_s)
        # Bumped (under both locks) whenever erasures drop cache entries: a fill that read the
        # stores before the drop compares it and stores nothing.
        self._generation = 0
        self._erasures = ErasureWatch(lambda: self.metadata.tombstones, self._forget_erased,
                                      poll_s=settings.erasure_poll_s, bound_s=settings.erasure_wait_s)

    def _verify_key(self, plaintext: str) -> ApiKeyRecord | None:
        return ApiKeyStore.of(self.metadata).verify_api_key(plaintext)

    # -- personas -------------------------------------------------------------------------

    def create_persona(self, who: Principal, persona_id: str, metadata: dict[str, Any]) -> PersonaRecord:
        who.require("admin", persona_id)
        check_persona_id(persona_id)
        size = len(json.dumps(metadata, separators=(",", ":"), default=str).encode())
        limit = self.settings.max_metadata_bytes
        if size > limit:
            raise MetadataTooLargeError(f"metadata is {size} bytes as JSON (> {limit}); keep it small")
        return self.metadata.create_persona(persona_id, metadata)

    def get_persona(self, who: Principal, persona_id: str) -> PersonaRecord:
        who.require("read", persona_id)
        return self.metadata.get_persona(persona_id)

    def list_personas(
        self, who: Principal, limit: int, after: str | None = None
    ) -> tuple[list[PersonaRecord], str | None]:
        """One page sorted by id, and the cursor of the next page (None on the last one)."""
        who.require("read")
        if who.persona_ids is None:
            page = self.metadata.list_personas(limit=limit + 1, after=after)
        else:
            # A restricted key lists only its own personas: walk its (small) id set directly.
            page = []
            for pid in sorted(who.persona_ids):
                if (after is None or pid > after) and len(page) <= limit:
                    try:
                        page.append(self.metadata.get_persona(pid))
                    except LookupError:
                        continue
        more = len(page) > limit
        page = page[:limit]
        return page, (page[-1].persona_id if more and page else None)

    # -- erasure --------------------------------------------------------------------------

    def erase(self, who: Principal, persona_id: str, version: str | int | None, reason: str) -> ErasureReport:
        """Erase a persona (``version=None``) or one numbered version; resumes an interrupted
        erasure, reports a finished one. Returns once no worker serves the subject from memory."""
        who.require("admin", persona_id)
        number = None
        if version is not None:
            parsed = parse_version_spec(version)
            if not isinstance(parsed, int):
                raise InvalidInputError("an erasure names a version number, never 'latest'")
            number = parsed
        # The Dagster instance is purged by the pipeline's own erasure sensor: the registry
        # does not carry the pipeline.
        return erase(self.metadata, self.blobs, persona_id, number, actor=f"key:{who.name}", reason=reason,
                     purgers=[readers_forget(self.settings.erasure_wait_s)])

    def erasures(
        self, who: Principal, since: datetime | None, limit: int
    ) -> tuple[list[ErasureJob], datetime | None]:
        """Finished erasures after ``since``, oldest first, of the personas this key may see,
        and the ``since`` of the next page (None on the last one)."""
        who.require("read")
        if since is not None:
            # A time without an offset is UTC; SQLite compares the stored UTC text, so convert.
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        jobs = self.metadata.tombstones.jobs(since, limit=limit)
        next_since = jobs[-1].finished_at if len(jobs) == limit else None
        return [job for job in jobs if who.may_see(job.persona_id)], next_since

    def _forget_erased(self, jobs: list[ErasureJob]) -> None:
        """Drop every cache entry of the jobs' personas, and every known blob ref (an erased
        pack's blobs are deleted; the others are looked up again once)."""
        personas = {job.persona_id for job in jobs}
        with self._lock, self._latest_lock:
            self._generation += 1
            for key in [k for k in self._packs if k[0] in personas]:
                self._packs.pop(key, None)
            for persona_id in personas:
                self._latest.pop(persona_id, None)
            for alias_key in [k for k in self._aliases if k[0] in personas]:
                self._aliases.pop(alias_key, None)
            self._known_blobs.clear()

    def _gone(self, persona_id: str, version: int) -> ErasedError:
        """The 410 for a version that is erasing or erased, with its erasure's times."""
        job = self.metadata.tombstones.job_for(persona_id, version)
        if job is None:  # pragma: no cover - a version moves to erasing only with its job
            return VersionErasedError(f"{persona_id} v{version} was erased", started_at=datetime.now(UTC))
        if job.version is None:
            return PersonaErasedError(f"persona {persona_id!r} was erased",
                                      started_at=job.started_at, erased_at=job.finished_at)
        return VersionErasedError(f"{persona_id} v{version} was erased",
                                  started_at=job.started_at, erased_at=job.finished_at)

    # -- versions -------------------------------------------------------------------------

    def check_can_upload(self, who: Principal, persona_id: str) -> None:
        """Auth and persona existence, before a single upload byte is read."""
        who.require("build", persona_id)
        self.metadata.get_persona(persona_id)

    def submit_version(self, who: Principal, persona_id: str, upload: ValidatedUpload) -> VersionRecord:
        """Store a validated upload as a new pending version; its manifest triggers the build."""
        self.check_can_upload(who, persona_id)
        return submit_upload(self.metadata, self.blobs, persona_id, upload)

    def list_versions(self, who: Principal, persona_id: str) -> list[VersionRecord]:
        who.require("read", persona_id)
        self.metadata.get_persona(persona_id)
        # An erased version stays in the list as a tombstone: its status and times, nothing else.
        return [
            _tombstone(r) if r.status in _GONE else self._settled(r)
            for r in self.metadata.list_versions(persona_id)
        ]

    def get_version(self, who: Principal, persona_id: str, spec: str | int) -> VersionRecord:
        who.require("read", persona_id)
        record = self.metadata.get_version(persona_id, self._resolve_number(persona_id, spec))
        if record.status in _GONE:
            self.metadata.get_persona(persona_id)  # a whole persona's erasure says so
            raise self._gone(persona_id, record.version)
        return self._settled(record)

    def _settled(self, record: VersionRecord) -> VersionRecord:
        """A version whose build process is gone (or that no build picked up in time) is failed
        the moment someone looks at it."""
        return settle_dead_build(self.metadata, record, ttl_s=self.settings.lease_ttl_s,
                                 pending_timeout_s=self.settings.pending_timeout_s)

    # -- packs ----------------------------------------------------------------------------

    def cached_pack(self, who: Principal, persona_id: str, spec: str) -> ServedPack | None:
        """The pack from memory only (no I/O), or None when a store read is needed (also when
        this worker has not looked for new erasures within ``erasure_wait_s``)."""
        who.require("read", persona_id)
        if not self._erasures.fresh():
            return None
        if is_version_number(spec):
            number: int | None = int(spec)
        elif spec == LATEST:
            number = self._latest_number(persona_id)
        else:
            number = self._alias_number(persona_id, spec)
        if number is None:
            return None
        pack = self._served((persona_id, number))
        if pack is None or pack.fresh_until < time.monotonic():
            return None
        return pack

    def get_pack(self, who: Principal, persona_id: str, spec: str | int) -> ServedPack:
        """The published pack's exact stored bytes; PackNotPublishedError until it is published."""
        who.require("read", persona_id)
        self._erasures.refresh()
        generation = self._generation
        number = self._resolve_number(persona_id, spec)
        key = (persona_id, number)
        held = self._served(key)
        if held is not None and held.fresh_until >= time.monotonic():
            return held
        try:
            record = self.metadata.get_published(persona_id, number)
        except VersionNotFoundError:
            status = self.metadata.get_version(persona_id, number).status  # raises if no such version
            raise PackNotPublishedError(
                f"{persona_id} v{number} is {status.value}; its pack exists once it is published"
            ) from None
        try:
            if held is not None and held.content_hash == record.content_hash:
                pack = self._with_record(held, record)  # published bytes never change: no blob read
            else:
                pack = self._load(record)
        except BlobNotFoundError:
            # Erased between the two reads: the record is gone now, and says how.
            self.metadata.get_published(persona_id, number)
            raise
        with self._lock:
            if self._generation == generation:
                self._packs[key] = pack
        return pack

    def diff(self, who: Principal, persona_id: str, from_spec: str | int, to_spec: str | int) -> PackDiff:
        """What changed from one published version to another; each side is a version spec
        as the GET-pack route takes it, with the same errors (unpublished, unknown, erased)."""
        a, b = (PersonaPack.model_validate_json(self.get_pack(who, persona_id, spec).body)
                for spec in (from_spec, to_spec))
        return diff_packs(a, b, centroid_cosine=centroid_cosine(self.blobs, a, b))

    def _served(self, key: tuple[str, int]) -> ServedPack | None:
        try:
            return self._packs[key]  # one lookup: `get` tests, then reads, and may race an eviction
        except KeyError:
            return None

    def _load(self, record: PublishedPack) -> ServedPack:
        body = self.blobs.get(record.pack_ref)  # the store verifies the bytes hash to the ref
        refs = {parse_ref(r).blob for r in record.blob_refs} | {parse_ref(record.pack_ref).blob}
        etag = f'"{record.content_hash}"'
        pack = ServedPack(
            persona_id=record.persona_id,
            version=record.version,
            body=body,
            content_hash=record.content_hash,
            etag=etag,
            blob_refs=frozenset(refs),
            latest_etag=f'"{record.content_hash}.v{record.version}"',
        )
        return self._with_record(pack, record)

    def _with_record(self, pack: ServedPack, record: PublishedPack) -> ServedPack:
        """The pack with its record's retraction, headers encoded once, fresh for one TTL."""
        heads = [(b"x-persona-version", str(record.version).encode())]
        if record.retracted_at is not None:
            value = retraction_header(record.retracted_at, record.retraction_reason)
            heads.append((b"persona-retracted", value.encode("ascii")))
        return replace(
            pack,
            retracted_at=record.retracted_at,
            retraction_reason=record.retraction_reason,
            raw_headers=((b"etag", pack.etag.encode()), *heads),
            latest_raw_headers=((b"etag", pack.latest_etag.encode()), *heads),
            fresh_until=time.monotonic() + self.settings.latest_cache_ttl_s,
        )

    def _resolve_number(self, persona_id: str, spec: str | int) -> int:
        if isinstance(spec, str) and is_alias_spec(spec):
            return self._resolve_alias(persona_id, spec)
        parsed = parse_version_spec(spec)
        if isinstance(parsed, int):
            return parsed
        latest = self._latest_number(persona_id)
        if latest is not None:
            return latest
        generation = self._generation
        try:
            number = self.metadata.get_published(persona_id, None).version
        except VersionNotFoundError:
            self.metadata.get_persona(persona_id)  # an unknown (or erased) persona says so itself
            raise PackNotPublishedError(f"{persona_id} has no published version yet") from None
        with self._latest_lock:
            if self._generation == generation:
                self._latest[persona_id] = number
        return number

    def _resolve_alias(self, persona_id: str, name: str) -> int:
        cached = self._alias_number(persona_id, name)
        if cached is not None:
            return cached
        generation = self._generation
        try:
            number = self.metadata.aliases.get(persona_id, name).version
        except AliasNotFoundError:
            raise InvalidInputError(
                f"version must be a number, 'latest' or an alias of {persona_id}; {name!r} is none of them"
            ) from None
        with self._latest_lock:
            if self._generation == generation:
                self._aliases[(persona_id, name)] = number
        return number

    def _alias_number(self, persona_id: str, name: str) -> int | None:
        with self._latest_lock:
            try:
                return self._aliases[(persona_id, name)]
            except KeyError:
                return None

    def _latest_number(self, persona_id: str) -> int | None:
        with self._latest_lock:
            try:
                return self._latest[persona_id]  # half the cost of TTLCache.get
            except KeyError:
                return None

    # -- aliases and retraction -----------------------------------------------------------

    def list_aliases(self, who: Principal, persona_id: str) -> list[Alias]:
        who.require("read", persona_id)
        return self.metadata.aliases.all(persona_id)

    def get_alias(self, who: Principal, persona_id: str, name: str) -> Alias:
        who.require("read", persona_id)
        return self.metadata.aliases.get(persona_id, name)

    def alias_history(self, who: Principal, persona_id: str, name: str | None, limit: int) -> list[AliasMove]:
        """Moves, newest first (of one alias, or of all the persona's)."""
        who.require("read", persona_id)
        self.metadata.get_persona(persona_id)
        return self.metadata.aliases.history(persona_id, name, limit=limit)

    def move_alias(
        self, who: Principal, persona_id: str, name: str, version: str | int | None, *,
        expected: int | None, reason: str,
    ) -> AliasMove:
        """Point ``name`` at ``version`` (a number, ``latest`` or another alias, read fresh; None
        deletes it) if it still points at ``expected`` (scope ``promote``); AliasConflictError
        when someone moved it first. This worker answers with the new target at once."""
        who.require("promote", persona_id)
        number = None if version is None else self._fresh_number(persona_id, version)
        try:
            return self.metadata.aliases.move(persona_id, name, number, expected=expected,
                                              actor=who.actor, reason=reason)
        finally:
            self._forget_alias(persona_id, name)

    def rollback_alias(self, who: Principal, persona_id: str, name: str, reason: str) -> AliasMove:
        """Move ``name`` back to the previous target in its history (scope ``promote``)."""
        who.require("promote", persona_id)
        try:
            return self.metadata.aliases.rollback(persona_id, name, actor=who.actor, reason=reason)
        finally:
            self._forget_alias(persona_id, name)

    def retract(self, who: Principal, persona_id: str, version: str | int, reason: str) -> VersionRecord:
        """Withdraw a published version (scope ``promote``): ``latest`` skips it, its number still
        serves the pack with a ``Persona-Retracted`` header; refused (AliasInUseError naming the
        aliases) while an alias points at it."""
        who.require("promote", persona_id)
        number = parse_version_spec(version)
        if not isinstance(number, int):
            raise InvalidInputError("a retraction names a version number")
        record = self.metadata.retract(persona_id, number, reason=reason)
        with self._lock, self._latest_lock:
            self._latest.pop(persona_id, None)
            self._packs.pop((persona_id, number), None)
        return record

    def _fresh_number(self, persona_id: str, spec: str | int) -> int:
        """A version spec read from the database now (a move must not act on a cached target)."""
        if isinstance(spec, str) and is_alias_spec(spec):
            return self.metadata.aliases.get(persona_id, spec).version
        parsed = parse_version_spec(spec)
        if isinstance(parsed, int):
            return parsed
        try:
            return self.metadata.get_published(persona_id, None).version
        except VersionNotFoundError:
            self.metadata.get_persona(persona_id)
            raise PackNotPublishedError(f"{persona_id} has no published version yet") from None

    def _forget_alias(self, persona_id: str, name: str) -> None:
        with self._latest_lock:
            self._aliases.pop((persona_id, name), None)

    # -- assets ---------------------------------------------------------------------------

    def resolve_asset(self, who: Principal, ref: str, mode: str, ttl_s: int) -> SignedUrl | AssetBytes:
        """A signed, expiring URL for a blob, or its bytes (``mode='bytes'``)."""
        who.require("read")
        # Checked here, not by one store: the local store would say bad_signature (403), S3
        # invalid_input, and gRPC has no request schema to catch it first.
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidInputError(f"ttl_s must be in 1..{MAX_TTL_S}, got {ttl_s!r}")
        blob_ref = parse_ref(ref).blob
        self._erasures.refresh()
        cached = self.cached_resolve(who, ref, mode, ttl_s)
        if cached is not None:
            return cached
        generation = self._generation
        if who.persona_ids is not None and not self._ref_visible(who, blob_ref):
            raise PersonaForbiddenError("this API key may only resolve assets of its own personas' packs")
        self._must_not_be_erasing(blob_ref)
        if mode == "bytes":
            # Refuse from the size alone when the store can tell it cheaply, before reading.
            self._check_bytes_size(blob_ref, _stored_size(self.blobs, blob_ref))
            data = self.blobs.get(blob_ref)
            self._check_bytes_size(blob_ref, len(data))
            return AssetBytes(ref=ref, data=data)
        if mode != "url":
            raise InvalidInputError(f"mode must be 'url' or 'bytes', got {mode!r}")
        if not self.blobs.exists(blob_ref):
            raise BlobNotFoundError(f"blob {blob_ref} not found")
        with self._lock:
            if self._generation == generation:
                self._known_blobs[blob_ref] = True
        return self._signed(ref, blob_ref, ttl_s)

    def _must_not_be_erasing(self, blob_ref: str) -> None:
        """410 for a blob that only versions being erased (or erased) hold: its bytes are about
        to go. Once they are gone it is a plain 404: the tombstone keeps no hashes."""
        holders = self.metadata.refs.holders(Held(BLOB, blob_ref))
        gone = None
        for persona_id, version in holders:
            if self.metadata.get_version(persona_id, version).status not in _GONE:
                return  # a live version holds it: it stays
            gone = gone or (persona_id, version)
        if gone is not None:
            raise self._gone(*gone)

    def cached_resolve(self, who: Principal, ref: str, mode: str, ttl_s: int) -> SignedUrl | None:
        """A signed URL without any store I/O, or None when the full path is needed: only for
        ``mode=url``, an unrestricted key and a blob already seen (signing is local), while this
        worker's look for new erasures is fresh."""
        if mode != "url" or who.persona_ids is not None or not 1 <= ttl_s <= MAX_TTL_S:
            return None
        if not self._erasures.fresh():
            return None
        who.require("read")
        try:
            blob_ref = parse_ref(ref).blob
        except InvalidInputError:
            return None  # the full path gives the error
        if blob_ref not in self._known_blobs:
            return None
        return self._signed(ref, blob_ref, ttl_s)

    def _signed(self, ref: str, blob_ref: str, ttl_s: int) -> SignedUrl:
        url = self.blobs.signed_url(blob_ref, ttl_s)
        return SignedUrl(ref=ref, url=url, expires_at=int(time.time()) + ttl_s)

    def _check_bytes_size(self, blob_ref: str, size: int | None) -> None:
        limit = self.settings.resolve_bytes_max
        if size is not None and size > limit:
            raise RequestTooLargeError(f"{blob_ref} is {size} bytes (> {limit}); ask for a url")

    def _ref_visible(self, who: Principal, blob_ref: str) -> bool:
        for persona_id in sorted(who.persona_ids or ()):
            try:
                versions = self.metadata.list_versions(persona_id)
            except (LookupError, ErasedError):
                continue
            for v in versions:
                if v.status != VersionStatus.PUBLISHED:
                    continue
                if blob_ref in self.get_pack(who, persona_id, v.version).blob_refs:
                    return True
        return False

    def signed_blob(self, digest: str, expires: int, sig: str) -> bytes:
        """Bytes behind an HMAC URL made by ``signing.sign_blob_url``; SignatureError if bad or expired."""
        # Only hex reaches the HMAC comparison: compare_digest refuses non-ASCII str with a
        # TypeError, which would otherwise surface as a 500.
        if not (_HEX64.fullmatch(digest) and _HEX64.fullmatch(sig)):
            raise SignatureError("signature is malformed")
        verify_blob_signature(self.settings.signing_secret.get_secret_value().encode(), digest, expires, sig)
        return self.blobs.get(f"sha256:{digest}")

    # -- health ---------------------------------------------------------------------------

    def ready(self) -> None:
        """Raise StoreUnavailableError unless both stores answer."""
        self.metadata.ping()
        self.blobs.ping()


def _tombstone(record: VersionRecord) -> VersionRecord:
    """What a list shows of an erasing or erased version: no file names, hashes or checks."""
    return replace(record, inputs={}, checks=[], reasons=[], content_hash=None, pack_ref=None, lease=None)


def _stored_size(blobs: BlobStore, blob_ref: str) -> int | None:
    """The blob's size when the store can tell without reading it (the local folder), else None."""
    if isinstance(blobs, LocalBlobStore):
        try:
            return blobs.blob_path(blob_ref).stat().st_size
        except FileNotFoundError:
            return None  # get() raises the typed not-found error
    return None
