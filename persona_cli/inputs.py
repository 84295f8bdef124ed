"""Turn a folder of photos, clips and voice files into ``submit_version`` arguments.

Layout: files anywhere under the folder; a sub-folder named after a camera mode
(``A_SELFIE/``, ``B_MIRROR/``, ``C_CUTAWAY/``) tags the files in it with that mode. An
optional ``behavior.json`` / ``voice.json`` / ``refresh.json`` at the top level is the behaviour /
voice config / drift lines (RefreshPolicy fields; given identity lines win over calibrated ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_core.errors import InvalidInputError
from persona_core.pack import CameraMode

KIND_BY_SUFFIX = {
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".webp", ".bmp"), "image"),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"), "video"),
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg", ".m4a"), "voice"),
}
CONFIG_FILES = ("behavior.json", "voice.json", "refresh.json")


@dataclass
class CollectedInputs:
    files: list[tuple[str, bytes, str]] = field(default_factory=list)
    camera_modes: dict[str, str] = field(default_factory=dict)
    behavior: dict[str, Any] | None = None
    voice: dict[str, Any] | None = None
    refresh: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {"image": 0, "video": 0, "voice": 0}
        for _, _, kind in self.files:
            counts[kind] += 1
        return counts


def collect_inputs(folder: Path) -> CollectedInputs:
    """Read every recognised file under ``folder``; InvalidInputError when nothing usable is there."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")
    modes = {m.value for m in CameraMode}
    found = CollectedInputs()
    seen: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if len(rel.parts) == 1 and rel.name in CONFIG_FILES:
            doc = _json(path)
            if rel.name == "behavior.json":
                found.behavior = doc
            elif rel.name == "refresh.json":
                found.refresh = doc
            else:
                found.voice = doc
            continue
        kind = KIND_BY_SUFFIX.get(path.suffix.lower())
        if kind is None:
            found.skipped.append(rel.as_posix())
            continue
        if path.name in seen:
            raise InvalidInputError(
                f"two inputs are named {path.name!r} ({seen[path.name]} and {rel}); names must be unique"
            )
        seen[path.name] = rel
        found.files.append((path.name, path.read_bytes(), kind))
        mode = next((part for part in rel.parts[:-1] if part in modes), None)
        if mode is not None:
            found.camera_modes[path.name] = mode
    if not found.files:
        raise InvalidInputError(f"no photos, video clips or voice files under {folder}")
    return found


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{path.name} must hold a JSON object")
    return doc
