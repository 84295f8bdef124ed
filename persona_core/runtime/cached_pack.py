"""CachedPack: one verified pack as the runtime uses it, over the bytes of its cache file.

The bytes are this process's own copy (read into memory, never mapped): another process that
truncates or rewrites the file cannot change what a loaded pack reads, nor kill this one with
SIGBUS. Everything but the embedding matrices was checked when the bytes were decoded
(``_format.decode``); a matrix is hashed on first access. A matrix that does not match its
hash asks the cache that made the pack to fetch it again (``heal``), and is served from the
good copy; with nothing to heal from it raises.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from persona_core.errors import IntegrityError, InvalidInputError
from persona_core.pack import BehaviorPolicy, PersonaPack, RefreshPolicy, content_hash
from persona_core.refs import parse_ref
from persona_core.runtime import _format
from persona_core.runtime.index import SelectionIndex

_T = TypeVar("_T")
# Called with a pack whose cached bytes proved damaged; returns a good copy of the same pack
# (fetched again) or raises CacheDamagedError.
Healer = Callable[["CachedPack", str], "CachedPack"]


class CachedPack:
    """A verified pack as the runtime uses it: the selection index is ready; the full
    document and the embedding matrices are decoded (and matrices hashed) on first use.
    Immutable: attributes cannot be set, matrices are read-only arrays."""

    __slots__ = (
        "_buf",
        "_doc",
        "_heal",
        "_lazy",
        "_lock",
        "_matrix_table",
        "_verified",
        "index",
        "pack_ref",
        "path",
    )

    index: SelectionIndex
    pack_ref: str
    path: Path | None
    _buf: bytes
    _doc: memoryview
    _matrix_table: dict[str, list[int]]
    _verified: bool
    _heal: Healer | None
    _lazy: dict[str, Any]
    _lock: threading.Lock

    def __init__(
        self,
        buf: bytes,
        where: str,
        path: Path | None,
        matrices_verified: bool,
        heal: Healer | None = None,
    ) -> None:
        index_doc, doc_view = _format.decode(memoryview(buf), where)
        try:
            index = SelectionIndex(index_doc)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise IntegrityError(f"{where}: unreadable selection index ({exc})") from None
        setter = object.__setattr__
        setter(self, "_buf", buf)
        setter(self, "_doc", doc_view)
        setter(self, "_matrix_table", index_doc.get("matrices", {}))
        setter(self, "_verified", matrices_verified)
        setter(self, "_heal", heal)
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
    def fully_verified(self) -> bool:
        """True when every byte was hashed already (a pack fetched by this process)."""
        return self._verified

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
        Hashed against its ref on first access: a mismatch fetches the pack again through the
        cache that loaded it, or raises CacheDamagedError (an IntegrityError) when it cannot."""
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
        # The bytes are this process's private copy: what is hashed is what is used.
        if not self._verified:
            digest = "sha256:" + hashlib.sha256(memoryview(self._buf)[off : off + length]).hexdigest()
            if digest != blob:
                why = f"cached matrix {blob} of {self!r} does not match its hash"
                if self._heal is None:
                    raise IntegrityError(why)
                return self._heal(self, why).matrix(blob)
        arr = np.frombuffer(self._buf, dtype="<f4", count=rows * cols, offset=off + data_off)
        return arr.reshape(rows, cols)

    def _parse_pack(self) -> PersonaPack:
        doc = self.document()
        if content_hash(doc) != doc.get("content_hash"):
            raise IntegrityError(f"{self!r}: pack content does not match its content_hash")
        return PersonaPack.model_validate(doc)
