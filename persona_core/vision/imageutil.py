"""Input checks and resizing shared by the image backends."""

from __future__ import annotations

import cv2
import numpy as np

from persona_core.vision.errors import BadModelInputError


def check_bgr(image: object, what: str = "image") -> np.ndarray:
    """``image`` as a contiguous HxWx3 uint8 array, or BadModelInputError."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        shape = getattr(image, "shape", None)
        raise BadModelInputError(f"{what}: expected an HxWx3 BGR uint8 array, got shape {shape}")
    if image.dtype != np.uint8:
        raise BadModelInputError(f"{what}: expected dtype uint8, got {image.dtype}")
    return np.ascontiguousarray(image)


def fit_within(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its longest side is at most ``max_side``, and the scale applied."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def center_crop_square(image: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """Shorter side resized to ``size``, then the central ``size`` x ``size`` square.

    Without ``interpolation``: area averaging when shrinking, bilinear when enlarging."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if interpolation is not None:
        interp = interpolation
    else:
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]
