"""YuNet face detector (OpenCV Zoo, int8) through ``cv2.FaceDetectorYN``."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import Detection, FaceDetector, ModelEntry
from persona_core.vision.imageutil import check_bgr, fit_within


class YuNetDetector(FaceDetector):
    providers = ("opencv:cpu",)  # cv2.FaceDetectorYN on OpenCV's CPU target, whatever onnxruntime has

    def __init__(self, entry: ModelEntry, weights: Path) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.max_side = int(pre["max_side"])
        self.score_threshold = float(pre["score_threshold"])
        # create() sets the CPU target, which OpenCV's new DNN engine answers with a WARN line on
        # stderr at every load ("Targets are not supported"): nothing to act on, so not shown.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(weights),
                "",
                (self.max_side, self.max_side),
                self.score_threshold,
                float(pre["nms_threshold"]),
                int(pre["top_k"]),
            )
        finally:
            cv2.utils.logging.setLogLevel(level)
        # FaceDetectorYN keeps per-size state (setInputSize), so one call at a time.
        self._lock = threading.Lock()

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first, in full-image pixel coordinates."""
        image = check_bgr(image_bgr)
        small, scale = fit_within(image, self.max_side)
        with self._lock:
            self._detector.setInputSize((small.shape[1], small.shape[0]))
            _, faces = self._detector.detect(small)
        if faces is None or len(faces) == 0:
            return []
        h, w = image.shape[:2]
        found = []
        for row in faces:
            x, y, bw, bh = (float(v) / scale for v in row[:4])
            # Clip to the frame: YuNet's boxes may start a few pixels outside it.
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
            if x1 <= x0 or y1 <= y0:
                continue
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            found.append(Detection((x0, y0, x1 - x0, y1 - y0), landmarks, float(row[14])))
        found.sort(key=lambda d: d.score, reverse=True)
        return found

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images_bgr]


def build(entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path) -> YuNetDetector:
    return YuNetDetector(entry, paths[0])
