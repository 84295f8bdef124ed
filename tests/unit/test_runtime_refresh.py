"""anchor_refresh_policy: periodic refresh and drift-driven resets, thresholds from the pack."""

from __future__ import annotations

import pytest

from persona_core.errors import InvalidInputError
from persona_core.pack import RefreshPolicy
from persona_core.runtime import DriftStats, RefreshDecision, RefreshReason, anchor_refresh_policy
from persona_core.store.local import LocalBlobStore
from persona_core.testing import make_pack

R = RefreshReason


def ident(*values: float) -> list[dict[str, float]]:
    return [{"identity_similarity": v} for v in values]


@pytest.mark.parametrize(
    ("turn", "trend", "policy", "force", "reason"),
    [
        (0, None, None, False, R.OK),
        (0, [], None, False, R.OK),  # turn 0 is the fresh start, never "periodic"
        (7, None, None, False, R.OK),
        (8, None, None, True, R.PERIODIC),  # default: every 8 turns
        (16, DriftStats(), None, True, R.PERIODIC),
        (10, None, RefreshPolicy(refresh_every_turns=5), True, R.PERIODIC),
        (8, None, RefreshPolicy(refresh_every_turns=5), False, R.OK),
        (3, ident(0.70), None, True, R.IDENTITY_DRIFT_FAIL),  # below 0.74
        (3, ident(0.74), None, False, R.IDENTITY_DRIFT_WARN),  # at the fail line: warn only
        (3, ident(0.83), None, False, R.IDENTITY_DRIFT_WARN),  # one turn below 0.84
        (3, ident(0.84), None, False, R.OK),  # at the warn line is fine
        (3, ident(0.83, 0.80), None, True, R.IDENTITY_DRIFT_SUSTAINED),  # two turns below warn
        (3, ident(0.95, 0.80), None, True, R.IDENTITY_DRIFT_TREND),  # falling 0.15/turn -> 0.65 next
        (3, ident(0.86, 0.83), None, False, R.IDENTITY_DRIFT_WARN),  # falling slowly: watch only
        (3, ident(0.5, 0.9, 0.9), None, False, R.OK),  # only the last two turns count
        (3, {"bg_similarity": 0.55}, None, True, R.BACKGROUND_DRIFT),  # below 0.6
        (3, {"flicker_score": 0.61}, None, True, R.FLICKER),  # above 0.6
        (3, {"flicker_score": 0.6}, None, False, R.OK),
        (8, ident(0.83), None, True, R.PERIODIC),  # periodic outranks a mere warning
        (8, ident(0.70), None, True, R.IDENTITY_DRIFT_FAIL),  # a failure is named over periodic
        (
            3,
            ident(0.80),
            RefreshPolicy(identity_drift_fail=0.85, identity_drift_warn=0.9),
            True,
            R.IDENTITY_DRIFT_FAIL,
        ),
        (3, {"bg_similarity": 0.55}, RefreshPolicy(bg_drift_fail=0.5), False, R.OK),
    ],
)
def test_refresh_decisions(turn, trend, policy, force, reason):
    """Each rule of the module docstring forces (or not) a reset and names itself as the reason."""
    decision = anchor_refresh_policy(turn, trend, policy)
    assert isinstance(decision, RefreshDecision)
    assert (decision.force_reset, decision.reason) == (force, reason)


def test_reset_detail_shows_observed_value_and_threshold():
    """A drift reset says what was observed and which threshold it crossed."""
    decision = anchor_refresh_policy(1, {"identity_similarity": 0.7})
    assert (decision.observed, decision.threshold) == (0.7, 0.74)
    assert "0.700" in decision.detail
    assert "0.74" in decision.detail
    trend = anchor_refresh_policy(1, [{"identity_similarity": 0.95}, {"identity_similarity": 0.80}])
    assert trend.observed == pytest.approx(0.65)  # the projected next value


def test_policy_is_read_from_a_pack(tmp_path):
    """Passing a PersonaPack uses its refresh_policy, not the defaults."""
    blobs = LocalBlobStore(tmp_path, b"s", "http://127.0.0.1")
    pack = make_pack(blobs, "ref", 1, n_anchors=3)
    every3 = pack.model_copy(update={"refresh_policy": RefreshPolicy(refresh_every_turns=3)}).sealed()
    assert anchor_refresh_policy(3, None, pack).force_reset is False
    assert anchor_refresh_policy(3, None, every3).reason == R.PERIODIC


@pytest.mark.parametrize(
    ("turn", "trend", "policy"),
    [
        (-1, None, None),
        (1.5, None, None),
        (True, None, None),
        ("3", None, None),
        (1, "drifting", None),
        (1, 0.8, None),
        (1, {"identity_similarity": float("nan")}, None),
        (1, {"identity_similarity": -0.1}, None),
        (1, [{"identity": 0.9}], None),
        (1, None, {"refresh_every_turns": 8}),
    ],
)
def test_bad_arguments_raise_typed_errors(turn, trend, policy):
    """Negative or non-int turns, malformed drift and unknown policy types raise InvalidInputError."""
    with pytest.raises(InvalidInputError):
        anchor_refresh_policy(turn, trend, policy)
