"""Model backend interfaces. One module per backend implements one of these; the
registry (``registry.py``) maps names to entries and ``load_model(name)`` builds them once
per process. Only numpy here: the runtime can import the types without OpenCV or onnxruntime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class WeightFile:
    filename: str
    sha256: str
    # Where the file can come from, tried in order: the local model dir, a file inside an
    # installed package ("package:<dist>/<path inside site-packages>"), an official URL
    # (download is off by default and always checksum-verified).
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityScale:
    """How an identity model's cosine similarities read, measured on public labelled faces:
    the impostor (different people) similarity at p99.9 and the model's default drift lines
    for packs with too few anchors to calibrate. Written by ``bench/measure_identity_scale.py``."""

    impostor_p99_9: float
    impostor_pairs: int
    set_name: str  # which labelled face set(s)
    source: str  # where the photos came from, and their terms
    default_warn: float  # genuine faces rarely fall below this (leave-one-out p1 minus a margin)
    default_fail: float  # impostor p99.9 plus a margin
    genuine_loo_p1: float | None = None
    method: str = "bench/measure_identity_scale.py"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    task: str  # detect | identity | style | matting | voice
    backend: str  # module of persona_core.vision ("yunet") or a full dotted module path
    files: tuple[WeightFile, ...]
    licence: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    commercial_use: bool = True  # False = the user must opt in explicitly (recorded in the pack)
    default: bool = False
    identity_scale: IdentityScale | None = None  # identity models with a measured scale


@dataclass(frozen=True, slots=True)
class Detection:
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose, right mouth, left mouth
    score: float


class Model(ABC):
    entry: ModelEntry
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    @property
    def weights_sha256(self) -> list[str]:
        return [f.sha256 for f in self.entry.files]


class FaceDetector(Model):
    @abstractmethod
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first."""


class IdentityEmbedder(Model):
    dim: int
    crop_size: int = 112

    @abstractmethod
    def embed(self, aligned_crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised, from ArcFace-aligned BGR uint8 crops."""


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
