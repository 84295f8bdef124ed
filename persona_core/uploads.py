"""The one upload gate: HTTP, gRPC and the CLI hand every file to :func:`validate_upload`,
so the same file gets the same verdict through every door.

What a file is comes from its bytes, never from its name, suffix or declared type: a photo
whose name or declared type says otherwise is read as what its bytes are, and the upload
says so in a note. A file in no accepted format (a BMP, a HEIC photo, a text file) is
skipped with its reason, and the rest of the upload goes on; only an upload with nothing
usable in it is refused for that.

A file name is a label: letters of any script, spaces, brackets and emoji are kept as sent
(in Unicode NFC form); what is stored is keyed by content (``sha256:<hex>``), never by
name. Names with a folder separator, a control character, a leading '.' (hidden files,
``..``) or more than 255 bytes are refused. Two files with the same name are both kept, the
later ones labelled ``name (2).ext``, ``name (3).ext``.

Everything here runs before anything is stored, so a rejected upload leaves the stores as
they were. Counts and sizes are checked first, from each file's size and first bytes; then
each file is read whole, one at a time. Images must also decode (OpenCV), so a truncated JPEG
is refused at the door instead of failing a build later; their size is read from the header
first (Pillow reads no pixels), so an image claiming more than ``max_image_pixels`` is
refused before any decode.
"""

from __future__ import annotations

import io
import json
import mimetypes
import struct
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pydantic import ValidationError

from persona_core.errors import (
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
from persona_core.media_types import HEAD_BYTES, SNIFFED_MEDIA_TYPES, Kind, sniff, unsupported_reason
from persona_core.pack import CameraMode
from persona_core.refs import sha256_hex
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, BuildLease, MetadataStore, VersionRecord
from persona_core.upload_sources import ByteSource, FileSource, sha256_of
from persona_core.version_inputs import SkippedFile

__all__ = [
    "FIELD_KINDS",
    "MANIFEST_FIELD",
    "SNIFFED_MEDIA_TYPES",
    "RawFile",
    "SkippedFile",
    "ValidatedFile",
    "ValidatedUpload",
    "check_file_name",
    "parse_manifest",
    "sniff",
    "submit_upload",
    "validate_upload",
]

# Declared types that say nothing: no note when they differ from the bytes.
_UNINFORMATIVE = {"", "application/octet-stream", "binary/octet-stream"}
# Other spellings clients (and file-name suffixes) use for the same formats.
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
    "audio/opus": "audio/ogg",
    "application/ogg": "audio/ogg",
    "video/avi": "video/x-msvideo",
    "video/msvideo": "video/x-msvideo",
    "video/x-matroska": "video/webm",
    "video/x-m4v": "video/mp4",
    "audio/webm": "video/webm",
}
# Multipart field names a client may use; a named kind that the bytes contradict is noted.
FIELD_KINDS: dict[str, Kind | None] = {"files": None, "images": "image", "videos": "video", "voices": "voice"}
MANIFEST_FIELD = "manifest"
_MAX_NAME_BYTES = 255
# Bidirectional-text controls: they make a name read as something else ("photo<RLO>gpj.exe").
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters, lone surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class RawFile:
    """One file as a door received it: its name, where its bytes are, and what the client said
    about it (``declared_type``, the multipart ``field``). The CLI adds where in the folder it
    was (``origin``) and the camera mode its sub-folder gives it."""

    name: str
    source: FileSource
    declared_type: str = ""
    field: str = "files"
    origin: str = ""
    camera_mode: CameraMode | None = None

    @classmethod
    def of_bytes(cls, name: str, data: bytes, declared_type: str = "", field: str = "files") -> RawFile:
        return cls(name=name, source=ByteSource(data), declared_type=declared_type, field=field)


@dataclass(frozen=True, slots=True)
class ValidatedFile:
    """A file that passed the gate: its label (unique in its upload), what its bytes are, and
    their sha256. :attr:`data` reads the bytes again, checked against that sha256."""

    name: str
    kind: Kind
    media_type: str
    sha256: str
    size: int
    camera_mode: CameraMode | None
    source: FileSource

    @property
    def data(self) -> bytes:
        data = self.source.read()
        if sha256_hex(data) != self.sha256:
            raise UploadError(f"{self.name} changed while it was read; upload it again when it is written")
        return data


@dataclass(frozen=True, slots=True)
class ValidatedUpload:
    """Files and options that passed the gate, the files it skipped (with reasons) and what it
    noted (a name that said another format, a renamed duplicate); stored by :func:`submit_upload`."""

    files: list[ValidatedFile]
    options: UploadOptions
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    """``name`` as a label (Unicode NFC), or InvalidNameError saying what is wrong with it.

    Any script, spaces, brackets and emoji are fine; refused: an empty name, a folder
    separator, a leading '.' (hidden files, ``.``, ``..``), a control or bidirectional-text
    control character, more than 255 bytes of UTF-8."""
    label = unicodedata.normalize("NFC", name) if isinstance(name, str) else ""
    problem = ""
    if not label.strip():
        problem = "it is empty"
    elif "/" in label or "\\" in label:
        problem = "it holds a folder separator"
    elif label.startswith("."):
        problem = "it starts with '.'"
    elif any(unicodedata.category(c) in _REFUSED_CATEGORIES or c in _BIDI_CONTROLS for c in label):
        problem = "it holds a control character"
    elif len(label.encode("utf-8")) > _MAX_NAME_BYTES:
        problem = f"it is longer than {_MAX_NAME_BYTES} bytes"
    if problem:
        raise InvalidNameError(f"file name {name!r} is not allowed: {problem}")
    return label


def _media_type_said(text: str) -> str:
    text = text.split(";", 1)[0].strip().lower()
    return _ALIASES.get(text, text)


def _lying_label_notes(label: str, raw: RawFile, kind: Kind, media_type: str) -> list[str]:
    """What the name, the declared type and the multipart field said that the bytes do not."""
    said = []
    by_name = _media_type_said(mimetypes.guess_type(label, strict=False)[0] or "")
    if by_name and by_name != media_type:
        said.append(f"its name says {by_name}")
    declared = _media_type_said(raw.declared_type)
    if declared not in _UNINFORMATIVE and declared not in (media_type, by_name):
        said.append(f"it was declared {declared}")
    field_kind = FIELD_KINDS.get(raw.field)
    if field_kind is not None and field_kind != kind:
        said.append(f"it was sent as {raw.field!r}")
    if not said:
        return []
    return [f"{label}: read as {media_type}, what its bytes are ({', '.join(said)})"]


def _free_label(label: str, taken: set[str]) -> str:
    stem, dot, suffix = label.rpartition(".")
    if not dot or not stem:
        stem, suffix = label, ""
    else:
        suffix = "." + suffix
    n = 2
    while f"{stem} ({n}){suffix}" in taken:
        n += 1
    return f"{stem} ({n}){suffix}"


@dataclass(frozen=True, slots=True)
class _Usable:
    raw: RawFile
    name: str
    kind: Kind
    media_type: str


def _sort_out(files: list[RawFile]) -> tuple[list[_Usable], list[SkippedFile]]:
    """Each file's name checked and its kind sniffed from its first bytes; none read whole."""
    usable: list[_Usable] = []
    skipped: list[SkippedFile] = []
    for raw in files:
        name = check_file_name(raw.name)
        if raw.source.size == 0:
            raise CorruptFileError(f"{name}: file is empty")
        head = raw.source.head(HEAD_BYTES)
        sniffed = sniff(head)
        if sniffed is None:
            code = UnsupportedMediaTypeError.code
            skipped.append(
                SkippedFile(name=name, origin=raw.origin or None, code=code, reason=unsupported_reason(head))
            )
            continue
        usable.append(_Usable(raw, name, *sniffed))
    return usable, skipped


def _check_content(item: _Usable, settings: Settings) -> str:
    """The file read whole (images: header, pixel count and a decode); its sha256."""
    if item.kind != "image":
        return sha256_of(item.raw.source)
    data = item.raw.source.read()
    _check_image_pixels(item.name, data, item.media_type, settings.max_image_pixels)
    if not _decodes_as_image(data):
        raise CorruptFileError(f"{item.name}: looks like {item.media_type} but does not decode")
    return sha256_hex(data)


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
    """Check every file and the options; raise the first problem. Stores nothing.

    Files in no accepted format are skipped with a reason; an upload left with none is refused
    (``unsupported_media_type``). Counts and sizes are checked on the usable files before any
    of them is read whole."""
    if not files:
        raise NoFilesError("an upload needs at least one file")
    usable, skipped = _sort_out(files)
    if not usable:
        why = "; ".join(f"{s.origin or s.name}: {s.reason}" for s in skipped)
        raise UnsupportedMediaTypeError(f"no photos, video clips or voice files in this upload ({why})")
    if len(usable) > settings.max_upload_files:
        raise TooManyFilesError(f"{len(usable)} files > limit {settings.max_upload_files}")
    total = sum(u.raw.source.size for u in usable)
    if total > settings.max_upload_total_bytes:
        raise RequestTooLargeError(f"{total} bytes in all > limit {settings.max_upload_total_bytes}")
    for u in usable:
        if u.raw.source.size > settings.max_upload_file_bytes:
            raise FileTooLargeError(
                f"{u.name}: {u.raw.source.size} bytes > limit {settings.max_upload_file_bytes}"
            )
    sent = {u.name for u in usable} | {s.name for s in skipped}
    tags = {unicodedata.normalize("NFC", name): t.camera_mode for name, t in options.files.items()}
    unknown = sorted(set(tags) - sent)
    if unknown:
        raise InvalidManifestError(f"manifest names files that were not uploaded: {', '.join(unknown)}")

    notes: list[str] = []
    taken = {u.name for u in usable}
    seen: set[str] = set()
    validated = []
    for u in usable:
        label = u.name
        if label in seen:
            label = _free_label(label, taken)
            taken.add(label)
            notes.append(f"{u.raw.origin or u.name}: kept as {label!r}, another file is named {u.name!r}")
        seen.add(u.name)
        notes.extend(_lying_label_notes(u.name, u.raw, u.kind, u.media_type))
        sha = _check_content(u, settings)
        mode = u.raw.camera_mode or tags.get(u.name)
        validated.append(
            ValidatedFile(
                name=label,
                kind=u.kind,
                media_type=u.media_type,
                sha256=sha,
                size=u.raw.source.size,
                camera_mode=mode,
                source=u.raw.source,
            )
        )
    return ValidatedUpload(files=validated, options=options, skipped=skipped, notes=notes)


def submit_upload(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    upload: ValidatedUpload,
    *,
    lease: BuildLease | None = None,
) -> VersionRecord:
    """Store an upload that passed the gate as a new ``pending`` version, as it is (see
    ingest.store_version), with the files it skipped and its notes in the version's inputs."""
    return store_version(
        meta,
        blobs,
        persona_id,
        upload.files,
        upload.options,
        lease=lease,
        skipped=upload.skipped,
        notes=upload.notes,
    )
