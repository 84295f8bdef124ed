"""``anchor_refresh_policy``: should the renderer re-seed from a fresh anchor this turn?

Checks, first match wins (thresholds from the pack's RefreshPolicy, or its defaults:
every 8 turns, identity fail 0.74 / warn 0.84, background fail 0.6, flicker fail 0.6):

1. identity similarity below the fail line -> reset (``identity_drift_fail``)
2. background similarity below its fail line -> reset (``background_drift``)
3. flicker above its fail line -> reset (``flicker``)
4. identity below the warn line on the last two turns -> reset (``identity_drift_sustained``)
5. identity below warn and falling fast enough to cross fail next turn -> reset
   (``identity_drift_trend``)
6. ``turn_index`` a positive multiple of ``refresh_every_turns`` -> reset (``periodic``)
7. identity below warn once -> no reset, but say so (``identity_drift_warn``)
8. otherwise no reset (``ok``)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from persona_core.errors import InvalidInputError
from persona_core.pack import PersonaPack, RefreshPolicy
from persona_core.runtime._identity_cache import IdentityCache
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.drift import (
    DEFAULT_THRESHOLDS,
    DriftStats,
    DriftStatsLike,
    DriftThresholds,
    as_drift_stats,
)

PolicySource: TypeAlias = RefreshPolicy | CachedPack | PersonaPack | None
"""Where the refresh thresholds come from: a RefreshPolicy, a pack's own, or None (the defaults)."""
DriftTrend: TypeAlias = DriftStatsLike | Sequence[DriftStatsLike] | None
"""None, one turn's drift, or the recent turns' drift, oldest first."""


class RefreshReason(StrEnum):
    OK = "ok"
    PERIODIC = "periodic"
    IDENTITY_DRIFT_FAIL = "identity_drift_fail"
    IDENTITY_DRIFT_SUSTAINED = "identity_drift_sustained"
    IDENTITY_DRIFT_TREND = "identity_drift_trend"
    IDENTITY_DRIFT_WARN = "identity_drift_warn"
    BACKGROUND_DRIFT = "background_drift"
    FLICKER = "flicker"


_DETAIL = {
    RefreshReason.OK: "within thresholds",
    RefreshReason.PERIODIC: "turn {observed:g}: every {threshold:g} turns",
    RefreshReason.IDENTITY_DRIFT_FAIL: "identity_similarity {observed:.3f} < fail {threshold}",
    RefreshReason.IDENTITY_DRIFT_SUSTAINED: (
        "identity_similarity {observed:.3f} < warn {threshold} two turns running"
    ),
    RefreshReason.IDENTITY_DRIFT_TREND: (
        "identity_similarity heads to {observed:.3f} next turn, < fail {threshold}"
    ),
    RefreshReason.IDENTITY_DRIFT_WARN: "identity_similarity {observed:.3f} < warn {threshold}",
    RefreshReason.BACKGROUND_DRIFT: "bg_similarity {observed:.3f} < fail {threshold}",
    RefreshReason.FLICKER: "flicker_score {observed:.3f} > fail {threshold}",
}


@dataclass(frozen=True, slots=True)
class RefreshDecision:
    """``observed`` is the value that decided (a projected one for a trend; the turn for
    ``periodic``) and ``threshold`` the line it crossed; ``detail`` says it in words."""

    force_reset: bool
    reason: RefreshReason
    observed: float | None = None
    threshold: float | None = None

    @property
    def detail(self) -> str:
        return _DETAIL[self.reason].format(observed=self.observed, threshold=self.threshold)


_OK = RefreshDecision(False, RefreshReason.OK)
_POLICY_THRESHOLDS: IdentityCache[RefreshPolicy, DriftThresholds] = IdentityCache(DriftThresholds.from_policy)


def thresholds_of(policy: PolicySource) -> DriftThresholds:
    """Thresholds from a RefreshPolicy, CachedPack, PersonaPack, or None (the defaults)."""
    if policy is None:
        return DEFAULT_THRESHOLDS
    if type(policy) is CachedPack:
        return policy.index.thresholds
    if isinstance(policy, PersonaPack):
        policy = policy.refresh_policy
    if isinstance(policy, RefreshPolicy):
        return _POLICY_THRESHOLDS.get(policy)
    raise InvalidInputError(
        f"expected a RefreshPolicy, CachedPack or PersonaPack, got {type(policy).__name__}"
    )


def anchor_refresh_policy(
    turn_index: int, drift_trend: DriftTrend = None, policy: PolicySource = None
) -> RefreshDecision:
    """Decide whether to force an anchor reset at ``turn_index`` (0-based).

    ``drift_trend`` is None, one DriftStats (or mapping), or a sequence of them, oldest
    first; only the last two entries matter. ``policy`` is a RefreshPolicy, CachedPack or
    PersonaPack; None uses the safe defaults. Bad input raises InvalidInputError.
    """
    if type(turn_index) is not int or turn_index < 0:
        raise InvalidInputError(f"turn_index must be an int >= 0, got {turn_index!r}")
    th = thresholds_of(policy)
    latest, previous = _last_two(drift_trend)
    drift = None if latest is None else _drift_decision(latest, previous, th)
    if drift is not None and drift.force_reset:
        return drift
    if turn_index > 0 and turn_index % th.refresh_every_turns == 0:
        return RefreshDecision(True, RefreshReason.PERIODIC, turn_index, th.refresh_every_turns)
    return drift or _OK


def _drift_decision(  # noqa: PLR0911 - one return per rule of the module docstring
    latest: DriftStats, previous: DriftStats | None, th: DriftThresholds
) -> RefreshDecision | None:
    ident = latest.identity_similarity
    if ident < th.identity_fail:
        return RefreshDecision(True, RefreshReason.IDENTITY_DRIFT_FAIL, ident, th.identity_fail)
    if latest.bg_similarity < th.bg_fail:
        return RefreshDecision(True, RefreshReason.BACKGROUND_DRIFT, latest.bg_similarity, th.bg_fail)
    if latest.flicker_score > th.flicker_fail:
        return RefreshDecision(True, RefreshReason.FLICKER, latest.flicker_score, th.flicker_fail)
    if ident >= th.identity_warn:
        return None
    if previous is not None:
        if previous.identity_similarity < th.identity_warn:
            return RefreshDecision(True, RefreshReason.IDENTITY_DRIFT_SUSTAINED, ident, th.identity_warn)
        projected = ident + (ident - previous.identity_similarity)
        if projected < th.identity_fail:
            return RefreshDecision(True, RefreshReason.IDENTITY_DRIFT_TREND, projected, th.identity_fail)
    return RefreshDecision(False, RefreshReason.IDENTITY_DRIFT_WARN, ident, th.identity_warn)


def _last_two(trend: DriftTrend) -> tuple[DriftStats | None, DriftStats | None]:
    if trend is None:
        return None, None
    if type(trend) is list or type(trend) is tuple:  # the common case, without the slower ABC checks
        if not trend:
            return None, None
        return as_drift_stats(trend[-1]), (as_drift_stats(trend[-2]) if len(trend) > 1 else None)
    if type(trend) is DriftStats or isinstance(trend, Mapping):
        return as_drift_stats(trend), None
    if isinstance(trend, Sequence) and not isinstance(trend, str | bytes):
        if not trend:
            return None, None
        latest = as_drift_stats(trend[-1])
        return latest, (as_drift_stats(trend[-2]) if len(trend) > 1 else None)
    raise InvalidInputError(
        f"drift_trend must be DriftStats, a mapping or a sequence, got {type(trend).__name__}"
    )
