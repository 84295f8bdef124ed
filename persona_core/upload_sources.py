"""Where an uploaded file's bytes are while the upload gate looks at them: in memory (a gRPC
message, a script's bytes), in a spooled upload part (HTTP: on disk past a size), or in a
file on disk (the CLI's folder).

The gate reads a file's size and first bytes before anything else, and its whole content one
file at a time, so an upload is never held whole in memory. A file on disk that changes
between two reads is refused (``changed while it was read``): what is stored is what was
checked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from persona_core.errors import UploadError

__all__ = ["CHUNK_BYTES", "ByteSource", "FileSource", "PathSource", "StreamSource", "sha256_of"]

CHUNK_BYTES = 1024 * 1024


class FileSource(Protocol):
    """An uploaded file's bytes, read as often as needed."""

    @property
    def size(self) -> int: ...

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer for a shorter file)."""
        ...

    def read(self) -> bytes:
        """The whole content."""
        ...

    def chunks(self) -> Iterator[bytes]:
        """The content in pieces of at most :data:`CHUNK_BYTES`."""
        ...


class ByteSource:
    """Bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def head(self, n: int) -> bytes:
        return self._data[:n]

    def read(self) -> bytes:
        return self._data

    def chunks(self) -> Iterator[bytes]:
        view = memoryview(self._data)
        for start in range(0, len(view), CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])


class StreamSource:
    """A seekable file object the caller owns and closes (a spooled multipart part)."""

    def __init__(self, stream: BinaryIO, size: int | None = None) -> None:
        self._stream = stream
        if size is None:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def head(self, n: int) -> bytes:
        self._stream.seek(0)
        return self._stream.read(n)

    def read(self) -> bytes:
        self._stream.seek(0)
        return self._stream.read()

    def chunks(self) -> Iterator[bytes]:
        self._stream.seek(0)
        while chunk := self._stream.read(CHUNK_BYTES):
            yield chunk


class PathSource:
    """A file on disk, sized from ``stat`` when it is found; refused if it changes later."""

    def __init__(self, path: Path, label: str = "") -> None:
        self.path = path
        self._label = label or path.name
        self._size = path.stat().st_size

    @property
    def size(self) -> int:
        return self._size

    def head(self, n: int) -> bytes:
        with self.path.open("rb") as fh:
            return fh.read(n)

    def read(self) -> bytes:
        with self.path.open("rb") as fh:
            data = fh.read(self._size + 1)
        if len(data) != self._size:
            raise self._changed()
        return data

    def chunks(self) -> Iterator[bytes]:
        seen = 0
        with self.path.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                seen += len(chunk)
                yield chunk
        if seen != self._size:
            raise self._changed()

    def _changed(self) -> UploadError:
        return UploadError(f"{self._label} changed while it was read; upload it again when it is written")


def sha256_of(source: FileSource) -> str:
    """Lowercase hex sha256 of a source's content, read in chunks."""
    digest = hashlib.sha256()
    for chunk in source.chunks():
        digest.update(chunk)
    return digest.hexdigest()
