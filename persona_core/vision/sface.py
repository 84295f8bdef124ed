"""SFace identity embedder (OpenCV Zoo 2021dec, int8, 128-d) on onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from persona_core.vision.base import IdentityEmbedder, ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.graph_cache import cached_session
from persona_core.vision.imageutil import check_bgr


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class SFaceEmbedder(IdentityEmbedder):
    def __init__(
        self, entry: ModelEntry, weights: Path, providers: tuple[str, ...], cache_dir: Path | None = None
    ) -> None:
        self.entry = entry
        self.dim = int(entry.preprocessing["dim"])
        self.crop_size = int(entry.preprocessing["crop_size"])

        # OpenCV 5's FaceRecognizerSF asserts on this file and onnxruntime refuses its 29
        # unused inputs, so the graph is pruned (and its int8 weights folded): about a second
        # and the onnx package's import, paid once per weights file and kept in ``cache_dir``.
        def folded() -> bytes:
            from persona_core.vision.onnxutil import fold_weights_and_prune  # noqa: PLC0415 - imports onnx

            return fold_weights_and_prune(weights, ("data",))

        sha = tuple(f.sha256 for f in entry.files) or (entry.name,)
        made = cached_session(
            entry.name, sha, "sface-fold-prune-v1", folded, cache_dir=cache_dir, providers=providers
        )
        self._session = made.session
        self.graph_from_cache = made.from_cache
        self._input = self._session.get_inputs()[0].name

    def embed(self, aligned_crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, 128) float32, L2-normalised, from ArcFace-aligned 112x112 BGR uint8 crops."""
        if len(aligned_crops_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        size = self.crop_size
        batch = np.empty((len(aligned_crops_bgr), 3, size, size), np.float32)
        for i, item in enumerate(aligned_crops_bgr):
            crop = check_bgr(item, f"crop {i}")
            if crop.shape[:2] != (size, size):
                raise BadModelInputError(f"crop {i}: expected {size}x{size}, got {crop.shape[:2]}")
            batch[i] = crop.transpose(2, 0, 1)  # SFace takes raw 0-255 BGR, no normalisation
        return l2_normalise(self._session.run(None, {self._input: batch})[0])


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path) -> SFaceEmbedder:
    return SFaceEmbedder(entry, paths[0], providers, cache_dir)
