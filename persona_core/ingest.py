"""Upload intake: store a new version's input files and announce them to the pipeline; a
rebuild announces an earlier version's files again (:func:`resubmit_version`).

Order matters for crash safety: blobs first (content-addressed, idempotent), then the
``pending`` version row, then the manifest object the upload sensor watches. A crash
before the row leaves only unreferenced blobs; a crash between row and manifest leaves a
pending version the sensor never sees (it is marked failed when it can be).

A manifest is also how files dropped straight into the bucket start a build: write the
blobs, then ``manifests/<20-digit ns time>-<persona_id>-v<version>.json``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from persona_core.errors import (
    InvalidInputError,
    InvalidManifestError,
    NotRebuildableError,
    UploadError,
    VersionNotFoundError,
)
from persona_core.pack import PERSONA_ID_BODY, BehaviorPolicy, CameraMode, PersonaId, VoiceProfile
from persona_core.refs import sha256_hex
from persona_core.store.base import BlobStore, BuildLease, MetadataStore, VersionRecord, safe_segment
from persona_core.store.ref_index import BLOB, Held
from persona_core.store.tracked import TrackedBlobStore
from persona_core.version_inputs import (
    FileKind,
    RebuiltFrom,
    RefreshLines,
    SkippedFile,
    UploadedFile,
    UploadedInputs,
    uploaded_inputs,
)
from persona_core.versions import fail_version_on_error

MANIFEST_PREFIX = "manifests/"
_MANIFEST_KEY_RE = re.compile(rf"^manifests/(\d{{20}})-({PERSONA_ID_BODY})-v(\d+)\.json$")
log = logging.getLogger(__name__)


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildManifest(_Edge):
    """What the upload sensor reads: which version to build and from which blobs."""

    persona_id: PersonaId
    version: int = Field(ge=1)
    inputs: UploadedInputs


class FileTags(_Edge):
    camera_mode: CameraMode | None = None


class UploadOptions(_Edge):
    """The JSON sent with an upload (its ``manifest`` field over HTTP and gRPC, the folder's
    config files in the CLI): per-file camera-mode tags, behaviour and voice config, and drift
    lines (RefreshPolicy fields; given identity lines win over the calibrated ones)."""

    files: dict[str, FileTags] = {}
    behavior: BehaviorPolicy | None = None
    voice: VoiceProfile | None = None
    refresh: RefreshLines | None = None

    def camera_mode(self, name: str) -> CameraMode | None:
        tags = self.files.get(name)
        return tags.camera_mode if tags is not None else None


class StagedFile(Protocol):
    """One file of a new version, already checked by the caller's gate. ``data`` may read the
    bytes from where they are (a file, a spooled part) each time it is asked for them."""

    @property
    def name(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def kind(self) -> FileKind: ...

    @property
    def sha256(self) -> str: ...

    @property
    def camera_mode(self) -> CameraMode | None: ...

    @property
    def media_type(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Checked:
    name: str
    data: bytes
    kind: FileKind
    sha256: str
    camera_mode: CameraMode | None
    media_type: str | None = None


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
    lease: BuildLease | None = None,
) -> VersionRecord:
    """Store ``files`` (name, bytes, kind) as a new ``pending`` version and write its manifest
    (``building`` under ``lease`` when a build here claims it at once: see create_version).

    For scripts, tests and the demo, which hold plain values: they are checked here, once, and
    stored by :func:`store_version`. The doors (HTTP, gRPC, the CLI) use the upload gate,
    ``persona_core.uploads``, instead. Everything is checked before anything is written: an
    unknown persona raises PersonaNotFoundError, a bad name InvalidNameError, any other bad
    input InvalidInputError.
    """
    meta.get_persona(persona_id)
    tags = {name: {"camera_mode": mode} for name, mode in (camera_modes or {}).items()}
    doc: dict[str, Any] = {"files": tags}
    for key, value in (("behavior", behavior), ("voice", voice), ("refresh", refresh)):
        if value is not None:
            doc[key] = dict(value)
    try:
        options = UploadOptions.model_validate(doc)
    except (ValidationError, TypeError) as exc:
        raise InvalidInputError(f"upload config is invalid: {_first_error(exc)}") from None
    checked = _check_files(files, options)
    unknown = set(options.files) - {f.name for f in checked}
    if unknown:
        raise InvalidInputError(f"camera modes given for files not uploaded: {sorted(unknown)}")
    return store_version(meta, blobs, persona_id, checked, options, lease=lease)


def store_version(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    files: Sequence[StagedFile],
    options: UploadOptions,
    *,
    lease: BuildLease | None = None,
    skipped: Sequence[SkippedFile] = (),
    notes: Sequence[str] = (),
) -> VersionRecord:
    """Store ``files`` as a new ``pending`` version (``building`` under ``lease``) and write its
    manifest. ``files`` and ``options`` passed a gate (``uploads.validate_upload`` or
    :func:`submit_version`) and are not checked again; the files the gate ``skipped`` and its
    ``notes`` are kept in the version's inputs. An unknown persona raises PersonaNotFoundError
    before anything is written. Files are read and stored one at a time."""
    meta.get_persona(persona_id)
    stored = []
    by_ref: dict[str, StagedFile] = {}
    for f in files:
        data = f.data
        ref = blobs.put(data)
        if ref != f"sha256:{f.sha256}":
            raise UploadError(f"{f.name} changed while it was stored; upload it again")
        by_ref[ref] = f
        stored.append(UploadedFile(name=f.name, ref=ref, sha256=f.sha256, kind=f.kind, size=len(data),
                                   camera_mode=f.camera_mode, media_type=f.media_type))
        del data
    inputs = UploadedInputs(files=stored, behavior_policy=options.behavior, voice=options.voice,
                            refresh_policy=options.refresh, skipped=list(skipped), notes=list(notes))
    return _announce(meta, blobs, persona_id, inputs, lease=lease, data=by_ref)


def resubmit_version(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    from_version: int | None = None,
    *,
    lease: BuildLease | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> VersionRecord:
    """A new ``pending`` version (``building`` under ``lease``) holding the uploaded inputs of
    ``from_version`` (default: the newest), with its manifest, for a rebuild after a threshold
    or model upgrade. The files are not copied (blobs are content-addressed); the old version
    and its pack stay as they are. The new version's inputs say which version it rebuilds and
    with which ``thresholds`` (``PipelineConfig`` fields; None: the defaults), as ``rebuilt_from``.

    Raises, before anything is written: VersionNotFoundError when there is no such version,
    NotRebuildableError when it was imported from an archive (it holds no files).
    """
    if from_version is None:
        versions = meta.list_versions(persona_id)
        if not versions:
            meta.get_persona(persona_id)  # PersonaNotFoundError for an unknown persona
            raise VersionNotFoundError(f"{persona_id} has no version to rebuild")
        source = versions[-1]
    else:
        source = meta.get_version(persona_id, from_version)
    try:
        inputs = uploaded_inputs(source)
    except NotRebuildableError as exc:
        raise NotRebuildableError(f"{exc}; {_rebuild_hint(meta, persona_id)}") from None
    origin = RebuiltFrom(version=source.version, thresholds=dict(thresholds) if thresholds else None)
    inputs = inputs.model_copy(update={"rebuilt_from": origin})
    record = _announce(meta, blobs, persona_id, inputs, lease=lease)
    log.info("%s v%s holds the inputs of v%s", persona_id, record.version, source.version)
    return record


def _announce(
    meta: MetadataStore, blobs: BlobStore, persona_id: str, inputs: UploadedInputs, *,
    lease: BuildLease | None, data: Mapping[str, StagedFile] | None = None,
) -> VersionRecord:
    version = meta.create_version(persona_id, inputs.model_dump(mode="json"), lease=lease)
    tracked = TrackedBlobStore(blobs, meta.refs, persona_id, version.version)
    with fail_version_on_error(meta, persona_id, version.version, "upload not stored"):
        # Held from now on. A GC that deleted one of these content-addressed blobs since it was
        # written (another upload's old copy) is waited out, and the blob is written again.
        tracked.hold(*(Held(BLOB, f.ref) for f in inputs.files))
        for ref, staged in (data or {}).items():
            if not blobs.exists(ref):
                blobs.put(staged.data)
    manifest = BuildManifest(persona_id=persona_id, version=version.version, inputs=inputs)
    # Without its manifest no build will ever start: say so on the version itself.
    with fail_version_on_error(meta, persona_id, version.version, "manifest not written"):
        tracked.put_object(manifest_key(persona_id, version.version), manifest_bytes(manifest))
    return version


def _rebuild_hint(meta: MetadataStore, persona_id: str) -> str:
    uploaded = []
    for record in meta.list_versions(persona_id):
        try:
            uploaded_inputs(record)
        except InvalidInputError:
            continue
        uploaded.append(record.version)
    if not uploaded:
        return "upload the photos again to build a new version"
    return f"v{uploaded[-1]} holds uploaded files: rebuild from that version, or upload the photos again"


def manifest_bytes(manifest: BuildManifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=1).encode()


def read_manifest(blobs: BlobStore, key: str) -> BuildManifest:
    """Load and validate the manifest at ``key``; InvalidManifestError when it is malformed
    or its name does not match its content (BlobNotFoundError when it does not exist)."""
    match = _MANIFEST_KEY_RE.fullmatch(key)
    if match is None:
        raise InvalidManifestError(f"{key!r} is not a manifest key (manifests/<ns>-<persona>-v<n>.json)")
    raw = blobs.get_object(key)
    try:
        manifest = BuildManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidManifestError(f"{key}: {_first_error(exc)}") from None
    if (manifest.persona_id, manifest.version) != (match.group(2), int(match.group(3))):
        raise InvalidManifestError(
            f"{key}: its name says {match.group(2)} v{match.group(3)}, "
            f"its body {manifest.persona_id} v{manifest.version}"
        )
    return manifest


def _check_files(files: Sequence[tuple[str, bytes, str]], options: UploadOptions) -> list[_Checked]:
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
        blob = bytes(data)
        mode = options.camera_mode(name)
        checked.append(_Checked(name, blob, cast(FileKind, kind), sha256_hex(blob), mode))
    return checked


def _first_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"
