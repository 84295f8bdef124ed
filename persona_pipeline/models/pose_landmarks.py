"""MediaPipe pose landmark model ("full", 33 body points, Apache-2.0) on onnxruntime.

Used for framing evidence only (how much of the body is in the frame, where the hands are).
MediaPipe feeds it a box around the person from its own pose detector; here the box comes
from the face instead: a square of ``roi_face_heights`` face heights, its centre that many
face heights below the face, where the hips of a standing person are. Parts of the box
beyond the photo are black, so landmarks of body parts out of the frame land outside it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.graph_cache import file_session
from persona_core.vision.imageutil import check_bgr
from persona_pipeline.models.base import BBox, Pose, PoseEstimator

N_BODY = 33
NOSE, SHOULDER_L, SHOULDER_R, ELBOW_L, ELBOW_R, WRIST_L, WRIST_R = 0, 11, 12, 13, 14, 15, 16
HIP_L, HIP_R, KNEE_L, KNEE_R, ANKLE_L, ANKLE_R = 23, 24, 25, 26, 27, 28


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


class PoseLandmarkModel(PoseEstimator):
    """``pose(image)``: 33 body landmarks of the (main) person in a photo."""

    def __init__(
        self, entry: ModelEntry, weights: Path, providers: tuple[str, ...], cache_dir: Path | None = None
    ) -> None:
        self.entry = entry
        self.size = int(entry.preprocessing["size"])
        self.roi_face_heights = float(entry.preprocessing["roi_face_heights"])
        self.roi_center_below = float(entry.preprocessing["roi_center_below"])
        made = file_session(entry.name, tuple(f.sha256 for f in entry.files), weights, cache_dir, providers)
        self._session, self.graph_from_cache = made.session, made.from_cache
        self._input = self._session.get_inputs()[0].name
        outputs = [o.name for o in self._session.get_outputs()]
        self._wanted = [outputs[0], outputs[1]]  # landmarks (1, 195), pose presence (1, 1)

    def pose(self, image_bgr: np.ndarray, face_bbox: BBox | None = None) -> Pose:
        """Body landmarks of the person whose face is ``face_bbox`` (x, y, w, h), or of the
        whole photo letterboxed when no face box is given."""
        image = check_bgr(image_bgr)
        h, w = image.shape[:2]
        if face_bbox is not None and face_bbox[3] > 0:
            fx, fy, fw, fh = (float(v) for v in face_bbox)
            side = fh * self.roi_face_heights
            cx, cy = fx + fw / 2, fy + fh / 2 + fh * self.roi_center_below
        else:
            side = float(max(h, w))
            cx, cy = w / 2, h / 2
        scale = self.size / side
        m = np.array([[scale, 0, self.size / 2 - cx * scale], [0, scale, self.size / 2 - cy * scale]])
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = cv2.warpAffine(image, m, (self.size, self.size), flags=interp,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32)[None] * (1.0 / 255.0)
        raw, flag = self._session.run(self._wanted, {self._input: x})
        lm = raw.reshape(-1, 5)[:N_BODY].astype(np.float64)
        pts = np.column_stack([(lm[:, 0] - m[0, 2]) / scale, (lm[:, 1] - m[1, 2]) / scale]).astype(np.float32)
        vis = _sigmoid(lm[:, 3]).astype(np.float32)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        vis = np.where(inside, vis, 0.0).astype(np.float32)
        presence = float(np.asarray(flag).ravel()[0])
        if not 0.0 <= presence <= 1.0:
            presence = float(_sigmoid(np.asarray(presence)))
        return Pose(pts, vis, presence)


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...],
          cache_dir: Path) -> PoseLandmarkModel:
    return PoseLandmarkModel(entry, paths[0], providers, cache_dir)
