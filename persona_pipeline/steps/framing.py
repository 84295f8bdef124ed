"""Framing (close / medium / wide) and camera mode with a confidence and the evidence behind it.

Evidence: how big the face is in the frame, how much of the frame lies below the face (in
face heights), which body parts the pose model sees inside the frame, whether the person
faces the camera, and a mirror cue (a hand raised in front of the chest or face, where a
phone is held for a mirror selfie, with the torso in view). ``B_MIRROR`` needs that positive
cue; otherwise the mode is the one the framing supports: close = ``A_SELFIE``, medium or
wide = ``C_CUTAWAY``. An uploader's tag always wins and is recorded as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Body parts in order from the head down, with the pose landmark indices that show them.
_BODY_PARTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("shoulders", (11, 12)),
    ("elbows", (13, 14)),
    ("hips", (23, 24)),
    ("knees", (25, 26)),
    ("ankles", (27, 28)),
)
_WRISTS, _ELBOWS, _SHOULDERS = (15, 16), (13, 14), (11, 12)


@dataclass(frozen=True, slots=True)
class FramingRules:
    visible: float = 0.5  # pose landmark visibility at or above: in view
    # Frame below the face centre, in face heights: head-and-shoulders stop near 2.5, a
    # waist-up shot reaches ~4, a full-length one 7+.
    medium_below: float = 3.0
    wide_below: float = 5.0
    facing_max_yaw: float = 30.0
    mirror_min_cue: float = 0.6
    # A mirror shot shows the phone hand in front of the torso: a head-and-shoulders frame
    # (less than this many face heights below the face) cannot, and the pose model guesses
    # arms there that are not in view.
    mirror_min_below: float = 2.5


DEFAULT_RULES = FramingRules()


@dataclass(frozen=True, slots=True)
class ModeDecision:
    mode: str
    confidence: float
    source: str  # "uploader" | "inferred"
    framing: str  # close | medium | wide
    framing_confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def why(self) -> str:
        """One line a person can read: what the decision rests on."""
        if self.source == "uploader":
            return "tagged by the uploader"
        ev = self.evidence
        parts = [f"{self.framing} framing (face {ev.get('face_frac', 0):.0%} of the frame height, "
                 f"{ev.get('frame_below_face', 0):.1f} face heights of frame below it"
                 + (f", lowest body part in view: {ev['lowest_body_part']}"
                    if ev.get("lowest_body_part") else "")
                 + ")"]
        if self.mode == "B_MIRROR":
            parts.append(f"mirror cue {ev.get('mirror_cue', 0):.2f} (hand raised in front of the body)")
        elif not ev.get("facing_camera", True):
            parts.append("not facing the camera")
        return "; ".join(parts)


def _clip01(v: float) -> float:
    return max(0.0, min(1.0, v))


def body_in_frame(pose: Any, height: int, width: int, rules: FramingRules = DEFAULT_RULES) -> str:
    """The lowest body part the pose model sees inside the frame ("" = none)."""
    lowest = ""
    if pose is None:
        return lowest
    for name, idx in _BODY_PARTS:
        if any(_in_view(pose, i, height, width, rules) for i in idx):
            lowest = name
    return lowest


def _in_view(pose: Any, i: int, height: int, width: int, rules: FramingRules) -> bool:
    x, y = float(pose.points[i][0]), float(pose.points[i][1])
    return float(pose.visibility[i]) >= rules.visible and 0 <= x < width and 0 <= y < height


def mirror_cue(pose: Any, face_bbox: tuple[float, float, float, float], height: int, width: int,
               rules: FramingRules = DEFAULT_RULES) -> float:
    """0-1: a wrist in view, raised to between the chin and mid-chest, in front of the torso
    (between the shoulders), with its elbow in view and below it, the forearm raised rather
    than folded across the body: how a phone is held up to a mirror. A hand on the head or
    raised beside the body is not one."""
    if pose is None:
        return 0.0
    _, fy, _, fh = face_bbox
    if not all(_in_view(pose, i, height, width, rules) for i in _SHOULDERS):
        return 0.0
    left, right = sorted(float(pose.points[i][0]) for i in _SHOULDERS)
    best = 0.0
    for wrist, elbow in zip(_WRISTS, _ELBOWS, strict=True):
        if not (_in_view(pose, wrist, height, width, rules) and _in_view(pose, elbow, height, width, rules)):
            continue
        wx, wy = float(pose.points[wrist][0]), float(pose.points[wrist][1])
        ey = float(pose.points[elbow][1])
        # Full marks from the chin to mid-chest and between the shoulders, falling off over
        # half a face height outside.
        top, bottom = fy + fh, fy + 2.6 * fh
        rise = _clip01(1.0 - max(top - wy, wy - bottom, 0.0) / (0.5 * fh))
        across = _clip01(1.0 - max(left - wx, wx - right, 0.0) / (0.5 * fh))
        ex = float(pose.points[elbow][0])
        # Forearm raised, more up than across (folded arms lie across the body).
        bent = 1.0 if ey > wy + 0.2 * fh and abs(wx - ex) < (ey - wy) else 0.0
        vis = min(float(pose.visibility[wrist]), float(pose.visibility[elbow]))
        best = max(best, rise * across * bent * vis)
    return round(best, 4)


def decide_mode(*, face_bbox: tuple[float, float, float, float], width: int, height: int, yaw: float,
                pose: Any = None, uploader_mode: str = "",
                rules: FramingRules = DEFAULT_RULES) -> ModeDecision:
    """Framing and camera mode of one photo (see the module docstring)."""
    _, fy, _, fh = face_bbox
    fh = max(fh, 1e-6)
    face_frac = min(1.0, fh / max(1, height))
    below = max(0.0, (height - (fy + fh / 2)) / fh)
    lowest = body_in_frame(pose, height, width, rules)
    # Framing from the frame below the face, moved up a class when the pose model sees
    # more of the body than that (a seated or leaning person).
    if below >= rules.wide_below:
        framing, margin = "wide", (below - rules.wide_below) / 2
    elif below >= rules.medium_below:
        framing, margin = "medium", min(below - rules.medium_below, rules.wide_below - below) / 1.5
    else:
        framing, margin = "close", (rules.medium_below - below) / 1.0
    pose_says = {"knees": "wide", "ankles": "wide", "hips": "medium"}.get(lowest, "")
    order = ("close", "medium", "wide")
    agrees = True
    if pose_says and order.index(pose_says) > order.index(framing):
        framing, margin, agrees = pose_says, 0.3, False
    framing_conf = round(0.5 + 0.5 * _clip01(margin) * (1.0 if agrees else 0.6), 4)
    facing = abs(yaw) <= rules.facing_max_yaw
    cue = mirror_cue(pose, face_bbox, height, width, rules) if below >= rules.mirror_min_below else 0.0
    evidence: dict[str, Any] = {
        "face_frac": round(face_frac, 4),
        "frame_below_face": round(below, 2),
        "lowest_body_part": lowest or "none",
        "facing_camera": facing,
        "mirror_cue": cue,
    }
    if uploader_mode:
        return ModeDecision(uploader_mode, 1.0, "uploader", framing, framing_conf, evidence)
    if cue >= rules.mirror_min_cue:
        return ModeDecision("B_MIRROR", round(min(cue, framing_conf + 0.2), 4), "inferred", framing,
                            framing_conf, evidence)
    if framing == "close":
        conf = framing_conf * (1.0 if facing else 0.7)
        return ModeDecision("A_SELFIE", round(conf, 4), "inferred", framing, framing_conf, evidence)
    return ModeDecision("C_CUTAWAY", framing_conf, "inferred", framing, framing_conf, evidence)
