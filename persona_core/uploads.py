"""The one upload gate: HTTP, gRPC and the CLI hand every file to :func:`validate_upload`,
so the same bad file gets the same verdict through every door. What a file is comes from
its bytes, never from its name, suffix or declared type.

Everything here runs before anything is stored, so a rejected upload leaves the stores as
they were. Images must also decode (OpenCV), so a truncated JPEG is refused at the door
instead of failing a build later; their size is read from the header first (Pillow reads no
pixels), so an image claiming more than ``max_image_pixels`` is refused before any decode.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image
from pydantic import ValidationError

from persona_core.errors import (
    ContentTypeMismatchError,
    CorruptFileError,
    FileTooLargeError,
    ImageTooLargeError,
    InvalidManifestError,
    InvalidNameError,
    NoFilesError,
    RequestTooLargeError,
    TooManyFilesError,
    UnsupportedMediaTypeError,
    UploadError,
)
from persona_core.ingest import UploadOptions, store_version
from persona_core.refs import sha256_hex
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, BuildLease, MetadataStore, VersionRecord, safe_segment

Kind = Literal["image", "video", "voice"]

# Declared types that say nothing: the sniffed type wins without comparison.
_UNINFORMATIVE = {"", "application/octet-stream", "binary/octet-stream"}
# Other spellings clients use for the same formats.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "application/ogg": "audio/ogg",
    "video/avi": "video/x-msvideo",
    "video/msvideo": "video/x-msvideo",
    "video/x-matroska": "video/webm",
    "audio/webm": "video/webm",
}
# Multipart field names a client may use; a named kind must match the bytes.
FIELD_KINDS: dict[str, Kind | None] = {"files": None, "images": "image", "videos": "video", "voices": "voice"}
MANIFEST_FIELD = "manifest"


@dataclass(frozen=True, slots=True)
class RawFile:
    name: str
    data: bytes
    declared_type: str = ""
    field: str = "files"


@dataclass(frozen=True, slots=True)
class ValidatedFile:
    name: str
    data: bytes
    kind: Kind
    media_type: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ValidatedUpload:
    """Files and options that passed the gate; stored as they are by :func:`submit_upload`."""

    files: list[ValidatedFile]
    options: UploadOptions


# (offset, magic, kind, media type), checked in order; RIFF and ftyp containers need a second look.
_MAGIC: tuple[tuple[int, bytes, Kind, str], ...] = (
    (0, b"\xff\xd8\xff", "image", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "image/png"),
    (8, b"WEBP", "image", "image/webp"),
    (8, b"WAVE", "voice", "audio/wav"),
    (8, b"AVI ", "video", "video/x-msvideo"),
    (0, b"fLaC", "voice", "audio/flac"),
    (0, b"OggS", "voice", "audio/ogg"),
    (0, b"ID3", "voice", "audio/mpeg"),
    (8, b"M4A ", "voice", "audio/mp4"),
    (8, b"M4B ", "voice", "audio/mp4"),
    (8, b"qt  ", "video", "video/quicktime"),
    (0, b"\x1a\x45\xdf\xa3", "video", "video/webm"),
)
_CONTAINER = {
    b"WEBP": b"RIFF",
    b"WAVE": b"RIFF",
    b"AVI ": b"RIFF",
    b"M4A ": b"ftyp",
    b"M4B ": b"ftyp",
    b"qt  ": b"ftyp",
}


# Every media type sniff() can answer: what a served blob's Content-Type may be besides
# application/octet-stream (the registry's OpenAPI lists them).
SNIFFED_MEDIA_TYPES: tuple[str, ...] = tuple(sorted({m for *_, m in _MAGIC} | {"video/mp4", "audio/mpeg"}))


def sniff(data: bytes) -> tuple[Kind, str] | None:
    """(kind, media type) from magic bytes, or None for anything not accepted."""
    head = data[:16]
    for offset, magic, kind, media_type in _MAGIC:
        if head[offset : offset + len(magic)] != magic:
            continue
        container = _CONTAINER.get(magic)
        if container is None or head[0:4] == container or head[4:8] == container:
            return kind, media_type
    if head[4:8] == b"ftyp":
        return "video", "video/mp4"
    # MPEG audio without an ID3 tag starts with an 11-bit frame sync.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "voice", "audio/mpeg"
    return None


# Pillow's format names for the sniffed image types: open() then tries no other parser.
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def _image_size(name: str, data: bytes, media_type: str) -> tuple[int, int] | None:
    """(width, height) from the header alone; None when past Pillow's own bomb limit (~179 MP)."""
    try:
        with warnings.catch_warnings():
            # Pillow's bomb guard warns past its limit and raises past twice that, at open().
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[media_type]]) as img:
                width, height = img.size
                return width, height
    except Image.DecompressionBombError:
        return None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise CorruptFileError(f"{name}: looks like {media_type} but its header does not parse") from None


def _check_image_pixels(name: str, data: bytes, media_type: str, limit: int) -> None:
    """Refuse an image whose header claims more than ``limit`` pixels, without decoding it."""
    size = _image_size(name, data, media_type)
    if size is None or size[0] * size[1] > limit:
        claimed = f"{size[0]}x{size[1]}" if size else "its size"
        raise ImageTooLargeError(f"{name}: {claimed} is more than {limit} pixels; send a smaller image")


def _decodes_as_image(data: bytes) -> bool:
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return img is not None and img.size > 0


def check_file_name(name: str) -> str:
    """The name as sent, if it is a plain, safe file name (no folders, no '..')."""
    try:
        return safe_segment(name)
    except InvalidNameError:
        raise InvalidNameError(
            f"file name {name!r} is not allowed: use a plain name of letters, digits, '.', '_', '-'"
        ) from None


def validate_file(raw: RawFile, settings: Settings) -> ValidatedFile:
    name = check_file_name(raw.name)
    if len(raw.data) > settings.max_upload_file_bytes:
        raise FileTooLargeError(f"{name}: {len(raw.data)} bytes > limit {settings.max_upload_file_bytes}")
    if not raw.data:
        raise CorruptFileError(f"{name}: file is empty")
    sniffed = sniff(raw.data)
    if sniffed is None:
        raise UnsupportedMediaTypeError(
            f"{name}: not an accepted format (JPEG, PNG, WebP; WAV, FLAC, OGG, MP3, M4A; MP4, MOV, AVI, WebM)"
        )
    kind, media_type = sniffed
    declared = raw.declared_type.split(";", 1)[0].strip().lower()
    declared = _ALIASES.get(declared, declared)
    if declared not in _UNINFORMATIVE and declared != media_type:
        raise ContentTypeMismatchError(f"{name}: declared {declared!r} but the bytes are {media_type}")
    field_kind = FIELD_KINDS.get(raw.field)
    if field_kind is not None and field_kind != kind:
        raise ContentTypeMismatchError(f"{name}: sent as {raw.field!r} but the bytes are {media_type}")
    if kind == "image":
        _check_image_pixels(name, raw.data, media_type, settings.max_image_pixels)
    if kind == "image" and not _decodes_as_image(raw.data):
        raise CorruptFileError(f"{name}: looks like {media_type} but does not decode")
    sha = sha256_hex(raw.data)
    return ValidatedFile(name=name, data=raw.data, kind=kind, media_type=media_type, sha256=sha)


def parse_manifest(text: str | bytes | None, max_bytes: int | None = None) -> UploadOptions:
    """The upload's options from its JSON ``manifest`` (none: the defaults); InvalidManifestError
    naming the first problem (refresh lines out of range or crossed included)."""
    if max_bytes is not None and text is not None and len(text) > max_bytes:
        raise InvalidManifestError(f"manifest is larger than {max_bytes} bytes")
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        return UploadOptions()
    try:
        doc: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifestError(f"manifest is not JSON: {exc}") from None
    try:
        return UploadOptions.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        message = first["msg"].removeprefix("Value error, ")  # a validator's own words
        raise InvalidManifestError(f"manifest {where}: {message}") from None


def validate_upload(files: list[RawFile], options: UploadOptions, settings: Settings) -> ValidatedUpload:
    """Check every file and the options; raise the first problem. Stores nothing."""
    if not files:
        raise NoFilesError("an upload needs at least one file")
    if len(files) > settings.max_upload_files:
        raise TooManyFilesError(f"{len(files)} files > limit {settings.max_upload_files}")
    total = sum(len(f.data) for f in files)
    if total > settings.max_upload_total_bytes:
        raise RequestTooLargeError(f"{total} bytes in all > limit {settings.max_upload_total_bytes}")
    validated = [validate_file(f, settings) for f in files]
    names = [f.name for f in validated]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UploadError(f"duplicate file names: {', '.join(dupes)}")
    unknown = sorted(set(options.files) - set(names))
    if unknown:
        raise InvalidManifestError(f"manifest names files that were not uploaded: {', '.join(unknown)}")
    return ValidatedUpload(files=validated, options=options)


def submit_upload(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    upload: ValidatedUpload,
    *,
    lease: BuildLease | None = None,
) -> VersionRecord:
    """Store an upload that passed the gate as a new ``pending`` version, as it is (see
    ingest.store_version)."""
    return store_version(meta, blobs, persona_id, upload.files, upload.options, lease=lease)
