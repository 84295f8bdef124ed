"""Identity calibration: the identity-drift lines of one pack, from its own anchors and its
identity model's measured impostor scale. numpy only (no OpenCV, no onnxruntime).

- *fail* sits a margin above the model's impostor similarity at p99.9, so a different person
  always fails;
- *warn* sits a margin below the anchors' leave-one-out p5 (each anchor against the centroid
  of the others, which is how the runtime scores a rendered face), so a genuine face of the
  person rarely warns; never closer than a margin to *fail*.

A model without a measured scale (an InsightFace pack, a model added locally) has nothing to
place *fail* by but the pack itself: *warn* as above and *fail* a fixed gap below it, recorded
as ``pack_only`` with ``impostor_scale_measured`` false; measure the model's scale with
``bench/measure_identity_scale.py`` to calibrate its packs fully. Too few anchors (fewer than
``MIN_ANCHORS``): the model's defaults (the schema's for a model without a measured scale), with
the reason recorded. Thresholds the uploader gave win and are recorded as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from persona_core.errors import InvalidInputError
from persona_core.pack import IdentityCalibration, ImpostorScale, LeaveOneOut, RefreshPolicy
from persona_core.vision.base import IdentityScale

MIN_ANCHORS = 3  # leave-one-out needs a centroid of at least two others
FAIL_MARGIN = 0.05  # above the impostor p99.9
WARN_MARGIN = 0.10  # below the anchors' leave-one-out p5 (small sets estimate it loosely)
MIN_GAP = 0.05  # warn never closer than this to fail
# Without an impostor scale, fail sits this far below warn: about where a measured scale puts it
# for SFace (warn 0.54, fail 0.44 by default), and below any genuine leave-one-out p5 by 0.25.
PACK_ONLY_GAP = 0.15
METHOD = (
    f"fail = impostor p99.9 + {FAIL_MARGIN}; warn = max(fail + {MIN_GAP}, leave-one-out p5 - "
    f"{WARN_MARGIN}); leave-one-out = each anchor's cosine to the centroid of the others; "
    f"fewer than {MIN_ANCHORS} anchors = the model's defaults"
)
PACK_ONLY_METHOD = (
    f"no impostor scale for the model: warn = leave-one-out p5 - {WARN_MARGIN}; fail = warn - "
    f"{PACK_ONLY_GAP}; leave-one-out = each anchor's cosine to the centroid of the others; "
    f"fewer than {MIN_ANCHORS} anchors = the schema's default lines"
)
UPLOADER_KEYS = ("identity_drift_warn", "identity_drift_fail")


def _r4(x: float) -> float:
    return round(float(x), 4)


def leave_one_out(vectors: np.ndarray) -> list[float]:
    """Each row's cosine to the L2-normalised mean of the other rows (rows L2-normalised)."""
    mat = np.asarray(vectors, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] < 2:
        return []
    mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    total = mat.sum(axis=0)
    sims = []
    for row in mat:
        rest = total - row
        sims.append(float(row @ rest) / max(float(np.linalg.norm(rest)), 1e-12))
    return sims


def summarise(sims: list[float]) -> LeaveOneOut:
    if not sims:
        return LeaveOneOut(n=0)
    arr = np.asarray(sims)
    return LeaveOneOut(
        n=len(sims),
        min=_r4(arr.min()),
        p5=_r4(np.quantile(arr, 0.05)),
        median=_r4(np.median(arr)),
    )


def calibrate(
    vectors: np.ndarray,
    model_name: str,
    scale: IdentityScale | None,
    uploader: Mapping[str, float] | None = None,
) -> IdentityCalibration:
    """The calibration record for a pack whose anchors' identity embeddings are ``vectors``."""
    n = int(np.asarray(vectors).shape[0]) if np.asarray(vectors).ndim == 2 else 0
    loo = summarise(leave_one_out(vectors) if n >= MIN_ANCHORS else [])
    loo = loo if n >= MIN_ANCHORS else LeaveOneOut(n=n)
    impostor = None
    reason = ""
    source: Literal["calibrated", "pack_only", "model_default", "uploader"]
    method = METHOD
    if scale is None:
        method = PACK_ONLY_METHOD
        unmeasured = (f"model {model_name!r} has no measured impostor scale (bench/measure_identity_scale.py "
                      "measures one)")
        if n >= MIN_ANCHORS and loo.p5 is not None:
            warn = _r4(min(0.99, max(PACK_ONLY_GAP, loo.p5 - WARN_MARGIN)))
            fail = _r4(warn - PACK_ONLY_GAP)
            source = "pack_only"
            reason = f"{unmeasured}; both lines from this pack's {n} anchors alone"
        else:
            defaults = RefreshPolicy()
            warn, fail = defaults.identity_drift_warn, defaults.identity_drift_fail
            source = "model_default"
            reason = f"{unmeasured} and {n} anchor(s) are too few to calibrate; the schema's default lines"
    else:
        impostor = ImpostorScale(
            p99_9=scale.impostor_p99_9,
            pairs=scale.impostor_pairs,
            set_name=scale.set_name,
            source=scale.source,
        )
        fail = round(scale.impostor_p99_9 + FAIL_MARGIN, 2)
        if n >= MIN_ANCHORS and loo.p5 is not None:
            warn = _r4(min(0.99, max(fail + MIN_GAP, loo.p5 - WARN_MARGIN)))
            source = "calibrated"
        else:
            warn, fail = scale.default_warn, scale.default_fail
            source = "model_default"
            reason = f"{n} anchor(s): at least {MIN_ANCHORS} are needed to calibrate; the model's defaults"
    derived_warn, derived_fail = warn, fail
    given = {k: v for k, v in (uploader or {}).items() if k in UPLOADER_KEYS and v is not None}
    if given:
        warn = float(given.get("identity_drift_warn", warn))
        fail = float(given.get("identity_drift_fail", fail))
        if fail > warn:
            raise InvalidInputError(f"identity_drift_fail {fail} is above identity_drift_warn {warn}")
        source = "uploader"
        reason = f"thresholds given with the upload ({', '.join(sorted(given))}) win over the derived ones"
    return IdentityCalibration(
        model=model_name,
        source=source,
        method=method,
        leave_one_out=loo,
        impostor=impostor,
        derived_warn=derived_warn,
        derived_fail=derived_fail,
        identity_drift_warn=warn,
        identity_drift_fail=fail,
        reason=reason,
        impostor_scale_measured=scale is not None,
    )
