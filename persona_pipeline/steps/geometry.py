"""Face geometry from the detector's 5 landmarks: coarse head pose, a smile cue, and
how much of a face box lies beyond the frame.

These are estimates, not a 3-D fit: good enough to tag anchors and to reject strongly
turned or cut-off faces, which is all the builder needs them for.
"""

from __future__ import annotations

import math

import numpy as np

# Width / height of an unclipped YuNet face box, measured on frontal portraits (0.68-0.79).
FACE_ASPECT = 0.72
# Nose offset / inter-ocular distance at which a face is turned ~90 degrees.
_YAW_FULL = 0.6


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees; landmarks are right eye, left eye, nose, mouth R, mouth L."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_r, eye_l = lm[0], lm[1]
    dx, dy = eye_l - eye_r
    roll = math.degrees(math.atan2(dy, dx))
    # Undo roll so yaw and pitch are read along the face's own axes.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    eye_mid = (eye_r + eye_l) / 2
    pts = (lm - eye_mid) @ rot.T
    iod = max(float(np.hypot(dx, dy)), 1e-6)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, pts[2, 0] / iod / _YAW_FULL))))
    mouth_y = (pts[3, 1] + pts[4, 1]) / 2
    # The nose sits about half-way between eye line and mouth line in a level face.
    t = pts[2, 1] / mouth_y if mouth_y > 1e-6 else 0.5
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (t - 0.5) * 2.5))))
    return round(yaw, 2), round(pitch, 2), round(roll, 2)


def mouth_ratio(landmarks: np.ndarray) -> float:
    """Mouth width / inter-ocular distance: a smile widens the mouth (> ~0.9)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    iod = max(float(np.linalg.norm(lm[1] - lm[0])), 1e-6)
    return round(float(np.linalg.norm(lm[4] - lm[3])) / iod, 4)


def outside_fraction(bbox: tuple[float, float, float, float], width: int, height: int) -> float:
    """Estimated share of the face beyond the frame, from a box the detector clipped to it.

    A box touching a side edge and narrower than a whole face is missing the difference.
    """
    x, y, w, h = bbox
    frac = 0.0
    edge = 2.0
    if (x <= edge or x + w >= width - edge) and h > 0:
        frac = max(frac, 1.0 - (w / h) / FACE_ASPECT)
    if (y <= edge or y + h >= height - edge) and w > 0:
        frac = max(frac, 1.0 - h / (w / FACE_ASPECT))
    return round(max(0.0, frac), 4)
