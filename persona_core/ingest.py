"""Upload intake: store a new version's input files and announce them to the pipeline.

Order matters for crash safety: blobs first (content-addressed, idempotent), then the
``pending`` version row, then the manifest object the upload sensor watches. A crash
before the row leaves only unreferenced blobs; a crash between row and manifest leaves a
pending version the sensor never sees (``submit_version`` marks it failed when it can).

A manifest is also how files dropped straight into the bucket start a build: write the
blobs, then ``manifests/<20-digit ns time>-<persona_id>-v<version>.json``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from persona_core.errors import InvalidInputError, InvalidManifestError
from persona_core.pack import (
    PERSONA_ID_BODY,
    BehaviorPolicy,
    CameraMode,
    PersonaId,
    RefreshPolicy,
    Sha256Hex,
    VoiceProfile,
)
from persona_core.refs import REF_PATTERN, sha256_hex
from persona_core.store.base import BlobStore, MetadataStore, VersionRecord, safe_segment
from persona_core.versions import fail_version_on_error

MANIFEST_PREFIX = "manifests/"
_MANIFEST_KEY_RE = re.compile(rf"^manifests/(\d{{20}})-({PERSONA_ID_BODY})-v(\d+)\.json$")
FileKind = Literal["image", "video", "voice"]


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestFile(_Edge):
    name: str
    ref: str = Field(pattern=REF_PATTERN)
    sha256: Sha256Hex
    kind: FileKind
    size: int = Field(ge=0)
    camera_mode: CameraMode | None = None


class ManifestInputs(_Edge):
    files: list[ManifestFile] = Field(min_length=1)
    behavior_policy: dict[str, Any] | None = None
    voice: dict[str, Any] | None = None
    # Drift lines the uploader sets (RefreshPolicy fields); they win over the calibrated ones.
    refresh_policy: dict[str, Any] | None = None


class UploadManifest(_Edge):
    """What the upload sensor reads: which version to build and from which blobs."""

    persona_id: PersonaId
    version: int = Field(ge=1)
    inputs: ManifestInputs


@dataclass(frozen=True, slots=True)
class _Checked:
    name: str
    data: bytes
    kind: FileKind
    camera_mode: CameraMode | None


def manifest_key(persona_id: str, version: int, now_ns: int | None = None) -> str:
    """``manifests/<20-digit ns>-<persona_id>-v<version>.json``: sorts by time for sensor cursors."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{MANIFEST_PREFIX}{stamp:020d}-{safe_segment(persona_id)}-v{int(version)}.json"


def submit_version(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    files: Sequence[tuple[str, bytes, str]],
    *,
    behavior: Mapping[str, Any] | None = None,
    voice: Mapping[str, Any] | None = None,
    camera_modes: Mapping[str, str] | None = None,
    refresh: Mapping[str, Any] | None = None,
    lease: str | None = None,
) -> VersionRecord:
    """Store ``files`` (name, bytes, kind) as a new ``pending`` version and write its manifest
    (``building`` under ``lease`` when a build here claims it at once: see create_version).

    Everything is validated before anything is written: an unknown persona raises
    PersonaNotFoundError, a bad name InvalidNameError, any other bad input InvalidInputError.
    """
    meta.get_persona(persona_id)
    checked = _check_files(files, camera_modes or {})
    behavior_doc = _validated(BehaviorPolicy, behavior, "behavior")
    voice_doc = _validated(VoiceProfile, voice, "voice")
    refresh_doc = _validated(RefreshPolicy, refresh, "refresh")
    if refresh_doc is not None:  # only the fields given, so the unset ones stay calibrated
        refresh_doc = {k: refresh_doc[k] for k in dict(refresh or {}) if k in refresh_doc}

    records = []
    for f in checked:
        ref = blobs.put(f.data)
        records.append(
            ManifestFile(
                name=f.name,
                ref=ref,
                sha256=sha256_hex(f.data),
                kind=f.kind,
                size=len(f.data),
                camera_mode=f.camera_mode,
            )
        )
    inputs = ManifestInputs(
        files=records, behavior_policy=behavior_doc, voice=voice_doc, refresh_policy=refresh_doc
    ).model_dump(mode="json")
    version = meta.create_version(persona_id, inputs, lease=lease)
    manifest = UploadManifest(persona_id=persona_id, version=version.version, inputs=ManifestInputs(**inputs))
    # Without its manifest no build will ever start: say so on the version itself.
    with fail_version_on_error(meta, persona_id, version.version, "manifest not written"):
        blobs.put_object(manifest_key(persona_id, version.version), manifest_bytes(manifest))
    return version


def manifest_bytes(manifest: UploadManifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=1).encode()


def read_manifest(blobs: BlobStore, key: str) -> UploadManifest:
    """Load and validate the manifest at ``key``; InvalidManifestError when it is malformed
    or its name does not match its content (BlobNotFoundError when it does not exist)."""
    match = _MANIFEST_KEY_RE.fullmatch(key)
    if match is None:
        raise InvalidManifestError(f"{key!r} is not a manifest key (manifests/<ns>-<persona>-v<n>.json)")
    raw = blobs.get_object(key)
    try:
        manifest = UploadManifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidManifestError(f"{key}: {where}: {first['msg']}") from None
    if (manifest.persona_id, manifest.version) != (match.group(2), int(match.group(3))):
        raise InvalidManifestError(
            f"{key}: its name says {match.group(2)} v{match.group(3)}, "
            f"its body {manifest.persona_id} v{manifest.version}"
        )
    return manifest


def _check_files(files: Sequence[tuple[str, bytes, str]], camera_modes: Mapping[str, str]) -> list[_Checked]:
    if not files:
        raise InvalidInputError("a version needs at least one input file")
    checked: list[_Checked] = []
    seen: set[str] = set()
    for item in files:
        if not isinstance(item, tuple | list) or len(item) != 3:
            raise InvalidInputError("each file must be (name, bytes, kind)")
        name, data, kind = item
        safe_segment(name)
        if name in seen:
            raise InvalidInputError(f"file {name!r} given twice")
        seen.add(name)
        if not isinstance(data, bytes | bytearray) or not data:
            raise InvalidInputError(f"file {name!r} is empty or not bytes")
        if kind not in ("image", "video", "voice"):
            raise InvalidInputError(f"file {name!r}: kind must be image, video or voice, not {kind!r}")
        mode = camera_modes.get(name)
        try:
            camera_mode = CameraMode(mode) if mode is not None else None
        except ValueError:
            raise InvalidInputError(f"file {name!r}: unknown camera mode {mode!r}") from None
        checked.append(_Checked(name, bytes(data), cast(FileKind, kind), camera_mode))
    unknown = set(camera_modes) - seen
    if unknown:
        raise InvalidInputError(f"camera modes given for files not uploaded: {sorted(unknown)}")
    return checked


def _validated(model: type[BaseModel], doc: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    if doc is None:
        return None
    try:
        return model.model_validate(dict(doc)).model_dump(mode="json")
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} config is invalid: {exc}") from None
