"""ONNX person matting (u2netp, u2net, MODNet): image in, HxW uint8 alpha out.

One backend for every single-input matting graph; the entry's preprocessing constants say how
to size, scale and normalise the input and how to read the output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.graph_cache import file_session
from persona_core.vision.imageutil import check_bgr
from persona_pipeline.models.base import Matter


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


class OnnxMatter(Matter):
    def __init__(
        self, entry: ModelEntry, weights: Path, providers: tuple[str, ...], cache_dir: Path | None = None
    ) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self._size: Any = pre["size"]
        self._multiple = int(pre.get("multiple_of", 1))
        self._scale = pre.get("scale", 1 / 255)
        std = np.asarray(pre["std"], np.float32)
        self._mean = np.asarray(pre["mean"], np.float32).reshape(1, 1, 3)
        self._inv_std = (1.0 / std).reshape(1, 1, 3)
        self._output = int(pre.get("output", 0))
        self._range = pre.get("output_range", "unit")
        made = file_session(entry.name, tuple(f.sha256 for f in entry.files), weights, cache_dir, providers)
        self._session, self.graph_from_cache = made.session, made.from_cache
        self._input = self._session.get_inputs()[0].name

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self._size, (tuple, list)):
            return int(self._size[0]), int(self._size[1])
        # A number: the shorter side goes to it, both sides snap to the model's stride.
        scale = float(self._size) / min(h, w)
        return _round_to(h * scale, self._multiple), _round_to(w * scale, self._multiple)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        th, tw = self.input_size(*image.shape[:2])
        interp = cv2.INTER_AREA if th * tw < image.shape[0] * image.shape[1] else cv2.INTER_LINEAR
        rgb = cv2.cvtColor(cv2.resize(image, (tw, th), interpolation=interp), cv2.COLOR_BGR2RGB)
        x = rgb.astype(np.float32)
        if self._scale == "divide by the image max":
            x *= 1.0 / max(float(x.max()), 1.0)  # u2net was trained this way (rembg)
        else:
            x *= float(self._scale)
        x -= self._mean
        x *= self._inv_std
        return x.transpose(2, 0, 1)[None]

    def _alpha(self, raw: np.ndarray, h: int, w: int) -> np.ndarray:
        pred = np.squeeze(raw).astype(np.float32)
        if self._range == "minmax":
            lo, hi = float(pred.min()), float(pred.max())
            pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
        pred = np.clip(pred, 0.0, 1.0)
        alpha = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.rint(alpha * 255.0).astype(np.uint8)

    def mask(self, images_bgr: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, an HxW uint8 alpha mask (255 = person) at the image's own size."""
        masks = []
        for i, image in enumerate(images_bgr):
            checked = check_bgr(image, f"image {i}")
            raw = self._session.run(None, {self._input: self._prepare(checked)})[self._output]
            masks.append(self._alpha(raw, *checked.shape[:2]))
        return masks


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path) -> OnnxMatter:
    return OnnxMatter(entry, paths[0], providers, cache_dir)
