"""What a version was made from, as its row's ``inputs`` JSON holds it, in one typed union:

- :class:`UploadedInputs`: files uploaded through a door (HTTP, gRPC, the CLI, a script),
  with the uploader's behaviour, voice and drift-line config; a build reads these.
- :class:`ImportedInputs`: a pack imported from a ``.personapack`` archive; the archive
  carries the pack, never the files it was built from, so there is nothing to build again.

The two shapes predate this module (rows carry no type field), so the union tells them
apart by shape: a document with ``imported_from`` is an import. :func:`inputs_of` is the one
place a version's inputs are parsed; everyone that reads them goes through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from persona_core.errors import InvalidVersionInputsError, NotRebuildableError
from persona_core.pack import (
    BehaviorPolicy,
    CameraMode,
    PersonaId,
    RefreshPolicy,
    Sha256Hex,
    VoiceProfile,
)
from persona_core.refs import REF_PATTERN
from persona_core.store.base import VersionRecord

__all__ = [
    "REFRESH_LINES",
    "FileKind",
    "ImportedFrom",
    "ImportedInputs",
    "RebuiltFrom",
    "RecordedInputs",
    "RefreshLines",
    "SkippedFile",
    "UploadedFile",
    "UploadedInputs",
    "check_refresh_lines",
    "inputs_of",
    "parse_inputs",
    "uploaded_inputs",
]

FileKind = Literal["image", "video", "voice"]
# The drift lines an uploader may set; the builder records the calibration itself.
REFRESH_LINES: tuple[str, ...] = tuple(n for n in RefreshPolicy.model_fields if n != "identity_calibration")


def check_refresh_lines(lines: dict[str, float | int]) -> dict[str, float | int]:
    """``lines`` if every key is a RefreshPolicy line in its range and the identity fail line is
    not above the warn line (when both are given); ValueError naming the first problem."""
    unknown = sorted(set(lines) - set(REFRESH_LINES))
    if unknown:
        raise ValueError(f"unknown refresh lines {unknown}; known: {', '.join(REFRESH_LINES)}")
    try:
        RefreshPolicy.model_validate(lines)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    warn, fail = lines.get("identity_drift_warn"), lines.get("identity_drift_fail")
    if warn is not None and fail is not None and fail > warn:
        raise ValueError(f"identity_drift_fail {fail} is above identity_drift_warn {warn}")
    return lines


# Only the lines given, so the ones left out stay calibrated by the builder.
RefreshLines = Annotated[dict[str, float | int], AfterValidator(check_refresh_lines)]


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UploadedFile(_Edge):
    """One uploaded file: where its bytes are (content-addressed) and what the uploader said."""

    name: str
    ref: str = Field(pattern=REF_PATTERN)
    sha256: Sha256Hex
    kind: FileKind
    size: int = Field(ge=0)
    camera_mode: CameraMode | None = None
    # What the bytes are (the upload gate sniffs them); None on versions stored before it did.
    media_type: str | None = None


class SkippedFile(_Edge):
    """A file the upload gate left out, and why (``code``: the error it would be on its own)."""

    name: str
    reason: str
    code: str
    # Where it was (the CLI's path inside the folder); None for a file sent over the wire.
    origin: str | None = None


class RebuiltFrom(_Edge):
    """A rebuild's source: the version whose uploaded files it reuses, and the builder
    thresholds the rebuild was asked for (``PipelineConfig`` fields; None: the defaults)."""

    version: int = Field(ge=1)
    thresholds: dict[str, Any] | None = None


class UploadedInputs(_Edge):
    """A version made from uploaded files; the build reads these."""

    files: list[UploadedFile] = Field(min_length=1)
    behavior_policy: BehaviorPolicy | None = None
    voice: VoiceProfile | None = None
    # Drift lines the uploader sets; they win over the calibrated ones.
    refresh_policy: RefreshLines | None = None
    # Set on a rebuild (``persona-core rebuild``, the rebuild job): which version, which thresholds.
    rebuilt_from: RebuiltFrom | None = None
    # Files the upload gate skipped (no accepted format) and what it noted (a name that said
    # another format than the bytes, a duplicate name relabelled).
    skipped: list[SkippedFile] = []
    notes: list[str] = []


class ImportedFrom(_Edge):
    persona_id: PersonaId
    version: int = Field(ge=1)
    content_hash: Sha256Hex
    pack_sha256: Sha256Hex
    # The pack's own build time (its created_at): the version row's created and published times
    # are those of the import. None on versions imported before this was recorded.
    built_at: str | None = None


class ImportedInputs(_Edge):
    """A version published from a ``.personapack`` archive: the pack, without its inputs."""

    imported_from: ImportedFrom


def _shape(doc: Any) -> str:
    if isinstance(doc, Mapping):
        return "imported" if "imported_from" in doc else "uploaded"
    return "imported" if isinstance(doc, ImportedInputs) else "uploaded"


RecordedInputs = Annotated[
    Annotated[UploadedInputs, Tag("uploaded")] | Annotated[ImportedInputs, Tag("imported")],
    Discriminator(_shape),
]
_RECORDED: TypeAdapter[UploadedInputs | ImportedInputs] = TypeAdapter(RecordedInputs)


def parse_inputs(doc: Mapping[str, Any], where: str = "version inputs") -> UploadedInputs | ImportedInputs:
    """``doc`` as the inputs it is; InvalidVersionInputsError naming ``where`` and the first problem."""
    try:
        return _RECORDED.validate_python(dict(doc))
    except ValidationError as exc:
        first = exc.errors()[0]
        # The location starts with the shape it was read as ("uploaded.files: ...").
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidVersionInputsError(f"{where}: {loc}: {message}") from None


def inputs_of(record: VersionRecord) -> UploadedInputs | ImportedInputs:
    """What ``record`` was made from (see the module docstring)."""
    return parse_inputs(record.inputs, f"{record.persona_id} v{record.version} inputs")


def uploaded_inputs(record: VersionRecord) -> UploadedInputs:
    """The uploaded files ``record`` holds, to build (or build again) from; NotRebuildableError
    for an imported version, which holds none."""
    inputs = inputs_of(record)
    if isinstance(inputs, ImportedInputs):
        src = inputs.imported_from
        raise NotRebuildableError(
            f"{record.persona_id} v{record.version} was imported from a .personapack archive "
            f"({src.persona_id} v{src.version}, content {src.content_hash[:12]}); an archive carries "
            "the pack, not the photos it was built from, so there is nothing to build it from"
        )
    return inputs
