"""A pack built with an identity model that has no measured impostor scale (an InsightFace pack,
a locally added model) says so in its calibration and takes both drift lines from its own
anchors, instead of the schema's uncalibrated defaults; one with a measured scale is calibrated
as before and says its scale was measured."""

from __future__ import annotations

import numpy as np
import pytest

from persona_core.pack import RefreshPolicy
from persona_core.vision.base import IdentityScale
from persona_core.vision.calibration import PACK_ONLY_GAP, WARN_MARGIN, calibrate, leave_one_out

SCALE = IdentityScale(
    impostor_p99_9=0.39,
    impostor_pairs=1000,
    set_name="test faces",
    source="test",
    genuine_loo_p1=0.6,
    default_warn=0.54,
    default_fail=0.44,
)


def _anchors(n: int, spread: float, seed: int = 7) -> np.ndarray:
    """``n`` unit vectors around one identity, ``spread`` the noise per dimension."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=512)
    return centre / np.linalg.norm(centre) + rng.normal(scale=spread, size=(n, 512))


@pytest.mark.parametrize("spread", [0.02, 0.05])
def test_a_model_without_a_scale_calibrates_from_the_pack_alone(spread: float) -> None:
    vectors = _anchors(6, spread)
    cal = calibrate(vectors, "buffalo_l:identity", None)
    assert cal.impostor_scale_measured is False
    assert cal.source == "pack_only"
    assert cal.impostor is None
    p5 = float(np.quantile(leave_one_out(vectors), 0.05))
    assert cal.identity_drift_warn == pytest.approx(min(0.99, p5 - WARN_MARGIN), abs=1e-3)
    assert cal.identity_drift_fail == pytest.approx(cal.identity_drift_warn - PACK_ONLY_GAP, abs=1e-3)
    defaults = RefreshPolicy()
    assert (cal.identity_drift_warn, cal.identity_drift_fail) != (
        defaults.identity_drift_warn,
        defaults.identity_drift_fail,
    )
    assert "no measured impostor scale" in cal.reason
    assert "bench/measure_identity_scale.py" in cal.reason


def test_too_few_anchors_and_no_scale_say_both() -> None:
    cal = calibrate(_anchors(2, 0.05), "buffalo_l:identity", None)
    assert cal.impostor_scale_measured is False
    assert cal.source == "model_default"
    assert "no measured impostor scale" in cal.reason
    assert "2 anchor(s)" in cal.reason


def test_a_measured_scale_is_recorded_as_measured() -> None:
    cal = calibrate(_anchors(6, 0.05), "sface-2021dec-int8", SCALE)
    assert cal.impostor_scale_measured is True
    assert cal.source == "calibrated"
    assert cal.identity_drift_fail == pytest.approx(0.44)


def test_uploader_lines_still_win_and_the_missing_scale_stays_recorded() -> None:
    cal = calibrate(
        _anchors(6, 0.05),
        "buffalo_l:identity",
        None,
        {"identity_drift_warn": 0.7, "identity_drift_fail": 0.5},
    )
    assert (cal.source, cal.identity_drift_warn, cal.identity_drift_fail) == ("uploader", 0.7, 0.5)
    assert cal.impostor_scale_measured is False
