"""Step ``anchor_sets``: QC-passed faces grouped by camera mode, tagged, scored, identity
outliers and near-duplicates removed, one canonical per mode chosen for rendering
(``steps/canonical.py``), the rest ranked by quality and diversity after it.

Also computes what the two anchor checks read: the per-mode counts against their minimum
(the blocking gate) and each candidate's identity similarity to the others (stability).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from persona_core.pack import CanonicalChoice, IdentityCalibration
from persona_core.vision.base import IdentityScale
from persona_core.vision.calibration import calibrate
from persona_core.vision.errors import UnknownModelError
from persona_core.vision.registry import get_entry
from persona_pipeline.steps.canonical import choose_canonical
from persona_pipeline.steps.config import MODES, PipelineConfig
from persona_pipeline.steps.embeddings import Embeddings
from persona_pipeline.steps.faces import FaceRecord, FacesResult
from persona_pipeline.steps.qc import binary_tag

_BEST_FOR = {"A_SELFIE": ["talking", "closeup"], "B_MIRROR": ["talking", "medium_shot"],
             "C_CUTAWAY": ["reaction", "wide"]}
# Eyes open and mouth closed weigh in because a talking-head renderer animates from them;
# expression neutrality is reported, not weighed (a smiling anchor is not a worse anchor).
_WEIGHTS = {"sharpness": 0.2, "exposure": 0.15, "face_size": 0.1, "frontalness": 0.2,
            "identity_consistency": 0.2, "eyes_open": 0.1, "mouth_closed": 0.05}
_HOW_TO_TAG = ("to tag photos yourself, put them in a folder named after the mode (A_SELFIE/, "
               "B_MIRROR/, C_CUTAWAY/) or give camera_mode per file in the upload manifest")


def r4(x: float) -> float:
    """Scores are rounded so equal builds give byte-equal packs."""
    return round(float(x), 4)


@dataclass(frozen=True)
class Candidate:
    face: FaceRecord
    mode: str
    mode_source: str
    expression: str
    lighting: str
    head_pose: tuple[float, float, float]
    quality: dict[str, float]
    identity_score: float
    expression_confidence: float = 0.0
    eye_open: float = 1.0  # 0-1, the less open eye
    mouth_open: float = 0.0
    mode_confidence: float = 1.0
    framing: str = ""
    mode_evidence: str = ""  # JSON from the QC table

    @property
    def anchor_id(self) -> str:
        return f"{self.mode.lower()}-{self.face.sha256[:12]}"

    def tag_lines(self, config: PipelineConfig) -> list[str]:
        """The tags with their confidences, one short line each (contact sheet labels)."""
        eyes, eyes_conf = binary_tag(self.eye_open, config.min_eye_open, above=True)
        mouth, mouth_conf = binary_tag(self.mouth_open, config.mouth_closed_max, above=False)
        source = "tagged" if self.mode_source == "uploader" else self.framing or "inferred"
        return [f"{self.expression} {self.expression_confidence:.2f}",
                f"eyes {'open' if eyes else 'shut'} {eyes_conf:.2f}",
                f"mouth {'shut' if mouth else 'open'} {mouth_conf:.2f}",
                f"mode {source} {self.mode_confidence:.2f}"]

    def best_for(self) -> list[str]:
        tags = list(_BEST_FOR[self.mode])
        tags.append("smiling" if self.expression == "happy" else "listening")
        return tags


@dataclass(frozen=True)
class Stability:
    scores: dict[str, float]  # input name -> median identity similarity to the other candidates
    threshold: float  # the identity link: photos of one person are at least this similar (average)
    median: float
    spread: float
    outliers: dict[str, float]  # input name -> mean similarity to the majority group, below threshold
    note: str = ""
    groups: list[list[str]] = field(default_factory=list)  # identity groups, largest first
    blocked_reason: str = ""  # two or more sizeable groups and no clear majority

    @property
    def people(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class AnchorSelection:
    anchors: dict[str, list[Candidate]]  # mode -> ranked anchors, canonical first
    stability: Stability
    dropped: dict[str, str]  # input name -> why it is not an anchor
    gate_counts: dict[str, dict[str, int]]  # required mode -> {"observed", "threshold"}
    gate_reasons: list[str] = field(default_factory=list)
    calibration: IdentityCalibration | None = None  # derived from the anchors (uploader lines not applied)
    canonical: dict[str, CanonicalChoice] = field(default_factory=dict)  # mode -> why its first anchor

    @property
    def gate_passed(self) -> bool:
        return not self.gate_reasons

    def ordered(self) -> list[Candidate]:
        return [c for mode in MODES for c in self.anchors.get(mode, [])]


# Identity groups (README, "Identity groups"): a group is sizeable with at least
# max(2, GROUP_MIN_FRACTION * n) photos; the majority is clear when the largest group holds at
# least MAJORITY_MIN_FRACTION of the photos and MAJORITY_RATIO times the next sizeable group.
GROUP_MIN_FRACTION = 0.2
MAJORITY_MIN_FRACTION = 0.6
MAJORITY_RATIO = 2.0


def identity_groups(sims: np.ndarray, link: float) -> list[list[int]]:
    """Average-linkage groups over a cosine matrix: two groups merge while the mean similarity
    between their members is at least ``link``. Largest first, ties by first index."""
    groups = [[i] for i in range(sims.shape[0])]
    while len(groups) > 1:
        best, pair = -2.0, (0, 0)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                value = float(sims[np.ix_(groups[a], groups[b])].mean())
                if value > best:
                    best, pair = value, (a, b)
        if best < link:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def identity_stability(
    vectors: dict[str, np.ndarray], names: dict[str, str], config: PipelineConfig, link: float | None = None
) -> Stability:
    """Identity groups of the candidates on the identity model's scale (``link``: the model's
    identity-drift fail line; ``config.instability_floor`` for a model without a measured scale).
    One group, or a clear majority: the other photos are outliers. Two or more groups without a
    clear majority (a pair below the line is two people, one photo each): ``blocked_reason``
    names every group and its files."""
    threshold = r4(config.instability_floor if link is None else link)
    shas = sorted(vectors, key=lambda s: names[s])
    if len(shas) < 2:  # a pair is the least that can hold two people
        scores = {names[s]: 1.0 for s in shas}
        return Stability(scores, threshold, 1.0, 0.0, {}, groups=[[names[s] for s in shas]] if shas else [],
                         note=f"{len(shas)} candidate(s): at least 2 are needed to compare identities")
    mat = np.stack([vectors[s] for s in shas]).astype(np.float64)
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    sims = mat @ mat.T
    scores_arr = np.array([np.median(np.delete(sims[i], i)) for i in range(len(shas))])
    med = float(np.median(scores_arr))
    spread = float(np.median(np.abs(scores_arr - med))) * 1.4826
    scores = {names[s]: r4(v) for s, v in zip(shas, scores_arr, strict=True)}
    index_groups = identity_groups(sims, threshold)
    groups = [[names[shas[i]] for i in g] for g in index_groups]
    n = len(shas)
    sizeable = [g for g in index_groups if len(g) >= max(2, math.ceil(GROUP_MIN_FRACTION * n))]
    majority = index_groups[0]
    runner_up = len(sizeable[1]) if len(sizeable) > 1 else 0
    # The majority's share applies even when every other group is a single photo: two photos
    # of two people (or three of three) have no majority to publish.
    clear = len(majority) >= MAJORITY_MIN_FRACTION * n and len(majority) >= MAJORITY_RATIO * runner_up
    listing = "; ".join(f"group {k + 1} ({len(g)}): {', '.join(g)}" for k, g in enumerate(groups))
    if not clear:
        reason = (f"{len(groups)} people in this set, no clear majority ({listing}); the largest group "
                  f"must hold at least {MAJORITY_MIN_FRACTION:.0%} of the photos and "
                  f"{MAJORITY_RATIO:g}x the next one")
        return Stability(scores, threshold, r4(med), r4(spread), {}, groups=groups, blocked_reason=reason,
                         note=reason)
    outliers = {
        names[shas[i]]: r4(sims[i, majority].mean()) for i in range(n) if i not in set(majority)
    }
    note = f"{len(groups)} people in this set ({listing}); published the majority" if len(groups) > 1 else ""
    return Stability(scores, threshold, r4(med), r4(spread), dict(sorted(outliers.items())), note=note,
                     groups=groups)


def _quality(row: Any, identity_score: float, config: PipelineConfig) -> dict[str, float]:
    sharp = math.log10(max(row.blur, 1e-6) / config.blur_min) / math.log10(50)
    exposure = 1.0 - abs(row.luma - 128.0) / 128.0
    size = row.face_px / 256.0
    frontal = 1.0 - (abs(row.yaw) / config.max_abs_yaw + abs(row.pitch) / config.max_abs_pitch) / 2
    neutral = row.expression_confidence if row.expression == "neutral" else 1.0 - row.expression_confidence
    q = {"sharpness": sharp, "exposure": exposure, "face_size": size, "frontalness": frontal,
         "identity_consistency": identity_score, "eyes_open": row.eye_open,
         "mouth_closed": 1.0 - row.mouth_open, "expression_neutrality": neutral}
    q = {k: r4(min(1.0, max(0.0, v))) for k, v in q.items()}
    q["overall"] = r4(sum(q[k] * w for k, w in _WEIGHTS.items()))
    return q


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def select_anchors(
    qc_table: pd.DataFrame,
    faces: FacesResult,
    identity: Embeddings,
    style: Embeddings,
    *,
    config: PipelineConfig,
) -> AnchorSelection:
    """Anchors per mode from the QC-passed faces (see the module docstring)."""
    rows = {r.sha256: r for r in qc_table.itertuples() if r.passed}
    recs = [f for f in faces.faces if f.sha256 in rows and f.sha256 in identity.vectors]
    names = {f.sha256: f.name for f in recs}
    scale = identity_scale_of(identity.model)
    stability = identity_stability({f.sha256: identity.vectors[f.sha256] for f in recs}, names, config,
                                   link=scale.default_fail if scale else None)
    dropped: dict[str, str] = {}
    cands: list[Candidate] = []
    for f in recs:
        score = stability.scores[f.name]
        if f.name in stability.outliers:
            dropped[f.name] = (f"identity outlier: similarity {stability.outliers[f.name]:.4f} to the "
                               f"majority's photos is below {stability.threshold:.4f} (another person?)")
            continue
        cands.append(candidate(f, rows[f.sha256], score, config))
    # Best first; ties broken by content so the order never depends on upload order.
    cands.sort(key=lambda c: (-c.quality["overall"], c.face.sha256))
    kept: list[Candidate] = []
    for c in cands:
        twin = next((k for k in kept if _is_duplicate(c, k, identity, style, config)), None)
        if twin is not None:
            dropped[c.face.name] = f"near-duplicate of {twin.face.name} (kept the better one)"
        else:
            kept.append(c)
    anchors: dict[str, list[Candidate]] = {}
    canonical: dict[str, CanonicalChoice] = {}
    for mode in MODES:
        pool = [c for c in kept if c.mode == mode]
        if not pool:
            continue
        first, canonical[mode] = choose_canonical(pool, mode, config)
        ranked = _rank_diverse(pool, style, config, first=first)
        for c in ranked[config.max_anchors_per_mode :]:
            dropped[c.face.name] = f"{mode} already has {config.max_anchors_per_mode} better anchors"
        anchors[mode] = ranked[: config.max_anchors_per_mode]
    gate_counts, reasons = {}, []
    if stability.blocked_reason:
        reasons.append(stability.blocked_reason)
    for mode in config.required_modes:
        need, have = config.min_anchors(mode), len(anchors.get(mode, []))
        gate_counts[mode] = {"observed": have, "threshold": need}
        if have < need:
            reasons.append(f"{mode}: {have} usable anchor(s), need at least {need}; "
                           f"{_where_photos_went(kept, anchors)}; {_HOW_TO_TAG}")
    ordered = [c for mode in MODES for c in anchors.get(mode, [])]
    vectors = np.stack([identity.vectors[c.face.sha256] for c in ordered]) if ordered else np.zeros((0, 1))
    calibration = calibrate(vectors, identity.model, scale)
    return AnchorSelection(anchors, stability, dict(sorted(dropped.items())), gate_counts, reasons,
                           calibration=calibration, canonical=canonical)


def candidate(face: FaceRecord, row: Any, identity_score: float, config: PipelineConfig) -> Candidate:
    """An anchor candidate from its face and QC table row (a row of ``QcResult.table``)."""
    return Candidate(
        face=face, mode=row.camera_mode, mode_source=row.mode_source, expression=row.expression,
        lighting=row.lighting, head_pose=(r4(row.yaw), r4(row.pitch), r4(row.roll)),
        quality=_quality(row, identity_score, config), identity_score=identity_score,
        expression_confidence=float(row.expression_confidence), eye_open=float(row.eye_open),
        mouth_open=float(row.mouth_open), mode_confidence=float(row.mode_confidence),
        framing=row.framing, mode_evidence=row.mode_evidence,
    )


def identity_scale_of(model_name: str) -> IdentityScale | None:
    """The registry's measured scale for an identity model (None: unknown or not measured)."""
    try:
        return get_entry(model_name).identity_scale
    except UnknownModelError:
        return None


def _where_photos_went(kept: list[Candidate], anchors: dict[str, list[Candidate]]) -> str:
    """Which usable photos went to which mode, and why (the gate's message)."""
    parts = []
    for mode in MODES:
        photos = [c for c in kept if c.mode == mode]
        if not photos:
            parts.append(f"{mode}: no photo")
            continue
        why = "; ".join(f"{c.face.name} ({_mode_why(c)})" for c in photos)
        parts.append(f"{mode}: {why}")
    return "photos by mode: " + " | ".join(parts)


def _mode_why(c: Candidate) -> str:
    if c.mode_source == "uploader":
        return "tagged by the uploader"
    try:
        evidence = json.loads(c.mode_evidence) if c.mode_evidence else {}
    except ValueError:
        evidence = {}
    why = f"{c.framing} framing" if c.framing else "framing"
    if "face_frac" in evidence:
        why += f", face {float(evidence['face_frac']):.0%} of the height"
    if c.mode == "B_MIRROR":
        why += f", mirror cue {float(evidence.get('mirror_cue', 0)):.2f}"
    return f"{why}, confidence {c.mode_confidence:.2f}"


def _is_duplicate(a: Candidate, b: Candidate, identity: Embeddings, style: Embeddings,
                  config: PipelineConfig) -> bool:
    sa, sb = a.face.sha256, b.face.sha256
    return (_cos(identity.vectors[sa], identity.vectors[sb]) >= config.duplicate_identity_sim
            and _cos(style.vectors[sa], style.vectors[sb]) >= config.duplicate_style_sim)


def _rank_diverse(pool: list[Candidate], style: Embeddings, config: PipelineConfig,
                  first: Candidate) -> list[Candidate]:
    # Greedy maximal marginal relevance after the canonical anchor: quality minus similarity to
    # what is already chosen, so a mode's anchors cover different looks instead of five copies
    # of the best one.
    left, chosen = [c for c in pool if c is not first], [first]
    while left:
        def gain(c: Candidate) -> float:
            sim = max((_cos(style.vectors[c.face.sha256], style.vectors[k.face.sha256]) for k in chosen),
                      default=0.0)
            return c.quality["overall"] - config.diversity_weight * sim

        best = min(left, key=lambda c: (-gain(c), c.face.sha256))
        chosen.append(best)
        left.remove(best)
    return chosen
