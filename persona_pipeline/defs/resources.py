"""Resources: the stores (from persona_core Settings, opened and closed by Dagster's set-up
and tear-down hooks), the models (loaded lazily, once per process) and the pipeline config
(a PipelineConfig). Nothing here reads the environment; the settings module does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr, SecretStr

from persona_core.settings import ModelSettings, Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.tracked import TrackedBlobStore
from persona_core.vision.base import FaceDetector, IdentityEmbedder
from persona_core.vision.errors import ModelTaskMismatchError, NonCommercialModelError
from persona_core.vision.registry import (
    default_model_name,
    get_entry,
    is_built,
    load_detector,
    load_identity,
)
from persona_pipeline.models import (
    load_expression,
    load_face_mesh,
    load_matter,
    load_pose,
    load_style,
    load_voice,
    register_builder_models,
)
from persona_pipeline.models.base import Matter, StyleEmbedder, VoiceEmbedder
from persona_pipeline.run_tags import PARTITION_TAG, run_version, tag_build_run
from persona_pipeline.steps.config import PipelineConfig

if TYPE_CHECKING:
    from persona_pipeline.steps.qc import FaceTaggers

BUILD_JOB = "build_persona_version"
REBUILD_JOB = "rebuild_newest_version"

__all__ = ["BUILD_JOB", "PARTITION_TAG", "REBUILD_JOB", "ModelsResource", "PipelineConfigResource",
           "StoresResource"]


class StoresResource(dg.ConfigurableResource):
    """Blob + metadata stores, opened on first use and closed in Dagster's tear-down hook.

    ``settings`` holds :class:`~persona_core.settings.Settings` fields by name (``{"home":
    "/data"}``); every other field comes from the ``PERSONA_*`` environment, read by the
    settings module (embedded default: SQLite file and blob folder under ``PERSONA_HOME``).
    The build lease of a run is not held here: see the ``build_lease`` resource.
    """

    settings_fields: dict[str, Any] = Field(default_factory=dict, description="Settings fields by name.")
    _meta: MetadataStore | None = PrivateAttr(default=None)
    _blobs: BlobStore | None = PrivateAttr(default=None)
    _version: tuple[str, int] | None = PrivateAttr(default=None)  # a build run's version

    @classmethod
    def from_settings(cls, settings: Settings) -> StoresResource:
        doc = settings.model_dump(mode="json")
        for name, value in settings:
            if isinstance(value, SecretStr):
                doc[name] = value.get_secret_value()
        return cls(settings_fields={k: v for k, v in doc.items() if v is not None})

    def settings(self) -> Settings:
        return Settings(**self.settings_fields)

    def blobs(self) -> BlobStore:
        """The blob store; in a build run, one that records every blob and object the run
        writes as held by its version (what erasure finds and GC keeps)."""
        if self._blobs is None:
            self._blobs = open_blob_store(self.settings())
        if self._version is not None:
            return TrackedBlobStore(self._blobs, self.meta().refs, *self._version)
        return self._blobs

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A build run of any job (the build job, the UI's asset job): its blobs are its
        # version's, and the run carries the persona tags however it was launched.
        self._version = run_version(context.run)
        if self._version is not None and context.instance is not None:
            tag_build_run(context.instance, context.run)

    def meta(self) -> MetadataStore:
        if self._meta is None:
            self._meta = open_metadata_store(self.settings())
        return self._meta

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._blobs is not None:
            self._blobs.close()
        if self._meta is not None:
            self._meta.close()
        self._blobs = self._meta = None


# Each ModelsResource field and the registry task its model must serve.
_MODEL_TASKS = {"detector": "detect", "identity": "identity", "style": "style", "matting": "matting",
                "voice": "voice", "face_mesh": "face_mesh", "pose": "pose", "expression": "expression"}
# The ModelsResource fields whose default is a setting (PERSONA_<setting>).
_MODEL_SETTINGS = {"detector": "detector_model", "identity": "identity_model", "style": "style_model",
                   "voice": "voice_model", "expression": "expression_model"}


class ModelsResource(dg.ConfigurableResource):
    """Model names from the registry. A field left "" takes its setting (``PERSONA_DETECTOR_MODEL``,
    ``PERSONA_IDENTITY_MODEL``, ``PERSONA_STYLE_MODEL``, ``PERSONA_VOICE_MODEL``,
    ``PERSONA_EXPRESSION_MODEL``, ``PERSONA_MODEL_DIR``), read by the settings module when a run
    uses the resource, so a sensor-launched run builds with the models its environment names;
    a setting left empty too means the task's offline default. ``PERSONA_ALLOW_NONCOMMERCIAL``
    opts in as ``opt_in_noncommercial`` does. The voice model is only loaded when a version has
    voice clips, the matting model only when masks are on."""

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
    _model_settings: ModelSettings | None = PrivateAttr(default=None)

    def model_settings(self) -> ModelSettings:
        if self._model_settings is None:
            self._model_settings = ModelSettings()
        return self._model_settings

    def name_of(self, field: str) -> str:
        """The registry name behind ``field`` (one of this class's model fields): the field,
        else its setting; "" = the task's default."""
        own = str(getattr(self, field))
        setting = _MODEL_SETTINGS.get(field)
        return own or (str(getattr(self.model_settings(), setting)) if setting else "")

    def folder(self) -> str | None:
        """The model dir: the field, else ``PERSONA_MODEL_DIR``."""
        chosen = self.model_settings().model_dir
        return self.model_dir or (str(chosen) if chosen is not None else None)

    def allows_noncommercial(self) -> bool:
        return self.opt_in_noncommercial or self.model_settings().allow_noncommercial

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Checked as the run sets up, before its first step and before its build lease claims
        # the version: a bad Launchpad choice fails the run and leaves every version as it was.
        self.check_choice()

    def check_choice(self) -> None:
        """Each named model is registered for its field's task and, when its weights are for
        non-commercial use only, opted in to: the typed error of the first that is not. Loads
        no weights."""
        register_builder_models()
        for field, task in _MODEL_TASKS.items():
            name = self.name_of(field)
            if not name:
                continue
            entry = get_entry(name)
            if entry.task != task:
                raise ModelTaskMismatchError(f"models.{field}: {name!r} is a {entry.task} model, not {task}")
            if not entry.commercial_use and not self.allows_noncommercial():
                raise NonCommercialModelError(
                    f"models.{field}: {name!r} is licensed {entry.licence}; set opt_in_noncommercial to use "
                    "it (PERSONA_ALLOW_NONCOMMERCIAL=1, persona-core --allow-noncommercial)")

    def unloaded(self, *fields: str) -> list[str]:
        """The names of the models behind ``fields`` (this class's model fields) that this
        process has not built yet; a model turned off (masks, no expression classifier) is none."""
        register_builder_models()
        names = []
        for field in fields:
            name = self.name_of(field)
            if (field == "matting" and not self.masks) or (field == "expression" and not name):
                continue
            task = _MODEL_TASKS[field]
            if not is_built(task, name, self.folder()):
                names.append(name or default_model_name(task))
        return names

    def detector_model(self) -> FaceDetector:
        return load_detector(self.name_of("detector"), self.folder(),
                             opt_in_noncommercial=self.allows_noncommercial())

    def identity_model(self) -> IdentityEmbedder:
        return load_identity(self.name_of("identity"), self.folder(),
                             opt_in_noncommercial=self.allows_noncommercial())

    def style_model(self) -> StyleEmbedder:
        return load_style(self.name_of("style"), self.folder(),
                          opt_in_noncommercial=self.allows_noncommercial())

    def matting_model(self) -> Matter | None:
        if not self.masks:
            return None
        return load_matter(self.name_of("matting"), self.folder(),
                           opt_in_noncommercial=self.allows_noncommercial())

    def voice_model(self) -> VoiceEmbedder:
        return load_voice(self.name_of("voice"), self.folder(),
                          opt_in_noncommercial=self.allows_noncommercial())

    def taggers(self) -> FaceTaggers:
        """The face mesh, pose and (when named) expression models behind the anchor tags."""
        from persona_pipeline.steps.qc import FaceTaggers  # noqa: PLC0415 - loads OpenCV

        opt_in, folder = self.allows_noncommercial(), self.folder()
        expression_name = self.name_of("expression")
        expression = (load_expression(expression_name, folder, opt_in_noncommercial=opt_in)
                      if expression_name else None)
        return FaceTaggers(load_face_mesh(self.name_of("face_mesh"), folder, opt_in_noncommercial=opt_in),
                           load_pose(self.name_of("pose"), folder, opt_in_noncommercial=opt_in), expression)


class PipelineConfigResource(dg.ConfigurableResource):
    """The builder's thresholds: ``thresholds`` holds
    :class:`~persona_pipeline.steps.config.PipelineConfig` fields by name (the defaults for
    the rest), validated by that class when a run starts. In the Launchpad, for one run:
    ``resources: {pipeline_config: {config: {thresholds: {min_anchors_per_mode: {A_SELFIE: 1}}}}}``."""

    thresholds: dict[str, Any] = Field(default_factory=dict, description="PipelineConfig fields by name.")

    @classmethod
    def from_config(cls, config: PipelineConfig) -> PipelineConfigResource:
        return cls(thresholds=config.as_dict())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Checked as the run sets up, before its first step and before its build lease claims
        # the version: a bad Launchpad config fails the run and leaves every version as it was.
        self.to_config()

    def to_config(self) -> PipelineConfig:
        return PipelineConfig.from_dict(self.thresholds)
