"""ArcFace 5-point alignment: the canonical 112x112 face crop every identity model here expects."""

from __future__ import annotations

import cv2
import numpy as np

from persona_core.vision.errors import BadModelInputError

# The standard ArcFace/InsightFace template for a 112x112 crop: right eye, left eye (image
# left to right), nose tip, right and left mouth corners; same order as Detection.landmarks.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def alignment_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The 2x3 similarity transform taking the 5 ``landmarks`` onto the template at ``size``."""
    points = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise BadModelInputError(f"expected 5 finite (x, y) landmarks, got shape {points.shape}")
    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    # A similarity (rotation + uniform scale + shift) keeps the face's proportions; LMEDS
    # tolerates one badly placed point (e.g. an occluded mouth corner).
    matrix, _ = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)
    if matrix is None:
        raise BadModelInputError("landmarks are degenerate (all points collinear or equal)")
    return matrix


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """A ``size`` x ``size`` BGR uint8 crop of the face, aligned to the ArcFace template."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise BadModelInputError("expected an HxWx3 BGR image")
    matrix = alignment_matrix(landmarks, size)
    return cv2.warpAffine(
        image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
