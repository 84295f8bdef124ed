"""Blob store on a local folder: the embedded default.

Writes go to a temp file in the same directory, are fsynced, then renamed into place, so a
reader never sees a half-written blob and a crash leaves at most a stray temp file.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from persona_core.errors import BlobNotFoundError, IntegrityError, InvalidInputError, StoreUnavailableError
from persona_core.fsio import atomic_write
from persona_core.refs import parse_ref, sha256_hex
from persona_core.signing import sign_blob_url
from persona_core.store.base import BlobStore, StoredItem, safe_segment


def _write(path: Path, data: bytes) -> None:
    """atomic_write, with a full disk reported as the store being unavailable (503, exit 1)."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreUnavailableError(f"blob folder is full: {exc.strerror}") from None
        raise


_SHA256_NAME = re.compile(r"[0-9a-f]{64}")


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _item(name: str, path: Path) -> StoredItem:
    stat = path.stat()
    return StoredItem(name, datetime.fromtimestamp(stat.st_mtime, UTC), stat.st_size)


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str, signing_secret: bytes, public_base_url: str) -> None:
        self.root = Path(root).resolve()
        self._blobs = self.root / "blobs"
        self._objects = self.root / "objects"
        for d in (self._blobs, self._objects):
            d.mkdir(parents=True, exist_ok=True)
        self._secret = signing_secret
        self._base_url = public_base_url

    def blob_path(self, ref: str) -> Path:
        digest = parse_ref(ref).digest
        return self._blobs / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._blobs / digest[:2] / digest
        ref = f"sha256:{digest}"
        for _ in range(3):
            if not path.exists():
                _write(path, data)
            try:
                stored = path.read_bytes()
            except FileNotFoundError:  # GC deleted an old unheld copy between the two: write it
                continue
            if sha256_hex(stored) != digest:
                raise IntegrityError(f"{ref} does not match its bytes after writing")
            return ref
        raise StoreUnavailableError(f"{ref} kept disappearing while it was written")

    def get(self, ref: str) -> bytes:
        parsed = parse_ref(ref)
        try:
            data = (self._blobs / parsed.digest[:2] / parsed.digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {parsed.blob} not found") from None
        if sha256_hex(data) != parsed.digest:
            raise IntegrityError(f"blob {parsed.blob} is corrupt: its bytes no longer match its hash")
        return data

    def exists(self, ref: str) -> bool:
        return self.blob_path(ref).is_file()

    def _object_path(self, key: str) -> Path:
        return self._objects.joinpath(*(safe_segment(s) for s in key.split("/")))

    def put_object(self, key: str, data: bytes) -> None:
        _write(self._object_path(key), data)

    def get_object(self, key: str) -> bytes:
        try:
            return self._object_path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"object {key!r} not found") from None

    def list_objects(self, prefix: str, start_after: str | None = None) -> list[str]:
        if ".." in prefix or prefix.startswith("/"):
            raise InvalidInputError(f"bad prefix {prefix!r}")
        # Walk only the prefix's folder: the step cache under cache/ holds far more files
        # than manifests/, and the upload sensor lists manifests every few seconds.
        folder, _, _name = prefix.rpartition("/")
        base = self._objects
        top = base.joinpath(*folder.split("/")) if folder else base
        keys = []
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(base).as_posix()
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        return sorted(keys)

    def signed_url(self, ref: str, ttl_s: int) -> str:
        return sign_blob_url(self._base_url, self._secret, ref, ttl_s)

    def delete(self, ref: str) -> bool:
        return _unlink(self.blob_path(ref))

    def delete_object(self, key: str) -> bool:
        return _unlink(self._object_path(key))

    def iter_blobs(self) -> Iterator[StoredItem]:
        for shard in sorted(self._blobs.iterdir()) if self._blobs.is_dir() else []:
            for path in shard.iterdir() if shard.is_dir() else []:
                if _SHA256_NAME.fullmatch(path.name):
                    yield _item(f"sha256:{path.name}", path)

    def iter_objects(self, prefix: str = "") -> Iterator[StoredItem]:
        for key in self.list_objects(prefix):
            path = self._object_path(key)
            if path.is_file():
                yield _item(key, path)

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailableError(f"blob folder {self.root} is not writable")
