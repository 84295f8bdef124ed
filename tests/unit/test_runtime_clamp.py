"""behavior_policy_clamp: emotions, intensities and gestures kept inside the persona's policy."""

from __future__ import annotations

import copy

import pytest

from persona_core.errors import InvalidInputError
from persona_core.pack import BehaviorPolicy, Range
from persona_core.runtime import ActorEvent, ClampAdjustment, behavior_policy_clamp
from persona_core.store.local import LocalBlobStore
from persona_core.testing import make_pack

STRICT = BehaviorPolicy(
    emotion_ranges={"happy": Range(min=0.2, max=0.6), "sad": Range(min=0.0, max=0.4)},
    allowed_gestures=["nod"],
)


def ev(emotion: str, intensity: float, gesture: str | None = None, t: float = 0.0) -> dict:
    return {"t": t, "emotion": emotion, "intensity": intensity, "gesture": gesture}


@pytest.mark.parametrize(
    ("event", "policy", "expected", "reasons"),
    [
        # defaults: angry max 0.3, happy 0.8, neutral 0..1; gestures nod/head_tilt/smile/blink/shrug/hand_wave
        (ev("happy", 0.5, "nod"), None, ev("happy", 0.5, "nod"), []),
        (ev("angry", 0.9), None, ev("angry", 0.3), ["intensity_above_max"]),
        (ev("rage", 0.7), None, ev("neutral", 0.7), ["emotion_not_allowed"]),
        (ev("happy", 0.5, "middle_finger"), None, ev("happy", 0.5, None), ["gesture_not_allowed"]),
        (ev("angry", 1.0, "punch"), None, ev("angry", 0.3), ["intensity_above_max", "gesture_not_allowed"]),
        (ev("happy", 0.1), STRICT, ev("happy", 0.2), ["intensity_below_min"]),
        (ev("happy", 0.6, "nod"), STRICT, ev("happy", 0.6, "nod"), []),  # range ends are inside
        (ev("angry", 0.1), STRICT, ev("neutral", 0.1), ["emotion_not_allowed"]),  # not in this policy
        (ev("happy", 0.3, "smile"), STRICT, ev("happy", 0.3), ["gesture_not_allowed"]),
        # neutral is always allowed, with the default 0..1 range when the policy names none
        (ev("neutral", 0.9), STRICT, ev("neutral", 0.9), []),
        (ev("surprised", 1.5), STRICT, ev("neutral", 1.0), ["emotion_not_allowed", "intensity_above_max"]),
    ],
)
def test_events_are_clamped_to_the_policy(event, policy, expected, reasons):
    """Disallowed emotions become neutral, intensities clamp, disallowed gestures go, reasons kept."""
    result = behavior_policy_clamp([event], policy)
    assert result.events == (expected,)
    assert [a.reason for a in result.adjustments] == reasons
    assert all(a.event_index == 0 for a in result.adjustments)
    assert result.changed == bool(reasons)


def test_adjustments_record_field_before_and_after():
    """Each change names the event index, the field and its old and new value."""
    result = behavior_policy_clamp([ev("happy", 0.5), ev("angry", 0.9, "punch", t=1.0)])
    assert result.adjustments == (
        ClampAdjustment(1, "intensity", 0.9, 0.3, "intensity_above_max"),
        ClampAdjustment(1, "gesture", "punch", None, "gesture_not_allowed"),
    )


def test_unchanged_events_pass_through_and_input_is_not_mutated():
    """Events inside the policy are returned as the same objects; the caller's timeline is untouched."""
    timeline = [
        ev("happy", 0.5, "nod", t=0.0),
        ev("angry", 0.9, "punch", t=0.5),
        {"t": 1.0, "emotion": "sad", "intensity": 0.2},
    ]
    before = copy.deepcopy(timeline)
    result = behavior_policy_clamp(timeline)
    assert timeline == before
    assert result.events[0] is timeline[0]
    assert result.events[2] is timeline[2]
    assert result.events[1] is not timeline[1]
    assert result.events[1]["t"] == 0.5  # other keys survive the rewrite


def test_typed_events_come_back_typed():
    """ActorEvent timelines are clamped into ActorEvents."""
    result = behavior_policy_clamp([ActorEvent(0.0, "angry", 0.9, "nod"), ActorEvent(0.1, "happy", 0.4)])
    assert result.events == (ActorEvent(0.0, "angry", 0.3, "nod"), ActorEvent(0.1, "happy", 0.4))
    assert all(isinstance(e, ActorEvent) for e in result.events)


def test_policy_can_come_from_a_pack(tmp_path):
    """A PersonaPack's behavior_policy is used when the pack is passed as the policy."""
    blobs = LocalBlobStore(tmp_path, b"s", "http://127.0.0.1")
    pack = make_pack(blobs, "clamp", 1, n_anchors=3, behavior=STRICT)
    assert behavior_policy_clamp([ev("happy", 0.9)], pack).events == (ev("happy", 0.6),)
    assert behavior_policy_clamp([ev("happy", 0.9)]).events == (ev("happy", 0.8),)


def test_empty_timeline_is_empty():
    """No events in, no events out."""
    result = behavior_policy_clamp([])
    assert (result.events, result.adjustments) == ((), ())


@pytest.mark.parametrize(
    "timeline",
    [
        [{"t": 0, "emotion": "happy"}],  # no intensity
        [{"t": 0, "intensity": 0.3}],  # no emotion
        [ev("happy", float("nan"))],
        [ev("happy", "loud")],
        [ev(5, 0.3)],  # type: ignore[arg-type]
        [ev("happy", 0.3, gesture=7)],  # type: ignore[arg-type]
        [ev("happy", 0.3), "smile"],
        [ActorEvent(0, "happy", 0.3), ev("happy", 0.3)],  # mixed kinds
        {"t": 0, "emotion": "happy", "intensity": 0.3},  # one event, not a timeline
        "happy",
    ],
)
def test_malformed_timelines_raise_typed_errors(timeline):
    """Missing fields, non-numeric or NaN intensities and non-sequence timelines raise InvalidInputError."""
    with pytest.raises(InvalidInputError):
        behavior_policy_clamp(timeline)


def test_unknown_policy_type_is_refused():
    """A policy that is not a BehaviorPolicy or pack raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        behavior_policy_clamp([ev("happy", 0.3)], {"allowed_gestures": []})
