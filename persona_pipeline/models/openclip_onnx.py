"""OpenCLIP image tower as ONNX (style embedder), from a local model dir.

The tower is exported once wherever open_clip and its weights live; at run time only
onnxruntime and the entry's preprocessing constants (CLIP mean/std, bicubic 224 centre crop)
are needed, so neither torch nor torchvision has to import."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.imageutil import center_crop_square, check_bgr
from persona_core.vision.sessions import make_session
from persona_core.vision.sface import l2_normalise
from persona_pipeline.models.base import StyleEmbedder


class OpenClipOnnxStyle(StyleEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...]) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.size = int(pre["size"])
        mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
        self._mul = (float(pre["scale"]) / std).reshape(1, 1, 3).astype(np.float32)
        self._add = (-mean / std).reshape(1, 1, 3).astype(np.float32)
        self._session = make_session(weights, providers)
        self._input = self._session.get_inputs()[0].name
        out_dim = self._session.get_outputs()[0].shape[-1]
        self.dim = int(out_dim) if isinstance(out_dim, int) else int(pre["dim"])

    def embed(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised CLIP image features of BGR uint8 images."""
        if len(images_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = np.empty((len(images_bgr), self.size, self.size, 3), np.float32)
        for i, image in enumerate(images_bgr):
            crop = center_crop_square(check_bgr(image, f"image {i}"), self.size, cv2.INTER_CUBIC)
            np.multiply(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), self._mul, out=batch[i])
            batch[i] += self._add
        out = self._session.run(None, {self._input: np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0]
        return l2_normalise(out.reshape(len(images_bgr), -1))


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> OpenClipOnnxStyle:
    return OpenClipOnnxStyle(entry, paths[0], providers)
