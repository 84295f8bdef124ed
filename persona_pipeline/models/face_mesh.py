"""MediaPipe face landmark model (468-point mesh, Apache-2.0) on onnxruntime.

The graph takes a 192x192 RGB 0-1 crop of one face with a margin around it and returns 468
(x, y, z) points in crop pixels plus a face-presence logit. The crop here is a square around the
detector's box, turned so the eyes are level (the model was trained on level faces); points are
mapped back to image pixels, z scaled like x and y.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.graph_cache import file_session
from persona_core.vision.imageutil import check_bgr
from persona_pipeline.models.base import BBox, FaceMesh, FaceMesher

N_POINTS = 468


class FaceMeshModel(FaceMesher):
    """``mesh(image, bbox, landmarks)``: the face's 468-point mesh in image coordinates."""

    def __init__(
        self, entry: ModelEntry, weights: Path, providers: tuple[str, ...], cache_dir: Path | None = None
    ) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.size = int(pre["size"])
        self.margin = float(pre["box_scale"])
        made = file_session(entry.name, tuple(f.sha256 for f in entry.files), weights, cache_dir, providers)
        self._session, self.graph_from_cache = made.session, made.from_cache
        self._input = self._session.get_inputs()[0].name

    def crop_transform(self, bbox: BBox, landmarks: np.ndarray | None) -> np.ndarray:
        """The 2x3 affine from image pixels to the model's input square."""
        x, y, w, h = (float(v) for v in bbox)
        cx, cy = x + w / 2, y + h / 2
        angle = 0.0
        if landmarks is not None:
            lm = np.asarray(landmarks, np.float64).reshape(-1, 2)
            dx, dy = lm[1] - lm[0]  # right eye -> left eye (image left -> right for a frontal face)
            angle = math.degrees(math.atan2(dy, dx))
        side = max(w, h) * self.margin
        m = cv2.getRotationMatrix2D((cx, cy), angle, self.size / side)
        m[0, 2] += self.size / 2 - cx
        m[1, 2] += self.size / 2 - cy
        return m

    def mesh(self, image_bgr: np.ndarray, bbox: BBox, landmarks: np.ndarray | None = None) -> FaceMesh:
        """The mesh of the face in ``bbox`` (x, y, w, h); ``landmarks`` (the detector's 5 points)
        level the crop when given."""
        image = check_bgr(image_bgr)
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise BadModelInputError(f"face box {bbox} is empty")
        m = self.crop_transform(bbox, landmarks)
        crop = cv2.warpAffine(image, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)[None] * (1.0 / 255.0)
        raw, presence = self._session.run(None, {self._input: x})
        pts = raw.reshape(N_POINTS, 3).astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        scale = math.hypot(inv[0, 0], inv[1, 0])
        out = np.column_stack([xy, pts[:, 2] * scale]).astype(np.float32)
        return FaceMesh(out, float(1.0 / (1.0 + math.exp(-float(np.asarray(presence).ravel()[0])))))


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...],
          cache_dir: Path) -> FaceMeshModel:
    return FaceMeshModel(entry, paths[0], providers, cache_dir)
