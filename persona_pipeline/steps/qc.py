"""Step ``qc``: per image, measurements (resolution, blur, exposure, faces, partial face; from
the face mesh: head pose, eye and mouth openness, smile, expression; from the pose model and
the framing: camera mode with its evidence) and a pass/fail with the reason for every
rejected image.

Measurements are cached per input (they depend on the bytes and the detector only); the
verdict is recomputed from them on every build, so changing a threshold costs nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pandera.pandas as pa

from persona_core.errors import InvalidInputError
from persona_core.pack import Expression, Lighting
from persona_core.store.base import BlobStore
from persona_core.vision.base import FaceDetector, Model
from persona_pipeline.models import face_measures, load_face_mesh, load_pose
from persona_pipeline.models.base import ExpressionClassifier, FaceMesher, PoseEstimator
from persona_pipeline.steps import geometry
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.config import MODES, PipelineConfig
from persona_pipeline.steps.framing import FramingRules, decide_mode
from persona_pipeline.steps.images import decode, image_size, reduction_for
from persona_pipeline.steps.inputs import ImageInput

QC_SCHEMA = pa.DataFrameSchema(
    {
        "name": pa.Column(str),
        "sha256": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{64}$")),
        "width": pa.Column(int, pa.Check.ge(0)),
        "height": pa.Column(int, pa.Check.ge(0)),
        "face_count": pa.Column(int, pa.Check.ge(0)),
        "face_px": pa.Column(int, pa.Check.ge(0)),
        "face_frac": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "face_score": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "outside_frac": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "blur": pa.Column(float, pa.Check.ge(0.0)),
        "luma": pa.Column(float, pa.Check.in_range(0.0, 255.0)),
        "lighting": pa.Column(str, pa.Check.isin([x.value for x in Lighting] + [""])),
        "yaw": pa.Column(float, pa.Check.in_range(-90.0, 90.0)),
        "pitch": pa.Column(float, pa.Check.in_range(-90.0, 90.0)),
        "roll": pa.Column(float, pa.Check.in_range(-180.0, 180.0)),
        "expression": pa.Column(str, pa.Check.isin([x.value for x in Expression] + [""])),
        "expression_confidence": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "eye_open": pa.Column(float, pa.Check.in_range(0.0, 1.0)),  # the less open eye, 0-1
        "mouth_open": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "smile": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "mesh_score": pa.Column(float, pa.Check.in_range(0.0, 1.0)),  # face mesh's face presence
        "framing": pa.Column(str, pa.Check.isin(["close", "medium", "wide", ""])),
        "camera_mode": pa.Column(str, pa.Check.isin([*MODES, ""])),
        "mode_source": pa.Column(str, pa.Check.isin(["uploader", "inferred", ""])),
        "mode_confidence": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "mode_evidence": pa.Column(str),  # JSON: face size, body in frame, facing, mirror cue
        "passed": pa.Column(bool),
        "reason": pa.Column(str),
    },
    checks=[pa.Check(lambda df: (df["passed"] | (df["reason"].str.len() > 0)).all(),
                     error="every rejected image needs a reason")],
    strict=True,
    coerce=False,
)
QC_COLUMNS = list(QC_SCHEMA.columns)
# Bump when face_tags() or face_measures change what they measure (cached measurements go stale).
TAGS_VERSION = 2


@dataclass(frozen=True)
class QcResult:
    table: pd.DataFrame  # validated by QC_SCHEMA, one row per image, input order
    faces: dict[str, dict[str, Any]]  # sha256 -> {"bbox", "landmarks"} of the one face, passed images
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def passed(self) -> pd.DataFrame:
        return self.table[self.table["passed"]]

    def rejected(self) -> list[tuple[str, str]]:
        rows = self.table[~self.table["passed"]]
        return list(zip(rows["name"], rows["reason"], strict=True))


@dataclass(frozen=True)
class FaceTaggers:
    """The models behind the tags: face mesh and pose landmarks (defaults), and an optional
    expression classifier (None = expression from the mesh geometry)."""

    mesh: FaceMesher
    pose: PoseEstimator
    expression: ExpressionClassifier | None = None

    @classmethod
    def default(cls) -> FaceTaggers:
        return cls(load_face_mesh(), load_pose())

    def models(self) -> list[Model]:
        return [m for m in (self.mesh, self.pose, self.expression) if m is not None]


# FER-2013's seven classes folded into the pack's five.
_FER_TO_PACK = {"neutral": "neutral", "happy": "happy", "surprise": "surprised", "fear": "surprised",
                "sad": "sad", "angry": "angry", "disgust": "angry"}


def face_tags(img: np.ndarray, bbox: list[float], landmarks: list[list[float]], scale: float,
              taggers: FaceTaggers) -> dict[str, Any]:
    """Mesh measures, body landmarks and (opt-in) classifier scores of one face, JSON-ready;
    ``img`` is the decoded image, ``bbox``/``landmarks`` at full resolution, ``scale`` their ratio."""
    x, y, w, h = (v / scale for v in bbox)
    box = (x, y, w, h)
    lm = np.asarray(landmarks, np.float64) / scale
    mesh = taggers.mesh.mesh(img, box, lm)
    fm = face_measures.measure(mesh.points)
    pose = taggers.pose.pose(img, box)
    doc: dict[str, Any] = {
        "mesh_score": round(mesh.presence, 4), "yaw": fm.yaw, "pitch": fm.pitch, "roll": fm.roll,
        "eye_open_right": fm.eye_open_right, "eye_open_left": fm.eye_open_left,
        "eye_ratio_right": fm.eye_ratio_right, "eye_ratio_left": fm.eye_ratio_left,
        "mouth_open": fm.mouth_open, "mouth_ratio": fm.mouth_ratio, "smile": fm.smile,
        "brow_raise": fm.brow_raise, "corner_lift": fm.corner_lift,
        "expression_scores": fm.expression_scores,
        "pose_points": np.round(pose.points * scale, 1).tolist(),
        "pose_visibility": np.round(pose.visibility, 3).tolist(),
    }
    if taggers.expression is not None:
        raw = taggers.expression.scores(img, box)
        folded = dict.fromkeys(face_measures.EXPRESSIONS, 0.0)
        for label, p in raw.items():
            folded[_FER_TO_PACK[label]] += p
        doc["classifier_scores"] = {k: round(v, 4) for k, v in folded.items()}
    return doc


@dataclass(frozen=True, slots=True)
class _PoseView:
    points: np.ndarray
    visibility: np.ndarray


def expression_of(tags: dict[str, Any], config: PipelineConfig) -> tuple[str, float]:
    """The expression tag and its confidence: the opt-in classifier's scores when measured,
    else the mesh geometry's; a low-confidence class becomes neutral (see face_measures)."""
    scores = tags.get("classifier_scores") or tags["expression_scores"]
    label, conf = face_measures.decide(scores, min_confidence=config.expression_min_confidence)
    return label, round(conf, 4)


def measure(data: bytes, detector: FaceDetector, config: PipelineConfig,
            taggers: FaceTaggers | None = None) -> dict[str, Any]:
    """Measurements of one image (JSON-ready); ``error`` set when it cannot be read."""
    try:
        width, height = image_size(data)
        if width * height > config.max_image_pixels:
            raise InvalidInputError(f"image too large: {width}x{height} is over "
                                    f"{config.max_image_pixels:,} pixels")
        factor = reduction_for(max(width, height), config.qc_decode_min_side)
        img = decode(data, factor)
    except InvalidInputError as exc:
        return {"error": str(exc), "width": 0, "height": 0, "faces": []}
    scale = width / img.shape[1]
    dets = detector.detect(img)
    faces = []
    for d in dets:
        x, y, w, h = (float(v) * scale for v in d.bbox)
        faces.append({"bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                      "landmarks": np.round(d.landmarks * scale, 2).tolist(), "score": round(d.score, 4)})
    doc: dict[str, Any] = {"error": "", "width": width, "height": height, "faces": faces}
    if faces:
        doc.update(_face_region_stats(img, [v / scale for v in faces[0]["bbox"]]))
        if taggers is not None:
            main = max(faces, key=lambda f: f["bbox"][3])
            doc["tags"] = face_tags(img, main["bbox"], main["landmarks"], scale, taggers)
    return doc


def _face_region_stats(img: np.ndarray, bbox: list[float]) -> dict[str, float]:
    x, y, w, h = (round(v) for v in bbox)
    region = img[max(0, y) : y + h, max(0, x) : x + w]
    if region.size == 0:
        return {"blur": 0.0, "luma": 0.0, "luma_split": 0.0, "clipped": 0.0}
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    # Blur is read at a fixed face height, so it does not depend on resolution.
    side = 128
    norm = cv2.resize(gray, (max(1, round(gray.shape[1] * side / gray.shape[0])), side),
                      interpolation=cv2.INTER_AREA)
    blur = float(cv2.Laplacian(norm, cv2.CV_64F).var())
    half = norm.shape[1] // 2
    split = abs(float(norm[:, :half].mean()) - float(norm[:, half:].mean())) if half else 0.0
    clipped = float(((gray <= 5) | (gray >= 250)).mean())
    return {"blur": round(blur, 2), "luma": round(float(gray.mean()), 2), "luma_split": round(split, 2),
            "clipped": round(clipped, 4)}


def lighting_tag(luma: float, split: float, clipped: float, config: PipelineConfig) -> Lighting:
    if luma < config.dark_luma:
        return Lighting.DARK
    if clipped > 0.2 or split > 45:
        return Lighting.HARSH
    if luma < 85:
        return Lighting.DIM
    if luma > config.bright_luma - 30:
        return Lighting.BRIGHT
    return Lighting.NORMAL


def verdict(item: ImageInput, m: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """One QC table row from the measurements and the thresholds."""
    row: dict[str, Any] = {
        "name": item.name, "sha256": item.sha256, "width": int(m["width"]), "height": int(m["height"]),
        "face_count": 0, "face_px": 0, "face_frac": 0.0, "face_score": 0.0, "outside_frac": 0.0,
        "blur": 0.0, "luma": 0.0, "lighting": "", "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
        "expression": "", "expression_confidence": 0.0, "eye_open": 0.0, "mouth_open": 0.0, "smile": 0.0,
        "mesh_score": 0.0, "framing": "", "camera_mode": "", "mode_source": "", "mode_confidence": 0.0,
        "mode_evidence": "", "passed": False, "reason": "",
    }
    if m["error"]:
        row["reason"] = f"unreadable image: {m['error']}"
        return row
    faces = m["faces"]
    if faces:
        largest = max(f["bbox"][3] for f in faces)
        counted = [f for f in faces if f["bbox"][3] >= config.second_face_rel_size * largest]
        main = max(counted, key=lambda f: f["bbox"][3])
        face_px = round(main["bbox"][3])
        face_frac = round(min(1.0, main["bbox"][3] / max(1, m["height"])), 4)
        lighting = lighting_tag(m["luma"], m["luma_split"], m["clipped"], config)
        row.update(
            face_count=len(counted), face_px=face_px, face_frac=face_frac,
            face_score=round(float(main["score"]), 4),
            outside_frac=min(1.0, geometry.outside_fraction(tuple(main["bbox"]), m["width"], m["height"])),
            blur=float(m["blur"]), luma=float(m["luma"]), lighting=lighting.value,
        )
        row.update(_tag_columns(m.get("tags"), main, config))
        pose = None
        if m.get("tags"):
            pose = _PoseView(np.asarray(m["tags"]["pose_points"], np.float32),
                             np.asarray(m["tags"]["pose_visibility"], np.float32))
        decision = decide_mode(face_bbox=tuple(main["bbox"]), width=int(m["width"]), height=int(m["height"]),
                               yaw=row["yaw"], pose=pose, uploader_mode=item.camera_mode or "",
                               rules=FramingRules(mirror_min_cue=config.mirror_min_cue))
        row.update(camera_mode=decision.mode, mode_source=decision.source, framing=decision.framing,
                   mode_confidence=decision.confidence,
                   mode_evidence=json.dumps({**decision.evidence, "why": decision.why()}, sort_keys=True))
    row["reason"] = _reject_reason(row, config)
    row["passed"] = not row["reason"]
    return row


def _tag_columns(tags: dict[str, Any] | None, main: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    if not tags:
        # Measured without the mesh models: pose and a smile cue from the 5 detector points,
        # eye and mouth state unknown (reported open / closed with confidence 0).
        yaw, pitch, roll = geometry.head_pose(np.asarray(main["landmarks"]))
        happy = geometry.mouth_ratio(np.asarray(main["landmarks"])) >= 0.9
        return {"yaw": yaw, "pitch": pitch, "roll": roll, "eye_open": 1.0, "mouth_open": 0.0,
                "smile": 1.0 if happy else 0.0, "mesh_score": 0.0,
                "expression": (Expression.HAPPY if happy else Expression.NEUTRAL).value,
                "expression_confidence": 0.5}
    label, conf = expression_of(tags, config)
    return {"yaw": float(tags["yaw"]), "pitch": float(tags["pitch"]), "roll": float(tags["roll"]),
            "eye_open": float(min(tags["eye_open_right"], tags["eye_open_left"])),
            "mouth_open": float(tags["mouth_open"]), "smile": float(tags["smile"]),
            "mesh_score": float(tags["mesh_score"]), "expression": label, "expression_confidence": conf}


def binary_tag(value: float, threshold: float, *, above: bool) -> tuple[bool, float]:
    """A yes/no tag from a 0-1 measure and its threshold, with a confidence that grows with the
    distance from the threshold (0.5 on it, 1.0 a third of the scale away)."""
    yes = value >= threshold if above else value <= threshold
    return yes, round(0.5 + 0.5 * min(1.0, abs(value - threshold) / 0.33), 4)


def tag_report(row: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """One photo's verdict and tags, each tag a ``{"value", "confidence"}`` object (what
    ``persona-core qc`` prints); tags are None when no face was measured."""
    doc: dict[str, Any] = {"passed": bool(row["passed"]), "reason": row["reason"]}
    measured = row["face_count"] > 0
    if not measured:
        return {**doc, **dict.fromkeys(("expression", "eyes_open", "mouth_closed", "head_pose",
                                         "lighting", "camera_mode"))}
    eyes, eyes_conf = binary_tag(row["eye_open"], config.min_eye_open, above=True)
    mouth, mouth_conf = binary_tag(row["mouth_open"], config.mouth_closed_max, above=False)
    mesh_conf = round(float(row["mesh_score"]), 4)
    evidence = json.loads(row["mode_evidence"]) if row["mode_evidence"] else {}
    why = evidence.pop("why", "")
    doc.update(
        expression={"value": row["expression"], "confidence": row["expression_confidence"]},
        eyes_open={"value": eyes, "confidence": eyes_conf if mesh_conf else 0.0,
                   "openness": round(row["eye_open"], 4)},
        mouth_closed={"value": mouth, "confidence": mouth_conf if mesh_conf else 0.0,
                      "openness": round(row["mouth_open"], 4)},
        head_pose={"value": {"yaw": row["yaw"], "pitch": row["pitch"], "roll": row["roll"]},
                   "confidence": mesh_conf},
        lighting={"value": row["lighting"], "confidence": 1.0},
        camera_mode={"value": row["camera_mode"], "confidence": row["mode_confidence"],
                     "source": row["mode_source"], "framing": row["framing"], "why": why,
                     "evidence": evidence},
    )
    return doc


# Rejection rules, first failing one wins, in the order a person would fix them.
_RULES: tuple[tuple[Callable[[dict[str, Any], PipelineConfig], bool],
                    Callable[[dict[str, Any], PipelineConfig], str]], ...] = (
    (lambda r, c: min(r["width"], r["height"]) < c.min_image_side_px,
     lambda r, c: f"resolution {r['width']}x{r['height']} below {c.min_image_side_px} px short side"),
    (lambda r, c: r["face_count"] == 0, lambda r, c: "no face found"),
    (lambda r, c: r["face_count"] > 1,
     lambda r, c: f"face count {r['face_count']}: need exactly 1 person in an anchor photo"),
    (lambda r, c: r["face_px"] < c.min_face_px,
     lambda r, c: f"face too small: {r['face_px']} px high, need {c.min_face_px}"),
    (lambda r, c: r["outside_frac"] > c.max_outside_fraction,
     lambda r, c: (f"partial face: ~{r['outside_frac']:.0%} of the face is outside the frame "
                   f"(max {c.max_outside_fraction:.0%})")),
    (lambda r, c: r["face_score"] < c.min_face_score,
     lambda r, c: f"face unclear or occluded: detector score {r['face_score']:.2f} < {c.min_face_score}"),
    (lambda r, c: 0.0 < r["mesh_score"] < c.min_mesh_score,
     lambda r, c: (f"face occluded: the face mesh finds a face with confidence {r['mesh_score']:.2f} "
                   f"< {c.min_mesh_score}")),
    (lambda r, c: abs(r["yaw"]) > c.max_abs_yaw or abs(r["pitch"]) > c.max_abs_pitch,
     lambda r, c: (f"head turned too far: yaw {r['yaw']:.0f}, pitch {r['pitch']:.0f} "
                   f"(max {c.max_abs_yaw:.0f} / {c.max_abs_pitch:.0f} degrees)")),
    (lambda r, c: r["mesh_score"] > 0.0 and r["eye_open"] < c.min_eye_open,
     lambda r, c: (f"eyes closed: eye openness {r['eye_open']:.2f} < {c.min_eye_open} "
                   "(a talking-head anchor needs both eyes open)")),
    (lambda r, c: r["blur"] < c.blur_min,
     lambda r, c: f"blurry face: variance of Laplacian {r['blur']:.1f} < {c.blur_min}"),
    (lambda r, c: r["luma"] < c.dark_luma,
     lambda r, c: f"face too dark: mean luma {r['luma']:.0f} < {c.dark_luma:.0f}"),
    (lambda r, c: r["luma"] > c.bright_luma,
     lambda r, c: f"face overexposed: mean luma {r['luma']:.0f} > {c.bright_luma:.0f}"),
)


def _reject_reason(row: dict[str, Any], config: PipelineConfig) -> str:
    for failed, message in _RULES:
        if failed(row, config):
            return message(row, config)
    return ""


def run_qc(
    images: tuple[ImageInput, ...] | list[ImageInput],
    blobs: BlobStore,
    detector: FaceDetector,
    config: PipelineConfig,
    taggers: FaceTaggers | None = None,
) -> QcResult:
    """QC every image; measurements come from the per-input cache when present. ``taggers``
    defaults to the offline face mesh and pose models (expression from the mesh geometry)."""
    started = time.perf_counter()
    taggers = taggers or FaceTaggers.default()
    # The tag measures' own constants are code, not config: their version joins the key.
    fingerprint = config.fingerprint("qc_decode_min_side", "max_image_pixels") + f":tags{TAGS_VERSION}"
    cache = StepCache.for_step(blobs, "qc", [detector, *taggers.models()], fingerprint)
    measured: dict[str, dict[str, Any]] = {}
    todo = []
    for item in images:
        if item.sha256 in measured:
            continue
        hit = cache.get_json(item.sha256)
        if hit is not None:
            measured[item.sha256] = hit
        else:
            todo.append(item)

    def work(item: ImageInput) -> tuple[ImageInput, dict[str, Any]]:
        return item, measure(blobs.get(item.ref), detector, config, taggers)

    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        for item, m in pool.map(work, todo):
            measured[item.sha256] = m
            cache.put_json(item.sha256, m, item.name)

    rows, faces, seen = [], {}, set()
    for item in images:
        if item.sha256 in seen:
            # The same bytes uploaded twice add nothing; say so instead of dropping silently.
            rows.append({**verdict(item, measured[item.sha256], config), "passed": False,
                         "reason": "duplicate of another input (same sha256)", "sha256": item.sha256})
            continue
        seen.add(item.sha256)
        row = verdict(item, measured[item.sha256], config)
        rows.append(row)
        if row["passed"]:
            main = max(measured[item.sha256]["faces"], key=lambda f: f["bbox"][3])
            faces[item.sha256] = {"bbox": main["bbox"], "landmarks": main["landmarks"]}
    table = pd.DataFrame(rows, columns=QC_COLUMNS)
    table = _typed(table)
    return QcResult(table, faces, {f"qc_{k}": v for k, v in cache.counters().items()},
                    round(time.perf_counter() - started, 4))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    ints = ["width", "height", "face_count", "face_px"]
    floats = ["face_frac", "face_score", "outside_frac", "blur", "luma", "yaw", "pitch", "roll",
              "expression_confidence", "eye_open", "mouth_open", "smile", "mesh_score", "mode_confidence"]
    strs = ["name", "sha256", "lighting", "expression", "framing", "camera_mode", "mode_source",
            "mode_evidence", "reason"]
    # An empty table (no usable image at all) has no values to infer strings from: say "str",
    # or the schema refuses its object columns and a set with nothing usable fails with a
    # SchemaError instead of reaching the gate (blocked, with reasons).
    text: type | str = object if len(table) else "str"
    table = table.astype({**dict.fromkeys(ints, "int64"), **dict.fromkeys(floats, "float64"),
                          **dict.fromkeys(strs, text), "passed": bool})
    return QC_SCHEMA.validate(table)
