"""The face-model layer that builder and runtime share: a model registry (entries as data,
weights resolved and sha256-verified, loaded typed per task), YuNet detection, ArcFace 5-point
alignment, the SFace identity embedder and the onnxruntime session helpers. The builder's own
models (style, matting, voice, the tag models) live in ``persona_pipeline.models``.

Importing this package (or ``registry``, ``base``, ``errors``, ``entries``) loads neither OpenCV
nor onnxruntime; the backends import them when a model is built (``pip install
persona-core[vision]``). Nothing here imports the pipeline.
"""

from persona_core.vision.base import (
    Detection,
    FaceDetector,
    IdentityEmbedder,
    Model,
    ModelEntry,
    WeightFile,
)
from persona_core.vision.errors import (
    BadModelInputError,
    ModelChecksumError,
    ModelTaskMismatchError,
    ModelUnavailableError,
    NonCommercialModelError,
    UnknownModelError,
)

__all__ = [
    "BadModelInputError",
    "Detection",
    "FaceDetector",
    "IdentityEmbedder",
    "Model",
    "ModelChecksumError",
    "ModelEntry",
    "ModelTaskMismatchError",
    "ModelUnavailableError",
    "NonCommercialModelError",
    "UnknownModelError",
    "WeightFile",
]
