"""PackCache: fetch a published pack once, verify it, keep it on local disk and in memory.

Integrity, by stage:

- *Fetch* (from a PackSource): the pack JSON is schema-validated and its ``content_hash``
  recomputed (``persona_core.pack.content_hash``); every embedding blob is checked against
  its sha256 ref. Anything off raises IntegrityError and nothing is cached.
- *Disk load* (a fresh process, or after eviction from memory): the cache file's selection
  index is checked against the sha256 in its header and the pack document against its
  pack_ref (its sha256), before anything is used. Embedding matrices are hashed on first
  access (``CachedPack.matrix``), so a process that never touches them never pays for it.
  The full pack JSON is parsed only when asked for (``CachedPack.pack``/``document``).
- *Memory*: a repeat ``load`` is one dict lookup returning the same immutable CachedPack.

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
import mmap
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import ValidationError

from persona_core.embeddings import matrix_from_bytes
from persona_core.errors import (
    ErasedError,
    IntegrityError,
    InvalidInputError,
    PackValidationError,
    PersonaErasedError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.fsio import atomic_write
from persona_core.pack import PERSONA_ID_PATTERN, BehaviorPolicy, PersonaPack, RefreshPolicy, content_hash
from persona_core.refs import parse_ref
from persona_core.runtime import _format
from persona_core.runtime.index import SelectionIndex, index_document
from persona_core.store.base import BlobStore, MetadataStore

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_PERSONA_ID_RE = re.compile(PERSONA_ID_PATTERN)
_FILE_RE = re.compile(r"^v([1-9][0-9]{0,9})\.pcpk$")
SUFFIX = ".pcpk"
# A load that a purge of its persona overtakes starts over (its result is not kept); a purge
# is rare, so a load that loses this many times in a row is reported instead of looping.
_PURGE_RETRIES = 3


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


class CachedPack:
    """A verified pack as the runtime uses it: the selection index is ready; the full
    document and the embedding matrices are decoded (and matrices hashed) on first use.
    Immutable: attributes cannot be set, matrices are read-only arrays."""

    __slots__ = ("_buf", "_doc", "_lazy", "_lock", "_matrix_table", "_verified", "index", "pack_ref", "path")

    index: SelectionIndex
    pack_ref: str
    path: Path | None
    _buf: Any
    _doc: memoryview
    _matrix_table: dict[str, list[int]]
    _verified: bool
    _lazy: dict[str, Any]
    _lock: threading.Lock

    def __init__(self, buf: Any, where: str, path: Path | None, matrices_verified: bool) -> None:
        view = memoryview(buf)
        index_doc, doc_view = _format.decode(view, where)
        try:
            index = SelectionIndex(index_doc)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise IntegrityError(f"{where}: unreadable selection index ({exc})") from None
        setter = object.__setattr__
        setter(self, "_buf", buf)  # keeps the mmap alive while views into it exist
        setter(self, "_doc", doc_view)
        setter(self, "_matrix_table", index_doc.get("matrices", {}))
        setter(self, "_verified", matrices_verified)
        setter(self, "_lazy", {})
        setter(self, "_lock", threading.Lock())
        setter(self, "index", index)
        setter(self, "pack_ref", index_doc["pack_ref"])
        setter(self, "path", path)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"CachedPack is immutable (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"CachedPack({self.persona_id!r}, v{self.version}, {self.content_hash})"

    @property
    def persona_id(self) -> str:
        return self.index.persona_id

    @property
    def version(self) -> int:
        return self.index.version

    @property
    def content_hash(self) -> str | None:
        return self.index.content_hash

    @property
    def document_bytes(self) -> bytes:
        """The pack's canonical JSON, exactly as published."""
        return bytes(self._doc)

    def document(self) -> dict[str, Any]:
        """The full pack JSON, freshly parsed (callers may mutate their copy)."""
        doc: dict[str, Any] = json.loads(bytes(self._doc))
        return doc

    @property
    def pack(self) -> PersonaPack:
        """The typed PersonaPack, parsed once; its content hash is re-checked on the way."""
        return self._once("pack", self._parse_pack)

    @property
    def refresh_policy(self) -> RefreshPolicy:
        return self._once("refresh_policy", self.index.refresh_policy)

    @property
    def behavior_policy(self) -> BehaviorPolicy:
        return self._once(
            "behavior_policy", lambda: BehaviorPolicy.model_validate(self.index.behavior_policy_doc)
        )

    @property
    def matrix_refs(self) -> list[str]:
        """Blob refs of every embedding matrix the pack carries."""
        return sorted(self._matrix_table)

    def matrix(self, ref: str) -> np.ndarray:
        """A read-only (rows, dim) float32 embedding matrix; ``ref`` may carry a ``#row``.
        Hashed against its ref on first access (IntegrityError if it does not match)."""
        blob = parse_ref(ref).blob
        arr: np.ndarray | None = self._lazy.get(blob)
        if arr is None:
            arr = self._once(blob, lambda: self._read_matrix(blob))
        return arr

    def embedding(self, ref: str) -> np.ndarray:
        """One embedding row (``sha256:<hex>#<row>``) as a read-only float32 vector."""
        parsed = parse_ref(ref)
        arr = self.matrix(parsed.blob)
        row = 0 if parsed.row is None else parsed.row
        if not 0 <= row < arr.shape[0]:
            raise InvalidInputError(f"row {row} out of range for {parsed.blob} ({arr.shape[0]} rows)")
        vector: np.ndarray = arr[row]
        return vector

    def _once(self, key: str, build: Callable[[], _T]) -> _T:
        value: _T | None = self._lazy.get(key)
        if value is None:
            with self._lock:
                value = self._lazy.get(key)
                if value is None:
                    value = build()
                    self._lazy[key] = value
        return value

    def _read_matrix(self, blob: str) -> np.ndarray:
        entry = self._matrix_table.get(blob)
        if entry is None:
            raise InvalidInputError(f"{blob} is not an embedding matrix of {self!r}")
        off, length, data_off, rows, cols = entry
        # Copy out of the mapping first and hash the copy, so the bytes used are exactly
        # the bytes verified even if the file changed underneath.
        raw = bytes(memoryview(self._buf)[off : off + length])
        if not self._verified and "sha256:" + hashlib.sha256(raw).hexdigest() != blob:
            raise IntegrityError(f"cached matrix {blob} of {self!r} does not match its hash")
        return np.frombuffer(raw, dtype="<f4", count=rows * cols, offset=data_off).reshape(rows, cols)

    def _parse_pack(self) -> PersonaPack:
        doc = self.document()
        if content_hash(doc) != doc.get("content_hash"):
            raise IntegrityError(f"{self!r}: pack content does not match its content_hash")
        return PersonaPack.model_validate(doc)


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
                pack = self._mem.get((persona_id, version)) or self._from_disk(path, persona_id, version)
                if pack is None:
                    if self.source is None:
                        raise VersionNotFoundError(
                            f"{persona_id} v{version} is not cached and there is no source"
                        )
                    pack, fetched = self._fetch(self.source, persona_id, version), True
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
        fetches), else fetched; and whether it was fetched."""
        version = _version_of(data)
        known = self._mem.get((persona_id, version)) or self._from_disk(
            self.path_for(persona_id, version), persona_id, version
        )
        if known is not None and known.pack_ref == "sha256:" + hashlib.sha256(data).hexdigest():
            return known, False
        return self._fetch(source, persona_id, version, data), True

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
                persona_id, "" if only is None else f" v{version}", len(removed),
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

    def _from_disk(self, path: Path, persona_id: str, version: int) -> CachedPack | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise IntegrityError(f"{path}: empty cache file") from None
        finally:
            os.close(fd)
        try:
            pack = CachedPack(buf, str(path), path, matrices_verified=False)
        except _format.StaleFormatError as exc:
            if self.source is None:
                raise IntegrityError(f"{exc}; no source to fetch it again") from None
            log.info("re-fetching %s v%s: %s", persona_id, version, exc)
            return None
        if pack.persona_id != persona_id or pack.version != version:
            raise IntegrityError(
                f"{path} holds {pack.persona_id} v{pack.version}, not {persona_id} v{version}"
            )
        return pack

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
        path = self.path_for(persona_id, pack.version)
        atomic_write(path, file_bytes)
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
