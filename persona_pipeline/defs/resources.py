"""Resources: the stores (from persona_core Settings), the models (loaded lazily, once per
process) and the pipeline config. Nothing reads the environment at import time."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import dagster as dg
from pydantic import Field, SecretStr

from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.stores import open_blob_store, open_metadata_store
from persona_pipeline.steps.config import PipelineConfig

_DEFAULTS = PipelineConfig()


class StoresResource(dg.ConfigurableResource):
    """Blob + metadata stores. Unset fields come from ``PERSONA_*`` settings (embedded
    default: SQLite file and blob folder under ``PERSONA_HOME``)."""

    home: str | None = None
    database_url: str | None = None
    blob_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StoresResource:
        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        return cls(home=str(settings.home), database_url=settings.database_url, blob_url=settings.blob_url,
                   s3_endpoint_url=settings.s3_endpoint_url, s3_access_key=settings.s3_access_key,
                   s3_secret_key=secret, s3_region=settings.s3_region)

    def settings(self) -> Settings:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return Settings(**given)

    def blobs(self) -> BlobStore:
        settings = self.settings()
        # Secrets are part of the key (model_dump_json would mask them as "**********").
        key = tuple(sorted((k, str(v.get_secret_value() if isinstance(v, SecretStr) else v))
                           for k, v in settings))
        with _LOCK:
            if key not in _BLOB_STORES:
                _BLOB_STORES[key] = open_blob_store(settings)
            return _BLOB_STORES[key]

    def meta(self) -> MetadataStore:
        return _metadata_store(self.settings().resolved_database_url)


_BLOB_STORES: dict[tuple[tuple[str, str], ...], BlobStore] = {}
_LOCK = threading.Lock()


@cache
def _metadata_store(url: str) -> MetadataStore:
    # Opening migrates the schema: once per process and URL, not once per asset.
    return open_metadata_store(Settings(database_url=url))


class ModelsResource(dg.ConfigurableResource):
    """Model names from the registry ("" = the task's offline default). The voice model is
    only loaded when a version has voice clips, the matting model only when masks are on."""

    detector: str = ""
    identity: str = ""
    style: str = ""
    matting: str = ""
    voice: str = ""
    face_mesh: str = ""
    pose: str = ""
    # "" = expression from the face mesh geometry (offline, permissive); a classifier such as
    # "fer2013-expression" (research-only weights) needs opt_in_noncommercial.
    expression: str = ""
    masks: bool = True
    model_dir: str | None = None
    # Non-commercial weights (InsightFace packs) load only with this set; packs record it.
    opt_in_noncommercial: bool = False

    def _load(self, task: str, name: str) -> Any:
        from persona_pipeline.models import registry  # noqa: PLC0415 - heavy; only when a run needs it

        if name:
            return registry.load_model(name, model_dir=self.model_dir,
                                       opt_in_noncommercial=self.opt_in_noncommercial)
        return registry.default_model(task, model_dir=self.model_dir)

    def detector_model(self) -> Any:
        return self._load("detect", self.detector)

    def identity_model(self) -> Any:
        return self._load("identity", self.identity)

    def style_model(self) -> Any:
        return self._load("style", self.style)

    def matting_model(self) -> Any | None:
        return self._load("matting", self.matting) if self.masks else None

    def voice_model(self) -> Any:
        return self._load("voice", self.voice)

    def taggers(self) -> Any:
        """The face mesh, pose and (when named) expression models behind the anchor tags."""
        from persona_pipeline.steps.qc import FaceTaggers  # noqa: PLC0415 - loads OpenCV

        return FaceTaggers(self._load("face_mesh", self.face_mesh), self._load("pose", self.pose),
                           self._load("expression", self.expression) if self.expression else None)


class PipelineConfigResource(dg.ConfigurableResource):
    """The builder's thresholds (see ``persona_pipeline.steps.config.PipelineConfig``)."""

    required_modes: list[str] = Field(default_factory=lambda: list(_DEFAULTS.required_modes))
    min_anchors_per_mode: dict[str, int] = Field(default_factory=lambda: dict(_DEFAULTS.min_anchors_per_mode))
    max_anchors_per_mode: int = _DEFAULTS.max_anchors_per_mode
    min_image_side_px: int = _DEFAULTS.min_image_side_px
    min_face_px: int = _DEFAULTS.min_face_px
    blur_min: float = _DEFAULTS.blur_min
    max_abs_yaw: float = _DEFAULTS.max_abs_yaw
    max_abs_pitch: float = _DEFAULTS.max_abs_pitch
    max_outside_fraction: float = _DEFAULTS.max_outside_fraction
    min_face_score: float = _DEFAULTS.min_face_score
    second_face_rel_size: float = _DEFAULTS.second_face_rel_size
    dark_luma: float = _DEFAULTS.dark_luma
    bright_luma: float = _DEFAULTS.bright_luma
    qc_decode_min_side: int = _DEFAULTS.qc_decode_min_side
    max_image_pixels: int = _DEFAULTS.max_image_pixels
    selfie_face_frac: float = _DEFAULTS.selfie_face_frac
    mirror_face_frac: float = _DEFAULTS.mirror_face_frac
    min_eye_open: float = _DEFAULTS.min_eye_open
    mouth_closed_max: float = _DEFAULTS.mouth_closed_max
    min_mesh_score: float = _DEFAULTS.min_mesh_score
    expression_min_confidence: float = _DEFAULTS.expression_min_confidence
    mirror_min_cue: float = _DEFAULTS.mirror_min_cue
    instability_floor: float = _DEFAULTS.instability_floor
    instability_k: float = _DEFAULTS.instability_k
    instability_min_spread: float = _DEFAULTS.instability_min_spread
    duplicate_identity_sim: float = _DEFAULTS.duplicate_identity_sim
    duplicate_style_sim: float = _DEFAULTS.duplicate_style_sim
    diversity_weight: float = _DEFAULTS.diversity_weight
    video_frames_per_second: float = _DEFAULTS.video_frames_per_second
    video_max_frames: int = _DEFAULTS.video_max_frames
    frame_duplicate_distance: int = _DEFAULTS.frame_duplicate_distance
    portrait_size: int = _DEFAULTS.portrait_size
    workers: int = _DEFAULTS.workers

    @classmethod
    def from_config(cls, config: PipelineConfig) -> PipelineConfigResource:
        return cls(**config.as_dict())

    def to_config(self) -> PipelineConfig:
        return PipelineConfig.from_dict(self.model_dump())
