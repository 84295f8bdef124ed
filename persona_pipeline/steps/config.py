"""Builder configuration: every threshold the steps and checks use, in one frozen value.

The Dagster side exposes the same fields as a resource (``defs/resources.py``); steps
take this plain dataclass so they stay testable without Dagster. ``fingerprint`` feeds
the per-input cache keys, so changing a threshold recomputes what it affects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from persona_core.errors import InvalidInputError
from persona_core.pack import CameraMode

MODES: tuple[str, ...] = tuple(m.value for m in CameraMode)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    # Anchor gate (blocking ERROR check): each required mode needs this many anchors.
    required_modes: tuple[str, ...] = ("A_SELFIE",)
    min_anchors_per_mode: dict[str, int] = field(
        default_factory=lambda: {"A_SELFIE": 3, "B_MIRROR": 2, "C_CUTAWAY": 2}
    )
    max_anchors_per_mode: int = 8
    # Per-image QC.
    min_image_side_px: int = 256
    min_face_px: int = 64
    blur_min: float = 15.0  # variance of Laplacian on the face, resized to 128 px high
    max_abs_yaw: float = 50.0
    max_abs_pitch: float = 40.0
    max_outside_fraction: float = 0.15  # face box fraction beyond the frame -> partial face
    # A second face counts when it is at least this fraction of the largest face's height;
    # tiny faces far in the background do not make a photo a two-person shot.
    second_face_rel_size: float = 0.35
    dark_luma: float = 45.0
    bright_luma: float = 200.0
    min_face_score: float = 0.85  # below: likely occluded or not a clear face
    # QC decodes JPEGs at 1/2, 1/4 or 1/8 scale while the longer side stays at least this.
    qc_decode_min_side: int = 1280
    # Refused from the header alone, before any decode: a small file can claim a huge image.
    max_image_pixels: int = 40_000_000
    # No longer read (camera mode now comes from its evidence, ``steps/framing.py``); kept so
    # configs saved with them still load.
    selfie_face_frac: float = 0.4
    mirror_face_frac: float = 0.2
    # Face mesh QC and tags (0-1 measures, see persona_pipeline.models.face_measures).
    # The less open eye below: "eyes closed" (0.25 = eye aspect ratio 0.155: squeezed-shut eyes
    # read 0.13-0.15 on the mesh, a smiling squint 0.16-0.18).
    min_eye_open: float = 0.25
    mouth_closed_max: float = 0.3  # mouth openness at or below: tagged mouth_closed
    min_mesh_score: float = 0.5  # face mesh face-presence below: "face occluded"
    expression_min_confidence: float = 0.5  # below: tagged neutral with that confidence
    mirror_min_cue: float = 0.6  # B_MIRROR is inferred only on a mirror cue at least this
    # Canonical anchor per mode (steps/canonical.py), what a single-reference renderer starts
    # from: neutral with at least this confidence (under 0.7, another expression's evidence is
    # above 0.3), head within these angles (renderers ask for a near-frontal face), face
    # sharpness score at least this (0.5: variance of Laplacian about 7x blur_min).
    canonical_min_neutral_confidence: float = 0.7
    canonical_max_abs_yaw: float = 20.0
    canonical_max_abs_pitch: float = 20.0
    canonical_min_sharpness: float = 0.5
    # Identity stability (WARN): outlier when its median similarity to the others is below
    # max(floor, median - k * max(1.4826 * MAD, min_spread)).
    instability_floor: float = 0.35
    instability_k: float = 3.0
    instability_min_spread: float = 0.1
    # Near-duplicate anchors: both identity and style this similar -> keep the better one.
    duplicate_identity_sim: float = 0.93
    duplicate_style_sim: float = 0.9
    diversity_weight: float = 0.2
    # Video sampling.
    video_frames_per_second: float = 1.0
    video_max_frames: int = 30
    frame_duplicate_distance: int = 6  # dHash Hamming distance at or below = same frame
    # Crops stored as blobs.
    portrait_size: int = 256
    # Decode/detect worker threads (OpenCV and onnxruntime release the GIL).
    workers: int = 2

    def __post_init__(self) -> None:
        for mode in self.required_modes:
            if mode not in MODES:
                raise InvalidInputError(f"unknown camera mode {mode!r} in required_modes (use {MODES})")
        for mode, count in self.min_anchors_per_mode.items():
            if mode not in MODES or count < 0:
                raise InvalidInputError(f"min_anchors_per_mode[{mode!r}] = {count} is not valid")
        if self.max_anchors_per_mode < 1 or self.workers < 1 or self.video_max_frames < 1:
            raise InvalidInputError("max_anchors_per_mode, workers and video_max_frames must be >= 1")
        if self.video_frames_per_second <= 0:
            raise InvalidInputError("video_frames_per_second must be > 0")

    def min_anchors(self, mode: str) -> int:
        return self.min_anchors_per_mode.get(mode, 1)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["required_modes"] = list(self.required_modes)
        return doc

    def fingerprint(self, *names: str) -> str:
        """sha256 over the named fields (all fields when none are named)."""
        doc = self.as_dict()
        body = {k: doc[k] for k in names} if names else doc
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PipelineConfig:
        """Fields by name (the defaults for the rest), each checked against its type and range;
        InvalidInputError naming the first unknown key or bad value."""
        if not isinstance(doc, Mapping):
            raise InvalidInputError("pipeline config must be an object of PipelineConfig fields")
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(f"unknown pipeline config keys: {sorted(unknown)}")
        try:
            return _ADAPTER.validate_python(dict(doc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise InvalidInputError(f"pipeline config {where}: {message}" if where
                                    else f"pipeline config: {message}") from None


_ADAPTER = TypeAdapter(PipelineConfig)
