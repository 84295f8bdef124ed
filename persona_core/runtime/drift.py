"""Drift statistics the renderer reports per turn, and the thresholds they are judged by."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from persona_core.errors import InvalidInputError
from persona_core.pack import RefreshPolicy

_FIELDS = ("identity_similarity", "bg_similarity", "flicker_score")


@dataclass(frozen=True, slots=True)
class DriftStats:
    """One turn's drift: similarity to the persona's identity and background (1 = same),
    and temporal flicker (0 = none). All in [0, 1]."""

    identity_similarity: float = 1.0
    bg_similarity: float = 1.0
    flicker_score: float = 0.0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            _check_score(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """The four numbers of a RefreshPolicy that judge drift, as plain floats."""

    identity_fail: float
    identity_warn: float
    bg_fail: float
    flicker_fail: float
    refresh_every_turns: int

    @classmethod
    def from_policy(cls, policy: RefreshPolicy) -> DriftThresholds:
        return cls(
            identity_fail=policy.identity_drift_fail,
            identity_warn=policy.identity_drift_warn,
            bg_fail=policy.bg_drift_fail,
            flicker_fail=policy.flicker_fail,
            refresh_every_turns=policy.refresh_every_turns,
        )


DriftStatsLike: TypeAlias = DriftStats | Mapping[str, float]
"""What the hooks accept for one turn's drift: a DriftStats, or a mapping with any of its three
keys (``{"identity_similarity": 0.8}``; the others default to no drift)."""

DEFAULT_THRESHOLDS = DriftThresholds.from_policy(RefreshPolicy())

# Which signal breaks an anchor's continuity, if any. Continuity is stricter than a reset:
# identity below the *warn* line already re-picks the anchor; a forced reset waits for fail.
DRIFT_OK = "ok"
DRIFT_IDENTITY = "identity_drift"
DRIFT_BACKGROUND = "background_drift"
DRIFT_FLICKER = "flicker"


def as_drift_stats(value: DriftStatsLike) -> DriftStats:
    """A DriftStats from a DriftStats or a mapping with any of its three keys."""
    if type(value) is DriftStats:
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - set(_FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown drift stats {sorted(unknown)}; expected {list(_FIELDS)}")
        return DriftStats(**value)
    raise InvalidInputError(f"drift stats must be DriftStats or a mapping, got {type(value).__name__}")


def continuity_state(stats: DriftStatsLike, th: DriftThresholds) -> str:
    """DRIFT_OK, or the first signal that says the current anchor should be re-picked."""
    if type(stats) is not DriftStats:
        stats = as_drift_stats(stats)
    if stats.identity_similarity < th.identity_warn:
        return DRIFT_IDENTITY
    if stats.bg_similarity < th.bg_fail:
        return DRIFT_BACKGROUND
    if stats.flicker_score > th.flicker_fail:
        return DRIFT_FLICKER
    return DRIFT_OK


def _check_score(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{name} must be in [0, 1], got {value}")
