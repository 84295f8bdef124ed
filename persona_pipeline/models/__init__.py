"""The builder's own models: style, matting and voice backends, and the tag models (face mesh,
pose landmarks, the opt-in expression classifier), with their vendored weights in ``weights/``.

``BUILDER_ENTRIES`` is the one list of them. ``register_builder_models()`` adds them to the
shared registry (``persona_core.vision.registry``, which holds the face models builder and
runtime share); importing this package registers nothing. The ``load_*`` functions register
them, then return the task's model as its interface (``base.py``), built once per process.
Importing this package loads neither OpenCV nor onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

from persona_core.vision import registry
from persona_core.vision.base import ModelEntry
from persona_pipeline.models.base import (
    ExpressionClassifier,
    FaceMesher,
    Matter,
    PoseEstimator,
    StyleEmbedder,
    VoiceEmbedder,
)
from persona_pipeline.models.entries import ENTRIES
from persona_pipeline.models.tag_entries import TAG_ENTRIES

BUILDER_ENTRIES: tuple[ModelEntry, ...] = (*ENTRIES, *TAG_ENTRIES)

__all__ = [
    "BUILDER_ENTRIES",
    "load_expression",
    "load_face_mesh",
    "load_matter",
    "load_pose",
    "load_style",
    "load_voice",
    "register_builder_models",
]


def register_builder_models() -> None:
    """Add the builder's models to the shared registry. Idempotent: an entry already there
    unchanged keeps its built model."""
    for entry in BUILDER_ENTRIES:
        if entry not in registry.list_models(entry.task):
            registry.register(entry, replace_existing=True)


def load_style(name: str = "", model_dir: Path | str | None = None, *,
               opt_in_noncommercial: bool = False) -> StyleEmbedder:
    """The style embedder ``name`` ("" = the offline default)."""
    register_builder_models()
    model = registry.load_task_model("style", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, StyleEmbedder):
        raise registry.wrong_kind(model, "StyleEmbedder")
    return model


def load_matter(name: str = "", model_dir: Path | str | None = None, *,
                opt_in_noncommercial: bool = False) -> Matter:
    """The matting model ``name`` ("" = the offline default)."""
    register_builder_models()
    model = registry.load_task_model("matting", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, Matter):
        raise registry.wrong_kind(model, "Matter")
    return model


def load_voice(name: str = "", model_dir: Path | str | None = None, *,
               opt_in_noncommercial: bool = False) -> VoiceEmbedder:
    """The speaker embedder ``name`` ("" = the offline default)."""
    register_builder_models()
    model = registry.load_task_model("voice", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, VoiceEmbedder):
        raise registry.wrong_kind(model, "VoiceEmbedder")
    return model


def load_face_mesh(name: str = "", model_dir: Path | str | None = None, *,
                   opt_in_noncommercial: bool = False) -> FaceMesher:
    """The face mesh model ``name`` ("" = the offline default)."""
    register_builder_models()
    model = registry.load_task_model("face_mesh", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, FaceMesher):
        raise registry.wrong_kind(model, "FaceMesher")
    return model


def load_pose(name: str = "", model_dir: Path | str | None = None, *,
              opt_in_noncommercial: bool = False) -> PoseEstimator:
    """The pose landmark model ``name`` ("" = the offline default)."""
    register_builder_models()
    model = registry.load_task_model("pose", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, PoseEstimator):
        raise registry.wrong_kind(model, "PoseEstimator")
    return model


def load_expression(name: str, model_dir: Path | str | None = None, *,
                    opt_in_noncommercial: bool = False) -> ExpressionClassifier:
    """The expression classifier ``name``: no default, the mesh geometry gives expressions
    without one."""
    register_builder_models()
    model = registry.load_task_model("expression", name, model_dir, opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, ExpressionClassifier):
        raise registry.wrong_kind(model, "ExpressionClassifier")
    return model
