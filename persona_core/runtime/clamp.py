"""``behavior_policy_clamp``: keep an actor timeline inside the persona's behaviour policy.

Per event: an emotion the policy does not allow becomes ``neutral``; intensity is clamped
to the (resulting) emotion's range; a gesture the policy does not allow is removed. Every
change is recorded as a ClampAdjustment. ``neutral`` is always allowed (with the default
0..1 range when the policy names no range for it), since it is what everything else falls
back to. No policy means the safe defaults of ``persona_core.pack.default_behavior_policy``.

The policy is compiled once into lookup tables (cached per policy object / pack), so an
event inside the policy costs a few dict and tuple lookups and is passed through as the
very same object; only changed events are rebuilt. The input is never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, NotRequired, TypeAlias, TypedDict, TypeVar, cast, overload

from persona_core.errors import InvalidInputError
from persona_core.pack import (
    DEFAULT_EMOTION_RANGES,
    BehaviorPolicy,
    Expression,
    PersonaPack,
    default_behavior_policy,
)
from persona_core.runtime._identity_cache import IdentityCache
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.select import index_of

NEUTRAL = Expression.NEUTRAL.value


# NamedTuples rather than dataclasses: immutable like a frozen dataclass, but built and
# read several times faster, which matters at thousands of events per call.
class ActorEvent(NamedTuple):
    t: float
    emotion: str
    intensity: float
    gesture: str | None = None


class ActorEventDict(TypedDict):
    """An actor event in its JSON form (what a timeline read from JSON holds)."""

    t: float
    emotion: str
    intensity: float
    gesture: NotRequired[str | None]


Event = TypeVar("Event", ActorEvent, ActorEventDict)
ClampValue: TypeAlias = str | float | None  # an emotion, an intensity or a gesture


class ClampAdjustment(NamedTuple):
    event_index: int
    field: str
    before: ClampValue
    after: ClampValue
    reason: str


@dataclass(frozen=True, slots=True)
class ClampResult(Generic[Event]):
    """The clamped timeline, in the form it came in (ActorEvents or mappings)."""

    events: tuple[Event, ...]
    adjustments: tuple[ClampAdjustment, ...]

    @property
    def changed(self) -> bool:
        return bool(self.adjustments)


@dataclass(frozen=True, slots=True)
class ClampTables:
    """A behaviour policy compiled for the clamp loop."""

    ranges: dict[str, tuple[float, float]]
    gestures: frozenset[str]

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ClampTables:
        """From a BehaviorPolicy's JSON form (``emotion_ranges``, ``allowed_gestures``)."""
        ranges = {str(emo): (float(r["min"]), float(r["max"])) for emo, r in doc["emotion_ranges"].items()}
        default_neutral = DEFAULT_EMOTION_RANGES[Expression.NEUTRAL]
        ranges.setdefault(NEUTRAL, (default_neutral.min, default_neutral.max))
        return cls(ranges=ranges, gestures=frozenset(doc["allowed_gestures"]))

    @classmethod
    def from_policy(cls, policy: BehaviorPolicy) -> ClampTables:
        return cls.from_document(policy.model_dump(mode="json"))


DEFAULT_TABLES = ClampTables.from_policy(default_behavior_policy())
_POLICY_TABLES: IdentityCache[BehaviorPolicy, ClampTables] = IdentityCache(ClampTables.from_policy)


BehaviorPolicySource: TypeAlias = BehaviorPolicy | CachedPack | PersonaPack | None
"""Where the clamp's limits come from: a BehaviorPolicy, a pack's own, or None (the defaults)."""


def tables_of(policy: BehaviorPolicySource) -> ClampTables:
    """Compiled tables for a BehaviorPolicy, CachedPack, PersonaPack or None (defaults)."""
    if policy is None:
        return DEFAULT_TABLES
    if isinstance(policy, BehaviorPolicy):
        return _POLICY_TABLES.get(policy)
    if type(policy) is CachedPack or isinstance(policy, PersonaPack):
        index = index_of(policy)
        tables: ClampTables | None = index.clamp_tables
        if tables is None:
            tables = ClampTables.from_document(index.behavior_policy_doc)
            index.clamp_tables = tables
        return tables
    raise InvalidInputError(
        f"expected a BehaviorPolicy, CachedPack or PersonaPack, got {type(policy).__name__}"
    )


@overload
def behavior_policy_clamp(
    actor_timeline: Sequence[ActorEvent], policy: BehaviorPolicySource = None
) -> ClampResult[ActorEvent]: ...


@overload
def behavior_policy_clamp(
    actor_timeline: Sequence[ActorEventDict], policy: BehaviorPolicySource = None
) -> ClampResult[ActorEventDict]: ...


def behavior_policy_clamp(
    actor_timeline: Sequence[ActorEvent] | Sequence[ActorEventDict], policy: BehaviorPolicySource = None
) -> ClampResult[ActorEvent] | ClampResult[ActorEventDict]:
    """Clamp a timeline of ActorEvents or mappings (keys ``t``, ``emotion``, ``intensity``,
    optional ``gesture``) to ``policy``. Returns the clamped events (unchanged ones are the
    input objects themselves) and what was changed and why. Malformed events raise
    InvalidInputError naming their index."""
    if isinstance(actor_timeline, str | bytes | Mapping) or not isinstance(actor_timeline, Sequence):
        raise InvalidInputError(
            f"actor_timeline must be a sequence of events, got {type(actor_timeline).__name__}"
        )
    tables = tables_of(policy)
    if not actor_timeline:
        return ClampResult((), ())
    ranges, gestures = tables.ranges, tables.gestures
    out: list[Any] = []  # of the input's form; the overloads above type the result
    append = out.append
    adjustments: list[ClampAdjustment] = []
    add = adjustments.append
    i = 0
    try:
        # The first event decides the form of all (a mapping among ActorEvents is malformed).
        if isinstance(actor_timeline[0], ActorEvent):
            for i, ev in enumerate(cast("Sequence[ActorEvent]", actor_timeline)):
                emo, x, g = ev[1], ev[2], ev[3]
                r = ranges.get(emo)
                if r is not None and r[0] <= x <= r[1] and (g is None or g in gestures):
                    append(ev)
                else:
                    emo, x, g = _fix(i, emo, x, g, ranges, gestures, add)
                    append(_make_event((ev[0], emo, x, g)))
        else:
            for i, mapping in enumerate(cast("Sequence[ActorEventDict]", actor_timeline)):
                emo, x, g = mapping["emotion"], mapping["intensity"], mapping.get("gesture")
                r = ranges.get(emo)
                if r is not None and r[0] <= x <= r[1] and (g is None or g in gestures):
                    append(mapping)
                else:
                    fixed = mapping.copy()
                    fixed["emotion"], fixed["intensity"], new_g = _fix(i, emo, x, g, ranges, gestures, add)
                    if new_g is not g:
                        fixed["gesture"] = new_g
                    append(fixed)
    except (TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidInputError(f"event {i} is malformed ({type(exc).__name__}: {exc})") from None
    return ClampResult(tuple(out), tuple(adjustments))


# Built straight from a tuple: NamedTuple.__new__ binds arguments in Python, _make does not.
_make_event = ActorEvent._make
_make_adjustment = ClampAdjustment._make


def _fix(  # noqa: PLR0917 - hot-loop helper: positional calls are the cheapest
    i: int,
    emo: Any,
    x: Any,
    g: Any,
    ranges: dict[str, tuple[float, float]],
    gestures: frozenset[str],
    add: Callable[[ClampAdjustment], None],
) -> tuple[str, float, str | None]:
    r = ranges.get(emo)
    if r is None:
        if not isinstance(emo, str):
            raise InvalidInputError(f"event {i}: emotion must be a string, got {emo!r}")
        add(_make_adjustment((i, "emotion", emo, NEUTRAL, "emotion_not_allowed")))
        emo = NEUTRAL
        r = ranges[NEUTRAL]
    lo, hi = r
    if x > hi:
        add(_make_adjustment((i, "intensity", x, hi, "intensity_above_max")))
        x = hi
    elif x < lo:
        add(_make_adjustment((i, "intensity", x, lo, "intensity_below_min")))
        x = lo
    elif not lo <= x:  # only NaN fails all three comparisons
        raise InvalidInputError(f"event {i}: intensity must be a number, got {x!r}")
    if g is not None and g not in gestures:
        if not isinstance(g, str):
            raise InvalidInputError(f"event {i}: gesture must be a string or None, got {g!r}")
        add(_make_adjustment((i, "gesture", g, None, "gesture_not_allowed")))
        g = None
    return emo, x, g
