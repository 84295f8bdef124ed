"""What a renderer needs to know about a face, read from its 468-point mesh (pure numpy).

Head pose from the mesh's own 3-D points (the ear-to-ear and forehead-to-chin axes), offset
so a frontal face reads about 0; eye openness per eye (eye aspect ratio); mouth openness; a
smile score; and expression classes from the geometry, each with a confidence. A low
confidence expression is reported as neutral with that confidence, never as a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Mesh indices (MediaPipe face mesh topology). "Right" = the subject's right (image left).
_CHEEK_R, _CHEEK_L = 234, 454
_FOREHEAD, _CHIN = 10, 152
_EYE_R = (33, 133, ((160, 144), (159, 145), (158, 153)))
_EYE_L = (263, 362, ((387, 373), (386, 374), (385, 380)))
_LIP_TOP, _LIP_BOTTOM = 13, 14
_MOUTH_R, _MOUTH_L = 61, 291
_BROW_R_MID, _BROW_L_MID = 105, 334

EXPRESSIONS = ("neutral", "happy", "surprised", "sad", "angry")


@dataclass(frozen=True, slots=True)
class MeshCalibration:
    """Offsets and scales that turn raw mesh geometry into calibrated measures.

    Defaults were measured on frontal, neutral, open-eyed photos (``bench/eval_tags.py``
    reports how they do on the labelled set)."""

    yaw_offset: float = 0.0
    pitch_offset: float = 0.0
    yaw_gain: float = 1.0
    eye_closed_ratio: float = 0.12  # eye aspect ratio of a closed eye (and below)
    eye_open_ratio: float = 0.26  # ... of a plainly open eye (and above)
    mouth_closed_ratio: float = 0.04  # inner-lip gap / mouth width at or below: closed
    mouth_open_ratio: float = 0.30  # ... plainly open
    # Smile cue = mouth width / inter-ocular distance + corner lift: a smile widens the mouth
    # and lifts its corners; talking opens it without either.
    smile_low: float = 0.60  # cue at which happy starts to be likely
    smile_high: float = 0.68  # ... plainly happy
    brow_raise_low: float = 0.03  # brow height above its neutral, per inter-ocular distance
    brow_raise_high: float = 0.10
    brow_frown_low: float = 0.03
    brow_frown_high: float = 0.08
    corner_drop_low: float = 0.04
    corner_drop_high: float = 0.10
    neutral_brow: float = 0.19  # brow-to-eyelid height / inter-ocular distance, neutral face
    neutral_corner: float = -0.03  # mouth-corner lift / mouth width on a neutral face
    min_confidence: float = 0.5  # below: the expression is reported as neutral


DEFAULT_CALIBRATION = MeshCalibration()


@dataclass(frozen=True, slots=True)
class FaceMeasures:
    yaw: float  # degrees, + = nose toward the image's right side
    pitch: float  # degrees, + = looking down
    roll: float  # degrees, + = head tilted clockwise in the image
    eye_open_right: float  # 0 (closed) - 1 (open)
    eye_open_left: float
    eye_ratio_right: float  # raw eye aspect ratios
    eye_ratio_left: float
    mouth_open: float  # 0 (closed) - 1 (wide open)
    mouth_ratio: float  # raw inner-lip gap / mouth width
    smile: float  # 0 - 1
    brow_raise: float  # signed, per inter-ocular distance, vs a neutral face
    corner_lift: float  # signed mouth-corner lift per mouth width
    expression: str
    expression_confidence: float
    expression_scores: dict[str, float]

    @property
    def eyes_open(self) -> float:
        """Openness of the less open eye: a wink or one closed eye is not 'eyes open'."""
        return min(self.eye_open_right, self.eye_open_left)


def _ramp(value: float, low: float, high: float) -> float:
    if high <= low:
        return 1.0 if value >= high else 0.0
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a[:2] - b[:2])))


def _eye_ratio(p: np.ndarray, eye: tuple[int, int, tuple[tuple[int, int], ...]]) -> float:
    outer, inner, pairs = eye
    width = max(_dist(p[outer], p[inner]), 1e-6)
    return float(np.mean([_dist(p[a], p[b]) for a, b in pairs]) / width)


def head_pose(points: np.ndarray, cal: MeshCalibration = DEFAULT_CALIBRATION) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's 3-D axes."""
    p = np.asarray(points, np.float64)
    across = p[_CHEEK_L] - p[_CHEEK_R]  # image left -> right on a frontal face
    down = p[_CHIN] - p[_FOREHEAD]
    across /= max(float(np.linalg.norm(across)), 1e-9)
    down -= float(down @ across) * across
    down /= max(float(np.linalg.norm(down)), 1e-9)
    roll = math.degrees(math.atan2(across[1], across[0]))
    # The far cheek is deeper (larger z): nose toward the image's right = + yaw.
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, across[2])))) * cal.yaw_gain - cal.yaw_offset
    # Chin deeper than forehead = looking down.
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, down[2])))) - cal.pitch_offset
    return round(yaw, 2), round(pitch, 2), round(roll, 2)


def _face_frame(p: np.ndarray) -> np.ndarray:
    """2-D points with the roll undone (eye line horizontal), y down."""
    eye_r, eye_l = p[_EYE_R[0], :2], p[_EYE_L[0], :2]
    dx, dy = eye_l - eye_r
    a = -math.atan2(dy, dx)
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s], [s, c]])
    return (p[:, :2] - (eye_r + eye_l) / 2) @ rot.T


def measure(points: np.ndarray, cal: MeshCalibration = DEFAULT_CALIBRATION) -> FaceMeasures:
    """Every measure of one face from its (468, 3) mesh in image pixels."""
    p = np.asarray(points, np.float64)
    if p.shape != (468, 3):
        raise ValueError(f"expected a (468, 3) mesh, got {p.shape}")
    yaw, pitch, roll = head_pose(p, cal)
    f = _face_frame(p)
    iod = max(float(np.linalg.norm(f[_EYE_L[0]] - f[_EYE_R[0]])), 1e-6)
    er, el = _eye_ratio(p, _EYE_R), _eye_ratio(p, _EYE_L)
    mouth_w = max(float(np.linalg.norm(f[_MOUTH_L] - f[_MOUTH_R])), 1e-6)
    mouth_ratio = float(np.linalg.norm(f[_LIP_BOTTOM] - f[_LIP_TOP])) / mouth_w
    # Corners against the upper lip, which stays put when the jaw drops (talking, surprise).
    corner_y = (f[_MOUTH_R, 1] + f[_MOUTH_L, 1]) / 2
    corner_lift = float(f[_LIP_TOP, 1] - corner_y) / mouth_w - cal.neutral_corner  # + = corners up
    # Brow height over the upper eyelid, per inter-ocular distance (outer corners).
    brow = float(np.mean([f[_EYE_R[2][1][0], 1] - f[_BROW_R_MID, 1],
                          f[_EYE_L[2][1][0], 1] - f[_BROW_L_MID, 1]])) / iod
    brow_raise = brow - cal.neutral_brow
    mouth_open = _ramp(mouth_ratio, cal.mouth_closed_ratio, cal.mouth_open_ratio)
    width_ratio = mouth_w / iod
    smile = _ramp(width_ratio + corner_lift + cal.neutral_corner, cal.smile_low, cal.smile_high)
    scores = expression_scores(smile, mouth_open, brow_raise, corner_lift, cal=cal)
    label, conf = decide(scores, cal.min_confidence)
    return FaceMeasures(
        yaw=yaw, pitch=pitch, roll=roll,
        eye_open_right=round(_ramp(er, cal.eye_closed_ratio, cal.eye_open_ratio), 4),
        eye_open_left=round(_ramp(el, cal.eye_closed_ratio, cal.eye_open_ratio), 4),
        eye_ratio_right=round(er, 4), eye_ratio_left=round(el, 4),
        mouth_open=round(mouth_open, 4), mouth_ratio=round(mouth_ratio, 4), smile=round(smile, 4),
        brow_raise=round(brow_raise, 4), corner_lift=round(corner_lift, 4),
        expression=label, expression_confidence=round(conf, 4),
        expression_scores={k: round(v, 4) for k, v in scores.items()},
    )


def expression_scores(smile: float, mouth_open: float, brow_raise: float, corner_lift: float,
                      *, cal: MeshCalibration) -> dict[str, float]:
    """A 0-1 evidence score per class from the geometry; neutral is what the others leave."""
    raised = _ramp(brow_raise, cal.brow_raise_low, cal.brow_raise_high)
    frown = _ramp(-brow_raise, cal.brow_frown_low, cal.brow_frown_high)
    drop = _ramp(-corner_lift, cal.corner_drop_low, cal.corner_drop_high)
    happy = smile
    # Surprise: the jaw drops and the brows go up; a dropped jaw alone reads half-way.
    surprised = _ramp(mouth_open, 0.5, 1.0) * (0.5 + 0.5 * raised) * (1.0 - smile)
    sad = drop * (1.0 - smile) * (1.0 - mouth_open)
    angry = frown * (1.0 - smile) * (1.0 - 0.5 * raised)
    other = max(happy, surprised, sad, angry)
    return {"neutral": 1.0 - other, "happy": happy, "surprised": surprised, "sad": sad, "angry": angry}


def decide(scores: dict[str, float], min_confidence: float = 0.5) -> tuple[str, float]:
    """The winning class and its confidence; a winner under ``min_confidence`` is reported as
    neutral with that (low) confidence, never as a confident guess."""
    label = max(scores, key=lambda k: (scores[k], k == "neutral"))
    conf = float(scores[label])
    if conf < min_confidence:
        return "neutral", conf
    return label, conf
