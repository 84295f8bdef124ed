"""A blob store for the writers of one version (its upload, its build, its import): every blob
and named object written, read or looked for through it is first recorded as held by that
version, so erasure finds it and GC keeps it (see persona_core.store.ref_index for the handshake
with deleters). Reads count: a build that reuses what another version's build made (a step-cache
entry of the same photo, the crops it names) holds it from its first use, so erasing the other
version keeps it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from persona_core.refs import parse_ref, sha256_hex
from persona_core.store.base import BlobStore, StoredItem
from persona_core.store.ref_index import BLOB, OBJECT, Held, RefIndex


class TrackedBlobStore(BlobStore):
    def __init__(self, inner: BlobStore, index: RefIndex, persona_id: str, version: int) -> None:
        self.inner, self.index = inner, index
        self.persona_id, self.version = persona_id, version
        self._held: set[Held] = set()  # recorded through this store: each is recorded once

    def hold(self, *held: Held) -> None:
        """Record references before their bytes are written or used; wait out a deletion under way."""
        new = [h for h in held if h not in self._held]
        if not new:
            return
        deleting = self.index.record(self.persona_id, self.version, new)
        if deleting:
            self.index.wait_deleted(deleting)
        self._held.update(new)

    def put(self, data: bytes) -> str:
        self.hold(Held(BLOB, f"sha256:{sha256_hex(data)}"))
        return self.inner.put(data)

    def put_object(self, key: str, data: bytes) -> None:
        self.hold(Held(OBJECT, key))
        self.inner.put_object(key, data)

    def get(self, ref: str) -> bytes:
        self.hold(Held(BLOB, parse_ref(ref).blob))
        return self.inner.get(ref)

    def exists(self, ref: str) -> bool:
        self.hold(Held(BLOB, parse_ref(ref).blob))
        return self.inner.exists(ref)

    def get_object(self, key: str) -> bytes:
        self.hold(Held(OBJECT, key))
        return self.inner.get_object(key)

    def list_objects(self, prefix: str, start_after: str | None = None) -> list[str]:
        return self.inner.list_objects(prefix, start_after)

    def signed_url(self, ref: str, ttl_s: int) -> str:
        return self.inner.signed_url(ref, ttl_s)

    def ping(self) -> None:
        self.inner.ping()

    def delete(self, ref: str) -> bool:
        return self.inner.delete(ref)

    def delete_object(self, key: str) -> bool:
        return self.inner.delete_object(key)

    def delete_many(self, refs: Sequence[str]) -> int:
        return self.inner.delete_many(refs)

    def delete_objects(self, keys: Sequence[str]) -> int:
        return self.inner.delete_objects(keys)

    def iter_blobs(self) -> Iterator[StoredItem]:
        return self.inner.iter_blobs()

    def iter_objects(self, prefix: str = "") -> Iterator[StoredItem]:
        return self.inner.iter_objects(prefix)

    def close(self) -> None:
        """Nothing: the store it wraps belongs to whoever opened it."""
