"""Turn a folder of photos, clips and voice files into an upload for the one upload gate.

Layout: files anywhere under the folder; a sub-folder named after a camera mode
(``A_SELFIE/``, ``B_MIRROR/``, ``C_CUTAWAY/``) tags the files in it with that mode. An
optional ``behavior.json`` / ``voice.json`` / ``refresh.json`` at the top level is the behaviour /
voice config / drift lines (RefreshPolicy fields; given identity lines win over calibrated ones).

Every other file (hidden ones aside) then meets :func:`persona_core.uploads.validate_upload`,
the same checks an HTTP or gRPC upload meets: what a file is comes from its bytes, a file in
no accepted format is skipped with its reason, two files of the same name in two sub-folders
are both kept (the later one labelled ``name (2).ext``). Nothing is read here: the gate checks
counts and sizes from ``stat`` and each file's first bytes before it reads any file whole, and
then reads them one at a time. Symbolic links are refused: the registry stores what the folder
holds, never what a link points at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from persona_core.errors import InvalidInputError, InvalidManifestError, NoFilesError, UploadError
from persona_core.ingest import UploadOptions
from persona_core.pack import CameraMode
from persona_core.settings import Settings
from persona_core.upload_sources import PathSource
from persona_core.uploads import RawFile, SkippedFile, ValidatedUpload, parse_manifest, validate_upload

CONFIG_FILES = ("behavior.json", "voice.json", "refresh.json")


@dataclass
class CollectedInputs:
    files: list[RawFile] = field(default_factory=list)
    behavior: dict[str, object] | None = None
    voice: dict[str, object] | None = None
    refresh: dict[str, object] | None = None


@dataclass(frozen=True)
class FolderUpload:
    """A folder that passed the upload gate, with the files it skipped and its notes."""

    upload: ValidatedUpload

    @property
    def skipped(self) -> list[SkippedFile]:
        return self.upload.skipped

    @property
    def notes(self) -> list[str]:
        return self.upload.notes

    @property
    def counts(self) -> dict[str, int]:
        counts = {"image": 0, "video": 0, "voice": 0}
        for f in self.upload.files:
            counts[f.kind] += 1
        return counts


def collect_inputs(folder: Path) -> CollectedInputs:
    """Every file under ``folder`` as a :class:`RawFile` sized from ``stat`` (nothing read but
    the config files); typed errors for links and a folder with no files."""
    if folder.is_symlink() or not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")
    modes = {m.value for m in CameraMode}
    found = CollectedInputs()
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
        mode = next((CameraMode(part) for part in rel.parts[:-1] if part in modes), None)
        origin = rel.as_posix()
        found.files.append(
            RawFile(name=path.name, source=PathSource(path, origin), origin=origin, camera_mode=mode)
        )
    if not found.files:
        raise NoFilesError(f"no photos, video clips or voice files under {folder}")
    return found


def folder_upload(folder: Path, settings: Settings) -> FolderUpload:
    """``folder`` through the upload gate: every file checked before anything is stored."""
    found = collect_inputs(folder)
    manifest_doc: dict[str, object] = {}
    if found.behavior is not None:
        manifest_doc["behavior"] = found.behavior
    if found.voice is not None:
        manifest_doc["voice"] = found.voice
    if found.refresh is not None:
        manifest_doc["refresh"] = found.refresh
    options: UploadOptions = parse_manifest(json.dumps(manifest_doc), settings.max_manifest_bytes)
    return FolderUpload(validate_upload(found.files, options, settings))


def _json(path: Path) -> dict[str, object]:
    # These files are the folder's manifest: the same error an HTTP or gRPC manifest gets.
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifestError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidManifestError(f"{path.name} must hold a JSON object")
    return doc
