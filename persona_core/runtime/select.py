"""``select_anchor``: which reference image the renderer should use for this turn.

Rules, in order:

1. *Continuity*: the previous anchor (``continuity``) is kept while drift is fine (identity
   similarity at or above the pack's warn line, background above its fail line, flicker
   below its fail line), it is in the mode being rendered, and it shows the desired emotion
   (or the mode has no anchor with that emotion, so nothing would be better).
2. *Best match*: the best anchor of the mode with the desired emotion.
3. *Neutral fallback*: no anchor of the mode shows that emotion: its best neutral anchor (a
   neutral face is a safer start for a sad or angry turn than a smiling one).
4. *Mode canonical*: no neutral anchor either: the mode's canonical anchor (its best one
   when none is flagged).
5. *Other mode*: when the mode has no anchors, rules 2-4 in the first other mode that has
   some, in the fixed order A_SELFIE, B_MIRROR, C_CUTAWAY.

"Best" is, for a talking turn (``talking=True``, the default), the anchor with eyes open and
mouth closed first (what a talking-head renderer animates from; tags a pack does not carry
count as met), then by quality (descending), then anchor id (ascending); for a listening or
reaction turn (``talking=False``) by quality, then id. The choice is a pure function of the
pack and the arguments. Every result is memoised per pack: a repeat
call is a dict lookup returning the same immutable AnchorChoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from persona_core.errors import InvalidInputError, NotFoundError
from persona_core.pack import CameraMode, Expression, PersonaPack
from persona_core.runtime._identity_cache import IdentityCache
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.drift import DRIFT_OK, DriftStatsLike, continuity_state
from persona_core.runtime.index import EXPRESSIONS, MODE_ORDER, SelectionIndex

PackLike: TypeAlias = CachedPack | PersonaPack
"""A pack as the hooks take it: loaded through PackCache, or a PersonaPack in hand."""

_MODES = frozenset(MODE_ORDER)
_EXPRESSIONS = frozenset(EXPRESSIONS)


class SelectReason(StrEnum):
    CONTINUITY = "continuity"
    BEST_MATCH = "best_match"
    NEUTRAL_FALLBACK = "neutral_fallback"
    MODE_CANONICAL = "mode_canonical"
    OTHER_MODE = "other_mode"


@dataclass(frozen=True, slots=True)
class AnchorChoice:
    anchor_id: str
    image_ref: str
    mode: CameraMode
    emotion: Expression
    quality: float
    reason: SelectReason
    detail: str


_INDEXES: IdentityCache[PersonaPack, SelectionIndex] = IdentityCache(SelectionIndex.from_pack)


def index_of(pack: PackLike) -> SelectionIndex:
    """The selection index of a CachedPack (built at load) or a PersonaPack (built once, kept
    while the pack object lives)."""
    if type(pack) is CachedPack:
        return pack.index
    if isinstance(pack, PersonaPack):
        return _INDEXES.get(pack)
    raise InvalidInputError(f"expected a CachedPack or PersonaPack, got {type(pack).__name__}")


def select_anchor(
    pack: PackLike,
    mode: CameraMode | str,
    desired_emotion: Expression | str = Expression.NEUTRAL,
    continuity: str | None = None,
    drift_stats: DriftStatsLike | None = None,
    *,
    talking: bool = True,
) -> AnchorChoice:
    """Pick the anchor for one turn (rules in the module docstring).

    ``pack`` is a CachedPack or PersonaPack; ``continuity`` the previous turn's anchor id;
    ``drift_stats`` a DriftStats or mapping (None = no drift observed); ``talking`` whether the
    turn is spoken (prefer eyes open, mouth closed). An unknown mode or emotion raises
    InvalidInputError; a pack with no anchors raises NotFoundError.
    """
    index = index_of(pack)
    drift = DRIFT_OK if drift_stats is None else continuity_state(drift_stats, index.thresholds)
    key = (mode, desired_emotion, continuity, drift, bool(talking))
    try:
        choice = index.memo.get(key)
    except TypeError:  # an unhashable argument
        raise InvalidInputError(f"mode/emotion/continuity must be strings, got {key[:3]!r}") from None
    if choice is None:
        choice = _resolve(index, mode, desired_emotion, continuity, drift, talking=bool(talking))
        # Only ids the pack knows are memoised, which keeps the memo bounded whatever
        # callers pass; an unknown previous anchor is rare and resolves each time.
        if continuity is None or continuity in index.columns().pos:
            index.memo[key] = choice
    return choice


def _check_args(mode: object, emotion: object, continuity: object) -> tuple[str, str]:
    if not isinstance(mode, str) or mode not in _MODES:
        raise InvalidInputError(f"unknown camera mode {mode!r}; expected one of {list(MODE_ORDER)}")
    if not isinstance(emotion, str) or emotion not in _EXPRESSIONS:
        raise InvalidInputError(f"unknown emotion {emotion!r}; expected one of {list(EXPRESSIONS)}")
    if continuity is not None and not isinstance(continuity, str):
        raise InvalidInputError(f"continuity must be an anchor id or None, got {continuity!r}")
    return str(mode), str(emotion)


def _best(index: SelectionIndex, group: list[int], talking: bool) -> int:
    # Groups are ordered by quality, then id; max() keeps the first of equally ready anchors.
    return max(group, key=index.readiness_of) if talking else group[0]


def _resolve(index: SelectionIndex, mode: CameraMode | str, emotion: Expression | str,
             continuity: str | None, drift: str, *, talking: bool) -> AnchorChoice:
    mode, emotion = _check_args(mode, emotion, continuity)
    if not index.n_anchors:
        raise NotFoundError(f"pack {index.persona_id} v{index.version} has no anchors")
    target = mode if mode in index.canonical else next(m for m in MODE_ORDER if m in index.canonical)
    has_emotion = (target, emotion) in index.by_mode_emotion

    broken = ""
    if continuity is not None:
        p = index.columns().pos.get(continuity)
        if p is None:
            broken = f"previous anchor {continuity!r} is not in this pack"
        elif drift != DRIFT_OK:
            broken = f"{drift} outside the pack's refresh thresholds"
        elif index.mode_of(p) != target:
            broken = f"previous anchor is in {index.mode_of(p)}, rendering {target}"
        elif has_emotion and index.expr_of(p) != emotion:
            broken = f"previous anchor shows {index.expr_of(p)}, {emotion} wanted"
        else:
            return _choice(index, p, SelectReason.CONTINUITY, "previous anchor kept: drift within thresholds")
    suffix = f"; {broken}" if broken else ""

    neutral = index.by_mode_emotion.get((target, Expression.NEUTRAL.value))
    if has_emotion:
        p = _best(index, index.by_mode_emotion[(target, emotion)], talking)
        found, reason = f"best {emotion} anchor in {target}", SelectReason.BEST_MATCH
    elif neutral:
        p = _best(index, neutral, talking)
        found, reason = (f"no {emotion} anchor in {target}: its best neutral anchor",
                         SelectReason.NEUTRAL_FALLBACK)
    else:
        p = index.canonical[target]
        found, reason = f"no {emotion} anchor in {target}: its canonical anchor", SelectReason.MODE_CANONICAL
    if talking and index.readiness_of(p) < 2:
        found += " (none with eyes open and mouth closed)"
    if target != mode:
        return _choice(index, p, SelectReason.OTHER_MODE, f"{mode} has no anchors; {found}{suffix}")
    return _choice(index, p, reason, found + suffix)


def _choice(index: SelectionIndex, p: int, reason: SelectReason, detail: str) -> AnchorChoice:
    cols = index.columns()
    return AnchorChoice(
        anchor_id=cols.ids[p],
        image_ref=cols.image_refs[p],
        mode=CameraMode(index.mode_of(p)),
        emotion=Expression(index.expr_of(p)),
        quality=cols.quality[p],
        reason=reason,
        detail=detail,
    )
