"""PackCache: fetch a published pack once, verify it, keep it on local disk and in memory.

Integrity, by stage:

- *Fetch* (from a PackSource): the pack JSON is schema-validated and its ``content_hash``
  recomputed (``persona_core.pack.content_hash``); every embedding blob is checked against
  its sha256 ref. Anything off raises IntegrityError and nothing is cached.
- *Disk load* (a fresh process, or after eviction from memory): the cache file is read into
  this process's memory (never mapped: a file truncated in place by someone else cannot
  kill the process with SIGBUS), its selection index is checked against the sha256 in its
  header and the pack document against its pack_ref (its sha256), before anything is used.
  Embedding matrices are hashed on first access (``CachedPack.matrix``), so a process that
  never touches them never pays for it. The full pack JSON is parsed only when asked for
  (``CachedPack.pack``/``document``).
- *Memory*: a repeat ``load`` is one dict lookup returning the same immutable CachedPack.

Healing: a cache file that is truncated, emptied, altered or unreadable (found at load, or a
matrix found on first access) is fetched again from the source and the file replaced, with a
warning in the log. When the source is unreachable or absent the load raises
:class:`~persona_core.errors.CacheDamagedError` (an IntegrityError); a damaged pack is never
served.

Immutability: a published version never changes. A source answering a version already held
(in memory or on disk) with a different content hash is refused with
:class:`~persona_core.errors.PackConflictError` and a warning; the verified copy is kept and
still served by number.

An unwritable cache folder (permissions, a full or read-only disk) does not stop a fetched,
verified pack from being served from memory: the cache warns (:class:`CacheWriteWarning`,
and a log line) and the next process fetches it again.

The disk file is written to a temp name and renamed, so readers never see half a file.
Files are named by persona and version (packs are immutable); the directory should be
writable only by the service, as a local attacker who can rewrite a file can also rewrite
the hashes inside it.

Erasure: a pack can be erased at the registry (the person asked for it). A source answering
:class:`~persona_core.errors.ErasedError` (the registry's 410 Gone) makes the cache forget
the pack (every version, for a persona's erasure) from memory and disk before the error
reaches the caller. A pinned version the cache already holds is served without asking the
source, so fleets also poll the registry's erasure feed and call :meth:`PackCache.forget_erased`
(or :meth:`PackCache.purge`, or ``persona-core cache purge``).

Aliases: ``load(persona, alias="live")`` follows a named pointer data ops move (promote,
rollback). Like ``latest``, where it points is asked of the source at most once per
``latest_ttl_s`` (the pack itself is fetched only when the alias moved to a version not
held); :meth:`PackCache.refresh` makes the next load ask at once (call it from the registry's
event feed on ``alias.moved``). The source must be an :class:`AliasPackSource`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from persona_core.embeddings import matrix_from_bytes
from persona_core.errors import (
    CacheDamagedError,
    ErasedError,
    IntegrityError,
    InvalidInputError,
    PackConflictError,
    PackValidationError,
    PersonaErasedError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.fsio import atomic_write
from persona_core.pack import PERSONA_ID_PATTERN, PersonaPack, content_hash
from persona_core.refs import parse_ref
from persona_core.runtime import _format
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.index import index_document
from persona_core.store.base import BlobStore, MetadataStore

log = logging.getLogger(__name__)

_PERSONA_ID_RE = re.compile(PERSONA_ID_PATTERN)
_FILE_RE = re.compile(r"^v([1-9][0-9]{0,9})\.pcpk$")
SUFFIX = ".pcpk"
# A load that a purge of its persona overtakes starts over (its result is not kept); a purge
# is rare, so a load that loses this many times in a row is reported instead of looping.
_PURGE_RETRIES = 3


class CacheWriteWarning(RuntimeWarning):
    """A fetched, verified pack could not be written to the cache folder; it is served from
    memory, and the next process fetches it again."""


@runtime_checkable
class PackSource(Protocol):
    """Where packs come from. ``pack_document`` returns the pack's canonical JSON bytes
    (``version=None``: the newest published); ``blob`` the bytes of a ``sha256:`` ref."""

    def pack_document(self, persona_id: str, version: int | None) -> bytes: ...

    def blob(self, ref: str) -> bytes: ...


@runtime_checkable
class AliasPackSource(Protocol):
    """A PackSource that also resolves aliases: the JSON bytes of the pack ``alias`` points at."""

    def alias_document(self, persona_id: str, alias: str) -> bytes: ...


class StorePackSource:
    """A PackSource over the project's own stores (the published record's pack_ref)."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        self.meta = meta
        self.blobs = blobs

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        return self.blobs.get(self.meta.get_published(persona_id, version).pack_ref)

    def alias_document(self, persona_id: str, alias: str) -> bytes:
        return self.pack_document(persona_id, self.meta.aliases.get(persona_id, alias).version)

    def blob(self, ref: str) -> bytes:
        return self.blobs.get(ref)


class ErasureNotice(Protocol):
    """One erasure as the registry's erasure feed lists it: a whole persona (``version`` is
    None) or one version of it."""

    @property
    def persona_id(self) -> str: ...

    @property
    def version(self) -> int | None: ...


class PackCache:
    """Packs by (persona_id, version), from memory, then ``cache_dir``, then ``source``.

    ``source=None`` is an offline cache: only what is on disk. ``version=None`` means the
    newest published version; which version that is is remembered for ``latest_ttl_s``
    seconds, and when the source is unreachable the newest version on disk is used.
    At most ``max_packs`` packs stay in memory (oldest loaded is dropped first; it comes
    back from disk on its next load). A pack the source says was erased is forgotten
    (module docstring: Erasure).
    """

    def __init__(
        self,
        cache_dir: Path | str,
        source: PackSource | None = None,
        *,
        max_packs: int = 64,
        latest_ttl_s: float = 30.0,
    ) -> None:
        if max_packs < 1:
            raise InvalidInputError("max_packs must be >= 1")
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.max_packs = max_packs
        self.latest_ttl_s = latest_ttl_s
        self._mem: dict[tuple[str, int], CachedPack] = {}
        self._latest: dict[str, tuple[CachedPack, float]] = {}
        # (persona, alias) -> the pack it pointed at, and until when that answer is trusted.
        self._aliases: dict[tuple[str, str], tuple[CachedPack, float]] = {}
        # One lock per pack (and per persona's "latest") so a slow fetch of one pack never
        # blocks loads of another; ``_lock`` only guards the dicts, never I/O.
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, int | str | None], threading.Lock] = {}
        # Purges so far, per persona: a load keeps its pack only if none happened meanwhile.
        self._purges: dict[str, int] = {}

    def load(self, persona_id: str, version: int | None = None, *, alias: str | None = None) -> CachedPack:
        """The verified pack; raises VersionNotFoundError / PersonaNotFoundError when the
        source has no such published pack (or, offline, it is not on disk), PersonaErasedError
        / VersionErasedError when the source says it was erased (the cache has forgotten it by
        then), IntegrityError when any verified hash does not match. ``alias`` (not with
        ``version``) follows a named pointer such as ``live`` (module docstring: Aliases)."""
        if alias is not None:
            if version is not None:
                raise InvalidInputError("load a version or an alias, not both")
            held = self._aliases.get((persona_id, alias))
            if held is not None and held[1] > time.monotonic():
                return held[0]
            return self._load_alias(persona_id, alias)
        if version is None:
            entry = self._latest.get(persona_id)
            if entry is not None and entry[1] > time.monotonic():
                return entry[0]
            return self._load_latest(persona_id)
        pack = self._mem.get((persona_id, version))
        if pack is not None:
            return pack
        return self._load_version(persona_id, version)

    def refresh(self, persona_id: str, alias: str | None = None) -> None:
        """Ask the source at the next load where ``alias`` (None: ``latest``) points, instead of
        waiting out ``latest_ttl_s``: what an ``alias.moved`` or ``version.published`` event
        calls for. Held packs stay; only the pointer is forgotten."""
        with self._lock:
            if alias is None:
                self._latest.pop(persona_id, None)
            else:
                self._aliases.pop((persona_id, alias), None)

    def path_for(self, persona_id: str, version: int) -> Path:
        """Where the disk cache keeps one pack."""
        _check_key(persona_id, version)
        return self.cache_dir / persona_id / f"v{version}{SUFFIX}"

    def evict(self, persona_id: str, version: int, *, disk: bool = False) -> None:
        """Drop a pack from memory (and its file, with ``disk=True``)."""
        with self._lock:
            self._mem.pop((persona_id, version), None)
            self._latest.pop(persona_id, None)
            self._drop_aliases(persona_id)
            if disk:
                self.path_for(persona_id, version).unlink(missing_ok=True)

    def purge(self, persona_id: str, versions: Collection[int] | None = None) -> list[int]:
        """Forget a persona's packs, every version (``versions=None``) or only ``versions``:
        from memory and from the disk cache, with any stale temp file of its folder. A load of
        the persona under way starts over, so it keeps nothing purged. Returns the versions
        whose files were removed."""
        _check_key(persona_id, 1)
        for v in versions or ():
            _check_key(persona_id, v)
        removed = [v for v in self.cached_versions(persona_id) if versions is None or v in versions]
        # Files first, then memory: a load that read a file before it went sees the purge count
        # change below and starts over.
        for v in removed:
            self.path_for(persona_id, v).unlink(missing_ok=True)
        _remove_stale_temp_files(self.cache_dir / persona_id)
        with self._lock:
            self._purges[persona_id] = self._purges.get(persona_id, 0) + 1
            for key in list(self._mem):
                if key[0] == persona_id and (versions is None or key[1] in versions):
                    del self._mem[key]
            self._latest.pop(persona_id, None)
            self._drop_aliases(persona_id)
        return removed

    def _drop_aliases(self, persona_id: str) -> None:
        for key in [k for k in self._aliases if k[0] == persona_id]:
            del self._aliases[key]

    def forget_erased(self, erasures: Iterable[ErasureNotice]) -> int:
        """Purge what the registry's erasure feed lists (``RegistryClient.erasures``, the
        poll ``GET /v1/erasures?since=``): a whole persona or one version each. Returns how
        many cached pack files were removed."""
        removed = 0
        for erasure in erasures:
            which = None if erasure.version is None else (erasure.version,)
            removed += len(self.purge(erasure.persona_id, which))
        return removed

    def cached_versions(self, persona_id: str) -> list[int]:
        """Versions of a persona present in the disk cache, ascending."""
        _check_key(persona_id, 1)
        try:
            names = os.listdir(self.cache_dir / persona_id)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_FILE_RE.fullmatch, names) if m)

    def _key_lock(self, persona_id: str, version: int | str | None) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault((persona_id, version), threading.Lock())

    def _purge_count(self, persona_id: str) -> int:
        with self._lock:
            return self._purges.get(persona_id, 0)

    def _load_version(self, persona_id: str, version: int) -> CachedPack:
        path = self.path_for(persona_id, version)
        with self._key_lock(persona_id, version):
            for _ in range(_PURGE_RETRIES):
                purges = self._purge_count(persona_id)
                fetched = False
                pack = self._mem.get((persona_id, version))
                if pack is None:
                    pack, damage = self._from_disk(path, persona_id, version)
                    if pack is None:
                        pack, fetched = self._fetch_again(persona_id, version, damage), True
                if self._keep(pack, purges, fetched=fetched):
                    return pack
        raise _purged_while_loading(persona_id)

    def _load_latest(self, persona_id: str) -> CachedPack:
        _check_key(persona_id, 1)
        with self._key_lock(persona_id, None):
            for _ in range(_PURGE_RETRIES):
                purges = self._purge_count(persona_id)
                pack, fetched = self._resolve_latest(persona_id)
                if self._keep(pack, purges, fetched=fetched, latest=True):
                    return pack
        raise _purged_while_loading(persona_id)

    def _load_alias(self, persona_id: str, alias: str) -> CachedPack:
        _check_key(persona_id, 1)
        source = self.source
        if not isinstance(source, AliasPackSource):
            raise InvalidInputError("this cache's source cannot resolve aliases (no alias_document)")
        with self._key_lock(persona_id, f"@{alias}"):
            for _ in range(_PURGE_RETRIES):
                purges = self._purge_count(persona_id)
                try:
                    with self._forgetting_erased(persona_id, None):
                        data = source.alias_document(persona_id, alias)
                except StoreUnavailableError:
                    held = self._aliases.get((persona_id, alias))
                    if held is None:
                        raise
                    log.warning("pack source unavailable; serving %s %s's last target", persona_id, alias)
                    return held[0]
                pack, fetched = self._pack_from(source, persona_id, data)
                if self._keep(pack, purges, fetched=fetched):
                    with self._lock:
                        self._aliases[(persona_id, alias)] = (pack, time.monotonic() + self.latest_ttl_s)
                    return pack
        raise _purged_while_loading(persona_id)

    def _pack_from(self, source: PackSource, persona_id: str, data: bytes) -> tuple[CachedPack, bool]:
        """The pack whose document is ``data``: the one held when its bytes match (no blob
        fetches), else fetched; and whether it was fetched. A held version answered with
        another content hash is refused (module docstring: Immutability)."""
        version = _version_of(data)
        known = self._mem.get((persona_id, version))
        if known is None:
            known, _damage = self._from_disk(self.path_for(persona_id, version), persona_id, version)
        if known is None:
            return self._fetch(source, persona_id, version, data), True
        if known.pack_ref == "sha256:" + hashlib.sha256(data).hexdigest():
            return known, False
        offered = _verified_pack(data, persona_id, version)
        if offered.content_hash != known.content_hash:
            log.warning(
                "refused %s v%d from the source: content hash %s, but the verified copy held is %s "
                "(a published version never changes; keeping the held copy)",
                persona_id,
                version,
                offered.content_hash,
                known.content_hash,
            )
            raise PackConflictError(
                f"the source sent {persona_id} v{version} with content hash {offered.content_hash}, "
                f"but v{version} is held verified with {known.content_hash}; published packs are "
                "immutable, so the held copy is kept"
            )
        return known, False  # the same content with other volatile fields (build times)

    def _resolve_latest(self, persona_id: str) -> tuple[CachedPack, bool]:
        """The newest pack, and whether it was fetched from the source just now."""
        data: bytes | None = None
        source = self.source
        if source is not None:
            try:
                with self._forgetting_erased(persona_id, None):
                    data = source.pack_document(persona_id, None)
            except StoreUnavailableError:
                log.warning("pack source unavailable; serving the newest cached version of %s", persona_id)
        if source is None or data is None:
            versions = self.cached_versions(persona_id)
            if not versions:
                raise VersionNotFoundError(f"no cached version of {persona_id} and no reachable source")
            return self._load_version(persona_id, versions[-1]), False
        # The newest version may already be here: same bytes, no blob fetches.
        return self._pack_from(source, persona_id, data)

    def _fetch_again(self, persona_id: str, version: int, damage: IntegrityError | None) -> CachedPack:
        """Fetch a pack that is not on disk, or whose file is damaged (``damage``): a damaged
        file the source cannot replace is reported as CacheDamagedError."""
        if self.source is None:
            if damage is not None:
                raise CacheDamagedError(f"{damage}; there is no source to fetch it again") from None
            raise VersionNotFoundError(f"{persona_id} v{version} is not cached and there is no source")
        if damage is not None:
            log.warning(
                "cache file of %s v%d is damaged (%s); fetching it again",
                persona_id,
                version,
                damage,
            )
        try:
            return self._fetch(self.source, persona_id, version)
        except StoreUnavailableError as exc:
            if damage is None:
                raise
            raise CacheDamagedError(f"{damage}; the source is unreachable to fetch it again: {exc}") from exc

    def _heal(self, damaged: CachedPack, why: str) -> CachedPack:
        """A good copy of a pack whose cached bytes proved damaged after it was loaded (a matrix
        hashed on first access): fetched again, its file replaced, and every pointer to the
        damaged copy (memory, latest, aliases) moved to it."""
        persona_id, version = damaged.persona_id, damaged.version
        with self._key_lock(persona_id, version):
            held = self._mem.get((persona_id, version))
            if held is not None and held is not damaged and held.fully_verified:
                return held  # another caller healed it already
            purges = self._purge_count(persona_id)
            fresh = self._fetch_again(persona_id, version, IntegrityError(why))
            if fresh.content_hash != damaged.content_hash:
                raise PackConflictError(
                    f"re-fetched {persona_id} v{version} has content hash {fresh.content_hash}, "
                    f"the damaged copy said {damaged.content_hash}"
                )
            if not self._keep(fresh, purges, fetched=True):
                raise _purged_while_loading(persona_id)
            with self._lock:
                for pid, (pack, until) in list(self._latest.items()):
                    if pack is damaged:
                        self._latest[pid] = (fresh, until)
                for key, (pack, until) in list(self._aliases.items()):
                    if pack is damaged:
                        self._aliases[key] = (fresh, until)
        return fresh

    def _fetch(
        self, source: PackSource, persona_id: str, version: int, data: bytes | None = None
    ) -> CachedPack:
        with self._forgetting_erased(persona_id, version):
            if data is None:
                data = source.pack_document(persona_id, version)
            return self._install(source, persona_id, version, data)

    @contextmanager
    def _forgetting_erased(self, persona_id: str, version: int | None) -> Iterator[None]:
        """An erasure answer from the source purges what it names before it goes on up: the
        persona's every version, or that version (or, asked for the newest, every version:
        which one went is not said, and what is still live can be fetched again)."""
        try:
            yield
        except ErasedError as exc:
            only = None if isinstance(exc, PersonaErasedError) or version is None else (version,)
            removed = self.purge(persona_id, only)
            log.warning(
                "%s%s was erased at the registry; purged from the cache (%d files)",
                persona_id,
                "" if only is None else f" v{version}",
                len(removed),
            )
            raise

    def _keep(self, pack: CachedPack, purges: int, *, fetched: bool, latest: bool = False) -> bool:
        """Remember ``pack`` unless its persona was purged since the load began (``purges``);
        then a file this load wrote goes too, and the load starts over."""
        key = (pack.persona_id, pack.version)
        with self._lock:
            if self._purges.get(pack.persona_id, 0) == purges:
                if key not in self._mem and len(self._mem) >= self.max_packs:
                    oldest = next(iter(self._mem))
                    del self._mem[oldest]
                self._mem[key] = pack
                if latest:
                    self._latest[pack.persona_id] = (pack, time.monotonic() + self.latest_ttl_s)
                return True
        if fetched and pack.path is not None:
            pack.path.unlink(missing_ok=True)
        return False

    def _from_disk(
        self, path: Path, persona_id: str, version: int
    ) -> tuple[CachedPack | None, IntegrityError | None]:
        """The pack in its cache file, or None with what is wrong with the file (None: there is
        no file). The bytes are read, not mapped (module docstring: Disk load)."""
        try:
            with open(path, "rb", buffering=0) as fh:
                buf = fh.read()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, IntegrityError(f"{path}: unreadable cache file ({exc})")
        try:
            pack = CachedPack(buf, str(path), path, matrices_verified=False, heal=self._heal)
        except _format.StaleFormatError as exc:
            if self.source is not None:
                log.info("re-fetching %s v%s: %s", persona_id, version, exc)
            return None, IntegrityError(str(exc))
        except IntegrityError as exc:
            return None, exc
        if pack.persona_id != persona_id or pack.version != version:
            return None, IntegrityError(
                f"{path} holds {pack.persona_id} v{pack.version}, not {persona_id} v{version}"
            )
        return pack, None

    def _install(self, source: PackSource, persona_id: str, version: int | None, data: bytes) -> CachedPack:
        pack = _verified_pack(data, persona_id, version)
        matrices: dict[str, tuple[bytes, int, int, int]] = {}
        for ref in embedding_blob_refs(pack):
            blob = source.blob(ref)
            if "sha256:" + hashlib.sha256(blob).hexdigest() != ref:
                raise IntegrityError(f"blob {ref} from the source does not match its hash")
            try:
                arr = matrix_from_bytes(blob)
            except InvalidInputError as exc:
                raise IntegrityError(f"blob {ref} is not an embedding matrix: {exc}") from None
            if not arr.flags.c_contiguous:
                raise IntegrityError(f"blob {ref} is a Fortran-ordered matrix")
            matrices[ref] = (blob, len(blob) - arr.nbytes, arr.shape[0], arr.shape[1])
        index_doc = {**index_document(pack), "pack_ref": "sha256:" + hashlib.sha256(data).hexdigest()}
        file_bytes = _format.encode(index_doc, data, matrices)
        path: Path | None = self.path_for(persona_id, pack.version)
        try:
            atomic_write(self.path_for(persona_id, pack.version), file_bytes)
        except OSError as exc:
            _warn_not_written(persona_id, pack.version, self.cache_dir, exc)
            path = None
        return CachedPack(file_bytes, f"fetched {persona_id} v{pack.version}", path, matrices_verified=True)


def embedding_blob_refs(pack: PersonaPack) -> list[str]:
    """Every embedding matrix blob a pack points at (rows collapsed), sorted."""
    refs = [*pack.identity.face_embedding_refs, pack.identity.centroid_ref, *pack.style.style_embedding_refs]
    for anchors in pack.anchor_sets.values():
        for anchor in anchors:
            refs += (anchor.embedding_ref, anchor.style_embedding_ref)
    if pack.voice_profile is not None and pack.voice_profile.speaker_embedding_ref:
        refs.append(pack.voice_profile.speaker_embedding_ref)
    return sorted({parse_ref(r).blob for r in refs})


def _verified_pack(data: bytes, persona_id: str, version: int | None) -> PersonaPack:
    try:
        doc = json.loads(data)
    except ValueError:
        raise IntegrityError(f"pack document of {persona_id} is not JSON") from None
    try:
        pack = PersonaPack.model_validate(doc)
    except ValidationError as exc:
        raise PackValidationError(str(exc)) from None
    if pack.content_hash is None or content_hash(doc) != pack.content_hash:
        raise IntegrityError(f"pack {persona_id} v{pack.version} does not match its content_hash")
    if pack.persona_id != persona_id or (version is not None and pack.version != version):
        raise IntegrityError(
            f"asked for {persona_id} v{version}, the source sent {pack.persona_id} v{pack.version}"
        )
    return pack


def _version_of(data: bytes) -> int:
    try:
        version = json.loads(data)["version"]
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("pack document carries no version") from None
    if type(version) is not int or version < 1:
        raise IntegrityError(f"pack document has a bad version {version!r}")
    return version


def _warn_not_written(persona_id: str, version: int, cache_dir: Path, exc: OSError) -> None:
    message = (
        f"could not write {persona_id} v{version} to the pack cache at {cache_dir} ({exc}); "
        "serving the verified pack from memory, the next process fetches it again"
    )
    log.warning("%s", message)
    warnings.warn(message, CacheWriteWarning, stacklevel=4)


def _purged_while_loading(persona_id: str) -> StoreUnavailableError:
    return StoreUnavailableError(f"{persona_id} was purged while loading, {_PURGE_RETRIES} times in a row")


def _remove_stale_temp_files(folder: Path, older_than_s: float = 60.0) -> None:
    """Temp files a crashed write left (``.tmp-*``); a younger one is a write in flight, whose
    pack the purge count keeps from being used."""
    cutoff = time.time() - older_than_s
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        path = folder / name
        try:
            if name.startswith(".tmp-") and path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            continue


def _check_key(persona_id: Any, version: Any) -> None:
    if not isinstance(persona_id, str) or not _PERSONA_ID_RE.fullmatch(persona_id):
        raise InvalidInputError(f"bad persona id {persona_id!r}")
    if type(version) is not int or version < 1:
        raise InvalidInputError(f"version must be an int >= 1, got {version!r}")
