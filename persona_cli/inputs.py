"""Turn a folder of photos, clips and voice files into an upload for the one upload gate.

Layout: files anywhere under the folder; a sub-folder named after a camera mode
(``A_SELFIE/``, ``B_MIRROR/``, ``C_CUTAWAY/``) tags the files in it with that mode. An
optional ``behavior.json`` / ``voice.json`` / ``refresh.json`` at the top level is the behaviour /
voice config / drift lines (RefreshPolicy fields; given identity lines win over calibrated ones).

Every file then meets :func:`persona_core.uploads.validate_upload`, the same checks an HTTP
or gRPC upload meets; a file's suffix only picks which files are inputs and plays the part
of an HTTP client's declared type. Symbolic links are refused: the registry stores what the
folder holds, never what a link points at.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path

from persona_core.errors import FileTooLargeError, InvalidInputError, InvalidManifestError, UploadError
from persona_core.ingest import UploadOptions
from persona_core.pack import CameraMode
from persona_core.settings import Settings
from persona_core.uploads import RawFile, ValidatedUpload, parse_manifest, validate_upload

KIND_BY_SUFFIX = {
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".webp", ".bmp"), "image"),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"), "video"),
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg", ".m4a"), "voice"),
}
CONFIG_FILES = ("behavior.json", "voice.json", "refresh.json")


@dataclass
class CollectedInputs:
    files: list[RawFile] = field(default_factory=list)
    camera_modes: dict[str, str] = field(default_factory=dict)
    behavior: dict[str, object] | None = None
    voice: dict[str, object] | None = None
    refresh: dict[str, object] | None = None
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FolderUpload:
    """A folder that passed the upload gate, and the files it skipped (unknown suffixes)."""

    upload: ValidatedUpload
    skipped: list[str]

    @property
    def counts(self) -> dict[str, int]:
        counts = {"image": 0, "video": 0, "voice": 0}
        for f in self.upload.files:
            counts[f.kind] += 1
        return counts


def collect_inputs(folder: Path, settings: Settings) -> CollectedInputs:
    """Read every recognised file under ``folder``; typed errors for links, oversize files, nothing usable."""
    if folder.is_symlink() or not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")
    modes = {m.value for m in CameraMode}
    found = CollectedInputs()
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise UploadError(f"{rel.as_posix()!r} is a symbolic link; put the file itself in the folder")
        if not path.is_file():
            continue
        if len(rel.parts) == 1 and rel.name in CONFIG_FILES:
            setattr(found, rel.stem, _json(path))  # behavior.json -> .behavior, and so on
            continue
        # Stripped: "x.jpg\n" is a photo with a bad name (refused by the gate), not a file to skip.
        if KIND_BY_SUFFIX.get(path.suffix.lower().strip()) is None:
            found.skipped.append(rel.as_posix())
            continue
        if path.name in seen:
            raise InvalidInputError(
                f"two inputs are named {path.name!r} ({seen[path.name]} and {rel}); names must be unique"
            )
        seen[path.name] = rel
        # Refused from the size alone, before the bytes are read (as an HTTP upload's spooled part).
        size = path.stat().st_size
        if size > settings.max_upload_file_bytes:
            raise FileTooLargeError(f"{path.name}: {size} bytes > limit {settings.max_upload_file_bytes}")
        declared = mimetypes.guess_type(path.name, strict=False)[0] or ""
        found.files.append(RawFile(name=path.name, data=path.read_bytes(), declared_type=declared))
        mode = next((part for part in rel.parts[:-1] if part in modes), None)
        if mode is not None:
            found.camera_modes[path.name] = mode
    if not found.files:
        raise InvalidInputError(f"no photos, video clips or voice files under {folder}")
    return found


def folder_upload(folder: Path, settings: Settings) -> FolderUpload:
    """``folder`` through the upload gate: every file checked before anything is stored."""
    found = collect_inputs(folder, settings)
    manifest_doc: dict[str, object] = {
        "files": {name: {"camera_mode": mode} for name, mode in found.camera_modes.items()}
    }
    if found.behavior is not None:
        manifest_doc["behavior"] = found.behavior
    if found.voice is not None:
        manifest_doc["voice"] = found.voice
    if found.refresh is not None:
        manifest_doc["refresh"] = found.refresh
    options: UploadOptions = parse_manifest(json.dumps(manifest_doc), settings.max_manifest_bytes)
    return FolderUpload(validate_upload(found.files, options, settings), found.skipped)


def _json(path: Path) -> dict[str, object]:
    # These files are the folder's manifest: the same error an HTTP or gRPC manifest gets.
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifestError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidManifestError(f"{path.name} must hold a JSON object")
    return doc
