"""Model entries and the interfaces of the models the runtime loads (face detection and
identity). One module per backend implements one of these; the registry (``registry.py``) maps
names to entries and ``load_model(name)`` builds them once per process. The builder's own
interfaces (style, matting, voice, the tag models) are ``persona_pipeline.models.base``'s.
Only numpy here: the runtime can import the types without OpenCV or onnxruntime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class WeightFile:
    filename: str
    sha256: str
    # Where the file can come from, tried in order: the local model dir, a file kept in the
    # project ("vendored:<file>", in its entry's ``weights_dir``), a file inside an installed
    # package ("package:<dist>/<path inside site-packages>"), an official URL (download is off
    # by default and always checksum-verified).
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
    task: str  # one of registry.TASKS
    backend: str  # module of persona_core.vision ("yunet") or a full dotted module path
    files: tuple[WeightFile, ...]
    licence: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    commercial_use: bool = True  # False = the user must opt in explicitly (recorded in the pack)
    default: bool = False
    identity_scale: IdentityScale | None = None  # identity models with a measured scale
    # The folder holding this entry's "vendored:" files (with their NOTICE): the weights
    # travel with the package that uses them.
    weights_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose, right mouth, left mouth
    score: float


class Model(ABC):
    entry: ModelEntry
    # What inference runs on, set by the registry from ran_on(): reported by `persona-core info`
    # and in a pack's provenance.
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    weight_paths: tuple[Path, ...] = ()  # the files loaded (set by the registry)
    # True when the backend loaded its optimized graph from the model cache (graph_cache.py)
    # instead of building it from the weights; None for a backend without one.
    graph_from_cache: bool | None = None

    def ran_on(self) -> tuple[str, ...]:
        """The execution providers this model's onnxruntime session (``_session``) got, best
        first: CUDAExecutionProvider only where CUDA really loaded, not where it was asked for.
        A model that onnxruntime does not run says what runs it instead (``providers``, e.g.
        ``opencv:cpu``, ``torch:cuda``)."""
        session = getattr(self, "_session", None)
        if session is None:
            return self.providers
        return tuple(str(p) for p in session.get_providers())

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
