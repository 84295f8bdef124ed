"""PersonaPack: the versioned, immutable identity pack, its canonical JSON and content hash.

The pydantic models here are the pack's JSON form (an edge type). They generate
``schemas/persona_pack.schema.json``; a test keeps the committed schema and these types
from drifting apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from persona_core.errors import InvalidNameError
from persona_core.refs import REF_PATTERN, find_refs, parse_ref

SCHEMA_VERSION: Final = "1.0"

BlobRefStr = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# One persona id syntax everywhere: lowercase, digits, '_' and '-', safe as a path segment.
PERSONA_ID_BODY = r"[a-z0-9][a-z0-9_-]{0,62}"
PERSONA_ID_PATTERN = f"^{PERSONA_ID_BODY}$"
PersonaId = Annotated[str, StringConstraints(pattern=PERSONA_ID_PATTERN)]
# Python's `$` also matches before a final "\n": match the whole string, always.
PERSONA_ID_RE = re.compile(PERSONA_ID_BODY)


def check_persona_id(persona_id: object) -> str:
    """``persona_id`` if it is a valid persona id (the whole string), else InvalidNameError."""
    if not isinstance(persona_id, str) or PERSONA_ID_RE.fullmatch(persona_id) is None:
        raise InvalidNameError(
            f"bad persona id {persona_id!r}: lowercase letters, digits, '_', '-' (max 63)"
        )
    return persona_id

Score = Annotated[float, Field(ge=0.0, le=1.0)]

# Fields left out of the content hash: they change with every build of the same content.
VOLATILE_FIELDS = ("content_hash", "created_at", "version")
VOLATILE_PROVENANCE_FIELDS = ("run_id",)


class CameraMode(StrEnum):
    A_SELFIE = "A_SELFIE"
    B_MIRROR = "B_MIRROR"
    C_CUTAWAY = "C_CUTAWAY"


class Expression(StrEnum):
    NEUTRAL = "neutral"
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"
    SURPRISED = "surprised"


class Lighting(StrEnum):
    DARK = "dark"
    DIM = "dim"
    NORMAL = "normal"
    BRIGHT = "bright"
    HARSH = "harsh"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadPose(_Model):
    yaw: Annotated[float, Field(ge=-180, le=180)]
    pitch: Annotated[float, Field(ge=-180, le=180)]
    roll: Annotated[float, Field(ge=-180, le=180)]


class BoolTag(_Model):
    """A yes/no tag measured on the anchor, with how sure the measurement is."""

    value: bool
    confidence: Score


class CameraModeTag(_Model):
    """Why the anchor is in its mode: the uploader's tag, or inferred from the evidence
    (face size, frame below the face, body in frame, facing the camera, a mirror cue)."""

    value: CameraMode
    confidence: Score
    source: Literal["uploader", "inferred"]
    framing: Literal["close", "medium", "wide"]
    evidence: dict[str, str | float | bool] = {}


class RenderCriterion(StrEnum):
    """What a single-reference renderer wants of its first frame, most important first."""

    MOUTH_CLOSED = "mouth_closed"
    NEUTRAL = "neutral"  # neutral expression, with confidence
    EYES_OPEN = "eyes_open"
    NEAR_FRONTAL = "near_frontal"
    SHARP = "sharp"


class CanonicalChoice(_Model):
    """Why an anchor is its mode's canonical one (the image a single-reference renderer takes):
    the mode's photos are ranked by the render criteria in ``RenderCriterion`` order (a photo
    that meets an earlier one beats every photo that misses it), then by quality."""

    render_ready: bool  # meets every criterion
    met: list[RenderCriterion]
    missed: list[RenderCriterion]
    candidates: Annotated[int, Field(ge=1)]  # the mode's usable photos it was chosen from
    reason: str


def _absent(value: object) -> bool:
    return value is None


class AnchorMetadata(_Model):
    expression_tag: Expression
    head_pose: HeadPose
    lighting_tag: Lighting
    crop_box: Annotated[list[int], Field(min_length=4, max_length=4)]
    best_for: list[str]
    # Tags from the face mesh and the framing (absent in packs built before they existed).
    expression_confidence: Score | None = None
    eyes_open: BoolTag | None = None
    mouth_closed: BoolTag | None = None
    camera_mode: CameraModeTag | None = None
    # On the canonical anchor only. Left out of the JSON when absent, so a pack built before
    # it existed keeps its content hash.
    canonical_choice: CanonicalChoice | None = Field(default=None, exclude_if=_absent)


class AnchorQuality(_Model):
    overall: Score
    sharpness: Score
    exposure: Score
    face_size: Score
    frontalness: Score  # head pose (from the face mesh) against the QC limits
    identity_consistency: Score
    # ISO/IEC 29794-5 components from the face mesh (absent in older packs).
    eyes_open: Score | None = None
    mouth_closed: Score | None = None
    expression_neutrality: Score | None = None


class Anchor(_Model):
    anchor_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
    image_ref: BlobRefStr
    face_crop_ref: BlobRefStr
    mask_ref: BlobRefStr | None = None
    embedding_ref: BlobRefStr
    style_embedding_ref: BlobRefStr
    source_sha256: Sha256Hex
    canonical: bool = False
    metadata: AnchorMetadata
    quality: AnchorQuality


class Identity(_Model):
    face_embedding_refs: list[BlobRefStr]
    embedding_model: str
    embedding_dim: Annotated[int, Field(gt=0)]
    centroid_ref: BlobRefStr
    adapter_refs: list[BlobRefStr] = []


class Style(_Model):
    style_embedding_refs: list[BlobRefStr]
    embedding_model: str
    embedding_dim: Annotated[int, Field(gt=0)]
    stage_constraints: dict[str, str | float | int | bool] = {}


class Range(_Model):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class VoiceProfile(_Model):
    provider_voice_id: str | None = None
    speaker_embedding_ref: BlobRefStr | None = None
    embedding_model: str | None = None
    prosody_bounds: dict[str, Range] = {}
    defaults_applied: bool = False


class BehaviorPolicy(_Model):
    persona_card: str = ""
    emotion_ranges: dict[Expression, Range]
    allowed_gestures: list[str]
    defaults_applied: bool = False


class LeaveOneOut(_Model):
    """Each anchor's cosine to the centroid of the other anchors, summarised."""

    n: Annotated[int, Field(ge=0)]
    min: float | None = None
    p5: float | None = None
    median: float | None = None


class ImpostorScale(_Model):
    """The identity model's impostor similarity (different people), from its registry entry."""

    p99_9: float
    pairs: Annotated[int, Field(ge=0)]
    set_name: str
    source: str


class IdentityCalibration(_Model):
    """How this pack's identity-drift lines were set, with the numbers they came from.

    ``source``: ``calibrated`` (from the anchors' leave-one-out similarities and the model's
    impostor scale), ``pack_only`` (the model has no measured impostor scale: both lines from
    the anchors' leave-one-out similarities alone), ``model_default`` (too few anchors: the
    model's defaults, or the schema's for a model without a measured scale; ``reason`` says
    which) or ``uploader`` (thresholds given with the upload win; the derived ones are kept in
    ``derived_warn`` / ``derived_fail``). ``impostor_scale_measured`` says whether the identity
    model had a measured impostor scale (absent in packs built before it was recorded)."""

    model: str
    source: Literal["calibrated", "pack_only", "model_default", "uploader"]
    method: str
    leave_one_out: LeaveOneOut
    impostor: ImpostorScale | None = None
    derived_warn: float | None = None
    derived_fail: float | None = None
    identity_drift_warn: Score
    identity_drift_fail: Score
    reason: str = ""
    impostor_scale_measured: bool | None = Field(default=None, exclude_if=_absent)


class RefreshPolicy(_Model):
    refresh_every_turns: Annotated[int, Field(gt=0)] = 8
    identity_drift_fail: Score = 0.74
    identity_drift_warn: Score = 0.84
    bg_drift_fail: Score = 0.6
    flicker_fail: Score = 0.6
    # Set by the builder: the identity lines above belong to the pack's identity model.
    identity_calibration: IdentityCalibration | None = None


class InputRecord(_Model):
    name: str
    sha256: Sha256Hex
    kind: Literal["image", "video", "voice"]
    accepted: bool
    reason: str = ""


class ModelRecord(_Model):
    name: str
    task: str
    weights_sha256: list[Sha256Hex]
    licence: str
    # True when the model's licence forbids commercial use and the builder opted in to it.
    noncommercial_opt_in: bool = False
    # What the model ran on in this build: the onnxruntime execution providers its session got,
    # best first (CUDAExecutionProvider only where CUDA really loaded), or "opencv:cpu",
    # "torch:cpu", "torch:cuda". Left out when absent, so a pack built before it keeps its hash.
    providers: list[str] | None = Field(default=None, exclude_if=_absent)


class Provenance(_Model):
    inputs: list[InputRecord]
    models: list[ModelRecord]
    pipeline_version: str
    run_id: str
    config: dict[str, Any] = {}


class CheckResult(_Model):
    name: str
    passed: bool
    severity: Literal["ERROR", "WARN"]
    description: str = ""
    metadata: dict[str, Any] = {}


class PersonaPack(_Model):
    schema_version: Literal["1.0"] = SCHEMA_VERSION
    persona_id: PersonaId
    version: Annotated[int, Field(ge=1)]
    created_at: str
    anchor_sets: dict[CameraMode, list[Anchor]]
    identity: Identity
    style: Style
    voice_profile: VoiceProfile | None = None
    behavior_policy: BehaviorPolicy
    refresh_policy: RefreshPolicy = RefreshPolicy()
    provenance: Provenance
    checks: list[CheckResult] = []
    content_hash: Sha256Hex | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    def compute_content_hash(self) -> str:
        return content_hash(self.to_json_dict())

    def sealed(self) -> PersonaPack:
        """This pack with ``content_hash`` filled in."""
        return self.model_copy(update={"content_hash": self.compute_content_hash()})

    def all_blob_refs(self) -> set[str]:
        """Every blob (row refs collapsed to their matrix) this pack points at: every
        ref-shaped string anywhere in the document, not only ``*_ref`` fields, so a ref
        tucked into provenance config is verified, recorded and exported like the rest."""
        return {parse_ref(r).blob for r in find_refs(self.to_json_dict())}


def canonical_json(doc: Any) -> bytes:
    """Stable bytes: sorted keys, no whitespace, UTF-8. Floats keep Python's repr."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def content_hash(doc: dict[str, Any]) -> str:
    """sha256 over the canonical JSON minus fields that vary between identical builds."""
    body = {k: v for k, v in doc.items() if k not in VOLATILE_FIELDS}
    prov = body.get("provenance")
    if isinstance(prov, dict):
        body["provenance"] = {k: v for k, v in prov.items() if k not in VOLATILE_PROVENANCE_FIELDS}
    return hashlib.sha256(canonical_json(body)).hexdigest()


DEFAULT_EMOTION_RANGES: dict[Expression, Range] = {
    Expression.NEUTRAL: Range(min=0.0, max=1.0),
    Expression.HAPPY: Range(min=0.0, max=0.8),
    Expression.SAD: Range(min=0.0, max=0.5),
    Expression.SURPRISED: Range(min=0.0, max=0.6),
    Expression.ANGRY: Range(min=0.0, max=0.3),
}
DEFAULT_GESTURES = ["nod", "head_tilt", "smile", "blink", "shrug", "hand_wave"]


def default_behavior_policy() -> BehaviorPolicy:
    """Conservative limits used when an upload brings no behaviour config."""
    return BehaviorPolicy(
        persona_card="",
        emotion_ranges=dict(DEFAULT_EMOTION_RANGES),
        allowed_gestures=list(DEFAULT_GESTURES),
        defaults_applied=True,
    )
