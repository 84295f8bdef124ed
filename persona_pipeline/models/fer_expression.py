"""FER-2013 expression classifier (the ``fer`` package's quantized model, converted to ONNX).

The weights were trained on FER-2013, whose terms are research-only: the registry entry is
not for commercial use, so it runs only when the builder opts in, and the pack records it.
Input: a 64x64 grayscale face crop, ``(v / 255 - 0.5) * 2``; output: 7 softmax scores.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.imageutil import check_bgr
from persona_core.vision.sessions import make_session
from persona_pipeline.models.base import BBox, ExpressionClassifier


class FerExpressionModel(ExpressionClassifier):
    """``scores(image, bbox)``: per FER class, its probability for the face in ``bbox``."""

    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...]) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.size = int(pre["size"])
        self.margin = float(pre["box_margin"])
        self.labels: tuple[str, ...] = tuple(pre["labels"])
        self._session = make_session(weights, providers)
        self._input = self._session.get_inputs()[0].name

    def scores(self, image_bgr: np.ndarray, bbox: BBox) -> dict[str, float]:
        image = check_bgr(image_bgr)
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise BadModelInputError(f"face box {bbox} is empty")
        side = max(w, h) * (1.0 + 2 * self.margin)
        cx, cy = x + w / 2, y + h / 2
        m = np.array([[self.size / side, 0, self.size / 2 - cx * self.size / side],
                      [0, self.size / side, self.size / 2 - cy * self.size / side]], np.float64)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        crop = cv2.warpAffine(gray, m, (self.size, self.size), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)
        inp = ((crop.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
        probs = np.asarray(self._session.run(None, {self._input: inp})[0], np.float64).ravel()
        if probs.min() < 0 or abs(probs.sum() - 1.0) > 1e-3:  # a graph that ends in logits
            probs = np.exp(probs - probs.max())
            probs /= probs.sum()
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...],
          cache_dir: Path) -> FerExpressionModel:
    return FerExpressionModel(entry, paths[0], providers)
