"""InsightFace model packs (buffalo_l, buffalo_s, antelopev2) from a local model dir:
the SCRFD detector and the ArcFace recognizer, run directly on onnxruntime.

The weights are licensed for non-commercial research only, so the registry builds these only
with an explicit opt-in. No ``insightface`` package is needed: the pre/post-processing below is
the packs' published one (SCRFD distance decoding over strides 8/16/32, ArcFace 112x112 RGB)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.base import Detection, FaceDetector, IdentityEmbedder, ModelEntry
from persona_core.vision.errors import BadModelInputError, ModelUnavailableError
from persona_core.vision.imageutil import check_bgr
from persona_core.vision.sessions import make_session
from persona_core.vision.sface import l2_normalise


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression; ``boxes`` are (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= threshold]
    return keep


def anchor_centers(height: int, width: int, stride: int, per_cell: int) -> np.ndarray:
    """(height * width * per_cell, 2) anchor centres (x, y) in input pixels, row-major."""
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).astype(np.float32) * stride
    centers = centers.reshape(-1, 2)
    return np.repeat(centers, per_cell, axis=0) if per_cell > 1 else centers


class ScrfdDetector(FaceDetector):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...]) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.strides = tuple(int(s) for s in pre["strides"])
        self.per_cell = int(pre["anchors_per_cell"])
        self.mean, self.std = float(pre["mean"]), float(pre["std"])
        self.score_threshold = float(pre["score_threshold"])
        self.nms_threshold = float(pre["nms_threshold"])
        self._session = make_session(weights, providers)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        fixed = [d for d in inp.shape[2:] if isinstance(d, int)]
        # A graph exported at a fixed size must be fed that size; otherwise the entry's.
        self.input_hw = (fixed[0], fixed[1]) if len(fixed) == 2 else tuple(int(v) for v in pre["input_size"])
        n_out = len(self._session.get_outputs())
        if n_out != 3 * len(self.strides):
            raise ModelUnavailableError(
                f"{entry.name}: SCRFD graph has {n_out} outputs, expected scores/bboxes/kps per stride "
                f"({3 * len(self.strides)})"
            )
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        ih, iw = self.input_hw
        h, w = image.shape[:2]
        # Keep the aspect ratio, paste at the top-left of a zero canvas (as the packs do).
        scale = min(ih / h, iw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(
            image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / self.std, (iw, ih), (self.mean,) * 3, swapRB=True)
        return blob, scale

    def _centers_for(self, stride: int) -> np.ndarray:
        ih, iw = self.input_hw
        key = (ih // stride, iw // stride, stride)
        with self._lock:
            if key not in self._centers:
                self._centers[key] = anchor_centers(key[0], key[1], stride, self.per_cell)
            return self._centers[key]

    def decode(self, outputs: list[np.ndarray], scale: float) -> list[Detection]:
        """Detections (image pixels) from the raw per-stride SCRFD outputs of one image."""
        n = len(self.strides)
        boxes, kpss, scores = [], [], []
        for idx, stride in enumerate(self.strides):
            score = outputs[idx].reshape(-1)
            dist = outputs[idx + n].reshape(-1, 4) * stride
            kdist = outputs[idx + 2 * n].reshape(-1, 10) * stride
            centers = self._centers_for(stride)
            if len(centers) != len(score):
                raise ModelUnavailableError(
                    f"{self.entry.name}: stride {stride} output does not match the input size"
                )
            pos = np.where(score >= self.score_threshold)[0]
            if pos.size == 0:
                continue
            c = centers[pos]
            boxes.append(np.concatenate([c - dist[pos, :2], c + dist[pos, 2:]], axis=1))
            kpss.append((np.tile(c, 5) + kdist[pos]).reshape(-1, 5, 2))
            scores.append(score[pos])
        if not scores:
            return []
        all_boxes = np.concatenate(boxes) / scale
        all_kps = np.concatenate(kpss) / scale
        all_scores = np.concatenate(scores)
        found = []
        for i in nms(all_boxes, all_scores, self.nms_threshold):
            x1, y1, x2, y2 = (float(v) for v in all_boxes[i])
            found.append(
                Detection((x1, y1, x2 - x1, y2 - y1), all_kps[i].astype(np.float32), float(all_scores[i]))
            )
        found.sort(key=lambda d: d.score, reverse=True)
        return found

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first, in image pixel coordinates."""
        image = check_bgr(image_bgr)
        blob, scale = self._prepare(image)
        outputs = self._session.run(None, {self._input: blob})
        h, w = image.shape[:2]
        found = []
        for d in self.decode(outputs, scale):
            x, y, bw, bh = d.bbox
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            if x1 > x0 and y1 > y0:
                found.append(Detection((x0, y0, x1 - x0, y1 - y0), d.landmarks, d.score))
        return found

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images_bgr]


class ArcFaceEmbedder(IdentityEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...]) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.crop_size = int(pre["crop_size"])
        self.mean, self.std = float(pre["mean"]), float(pre["std"])
        self._session = make_session(weights, providers)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        # Packs exported with batch 1 (some glintr100 copies) are fed one crop at a time.
        self._fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] == 1
        out_dim = self._session.get_outputs()[0].shape[-1]
        self.dim = int(out_dim) if isinstance(out_dim, int) else int(pre["dim"])

    def embed(self, aligned_crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised, from ArcFace-aligned 112x112 BGR uint8 crops."""
        if len(aligned_crops_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        for i, crop in enumerate(aligned_crops_bgr):
            check_bgr(crop, f"crop {i}")
            if crop.shape[:2] != (self.crop_size, self.crop_size):
                raise BadModelInputError(f"crop {i}: expected {self.crop_size}x{self.crop_size}")
        size = (self.crop_size, self.crop_size)
        blob = cv2.dnn.blobFromImages(aligned_crops_bgr, 1.0 / self.std, size, (self.mean,) * 3, swapRB=True)
        if self._fixed_batch:
            out = np.concatenate(
                [self._session.run(None, {self._input: blob[i : i + 1]})[0] for i in range(len(blob))]
            )
        else:
            out = self._session.run(None, {self._input: blob})[0]
        return l2_normalise(out.reshape(len(blob), -1))


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> ScrfdDetector | ArcFaceEmbedder:
    kind = entry.preprocessing["kind"]
    if kind == "scrfd":
        return ScrfdDetector(entry, paths[0], providers)
    if kind == "arcface":
        return ArcFaceEmbedder(entry, paths[0], providers)
    raise ModelUnavailableError(f"{entry.name}: unknown InsightFace model kind {kind!r}")
