"""Interfaces of the builder's own models, one per task: style, matting, voice, and the tag
models (face mesh, pose landmarks, expression classifier). One module per backend implements
one; the shared registry builds them (``persona_pipeline.models`` has the typed loaders).
Only numpy here: the types import without OpenCV or onnxruntime."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from persona_core.vision.base import Model

BBox = tuple[float, float, float, float]  # x, y, w, h in image pixels
# A voice clip under this RMS is silence (about -80 dBFS): the inputs step refuses it with a
# reason, and the voice backends refuse it from direct callers.
SILENCE_RMS = 1e-4


class StyleEmbedder(Model):
    dim: int

    @abstractmethod
    def embed(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised image features."""


class Matter(Model):
    @abstractmethod
    def mask(self, images_bgr: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, an HxW uint8 alpha mask (255 = person) at the image's size."""


class VoiceEmbedder(Model):
    dim: int
    sample_rate: int = 16000

    @abstractmethod
    def embed(self, wav: np.ndarray) -> np.ndarray:
        """(dim,) float32, L2-normalised speaker embedding of a mono float32 clip at sample_rate."""


@dataclass(frozen=True, slots=True)
class FaceMesh:
    points: np.ndarray  # (468, 3) float32: x, y in image pixels, z (depth, smaller = nearer) same scale
    presence: float  # 0-1: how sure the model is that the crop holds a face


@dataclass(frozen=True, slots=True)
class Pose:
    points: np.ndarray  # (33, 2) float32, image pixels (may lie outside the frame)
    visibility: np.ndarray  # (33,) 0-1: the point is in the frame and not hidden
    presence: float  # 0-1: a person is in the photo

    def visible(self, index: int, threshold: float = 0.5) -> bool:
        return bool(self.visibility[index] >= threshold)


class FaceMesher(Model):
    @abstractmethod
    def mesh(self, image_bgr: np.ndarray, bbox: BBox, landmarks: np.ndarray | None = None) -> FaceMesh:
        """The mesh of the face in ``bbox``; ``landmarks`` (the detector's 5 points) level the
        crop when given."""


class PoseEstimator(Model):
    @abstractmethod
    def pose(self, image_bgr: np.ndarray, face_bbox: BBox | None = None) -> Pose:
        """Body landmarks of the person whose face is ``face_bbox``, or of the whole photo."""


class ExpressionClassifier(Model):
    labels: tuple[str, ...]

    @abstractmethod
    def scores(self, image_bgr: np.ndarray, bbox: BBox) -> dict[str, float]:
        """Per class label, its probability for the face in ``bbox``."""
