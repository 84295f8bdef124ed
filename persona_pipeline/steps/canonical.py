"""The canonical anchor of a camera mode: the one image a single-reference renderer takes (a
talking-head model animates from it), so it is chosen for rendering, not for quality alone.

A mode's usable photos are ranked by the render criteria in order, then by quality, then id:

1. mouth closed: the anchor's ``mouth_closed`` tag (openness at most ``mouth_closed_max``);
2. neutral: expression ``neutral`` with at least ``canonical_min_neutral_confidence``;
3. eyes open: its ``eyes_open`` tag (the less open eye at least ``min_eye_open``);
4. near-frontal: |yaw| and |pitch| within ``canonical_max_abs_yaw`` / ``canonical_max_abs_pitch``;
5. sharp: the sharpness score at least ``canonical_min_sharpness``.

A photo that meets an earlier criterion beats every photo that misses it, so whenever a mode
has a neutral, mouth-closed photo its canonical anchor is one. The mouth comes first: the
renderer drives the mouth from this frame, and one that starts open shows teeth and breaks lip
sync, while a closed-mouth smile still animates (and an open mouth already lowers the neutral
confidence). The choice and its reason go on the canonical anchor (``metadata.canonical_choice``),
the contact sheet and the viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from persona_core.errors import InvalidInputError
from persona_core.pack import CanonicalChoice, Expression, RenderCriterion
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.qc import binary_tag

LABELS = {
    RenderCriterion.MOUTH_CLOSED: "mouth closed",
    RenderCriterion.NEUTRAL: "neutral",
    RenderCriterion.EYES_OPEN: "eyes open",
    RenderCriterion.NEAR_FRONTAL: "near-frontal",
    RenderCriterion.SHARP: "sharp",
}


class RenderTags(Protocol):
    """What the choice reads of a candidate anchor (``anchors.Candidate`` has it)."""

    @property
    def anchor_id(self) -> str: ...
    @property
    def expression(self) -> str: ...
    @property
    def expression_confidence(self) -> float: ...
    @property
    def eye_open(self) -> float: ...
    @property
    def mouth_open(self) -> float: ...
    @property
    def head_pose(self) -> tuple[float, float, float]: ...
    @property
    def quality(self) -> dict[str, float]: ...


T = TypeVar("T", bound=RenderTags)


def render_criteria(c: RenderTags, config: PipelineConfig) -> dict[RenderCriterion, bool]:
    """Which render criteria the photo meets, in ``RenderCriterion`` order."""
    yaw, pitch, _ = c.head_pose
    return {
        RenderCriterion.MOUTH_CLOSED: c.mouth_open <= config.mouth_closed_max,
        RenderCriterion.NEUTRAL: c.expression == Expression.NEUTRAL.value
        and c.expression_confidence >= config.canonical_min_neutral_confidence,
        RenderCriterion.EYES_OPEN: c.eye_open >= config.min_eye_open,
        RenderCriterion.NEAR_FRONTAL: abs(yaw) <= config.canonical_max_abs_yaw
        and abs(pitch) <= config.canonical_max_abs_pitch,
        RenderCriterion.SHARP: c.quality["sharpness"] >= config.canonical_min_sharpness,
    }


def rank_for_rendering(pool: Sequence[T], config: PipelineConfig) -> list[T]:
    """``pool`` best first for rendering: criteria in order, then quality, then anchor id."""
    def key(c: T) -> tuple[tuple[bool, ...], float, str]:
        missed = tuple(not met for met in render_criteria(c, config).values())
        return missed, -c.quality["overall"], c.anchor_id

    return sorted(pool, key=key)


def choose_canonical(pool: Sequence[T], mode: str, config: PipelineConfig) -> tuple[T, CanonicalChoice]:
    """The mode's canonical anchor among ``pool`` (its usable photos) and why it was chosen;
    InvalidInputError for an empty pool."""
    if not pool:
        raise InvalidInputError(f"{mode}: no photo to choose a canonical anchor from")
    best, *_ = ranked = rank_for_rendering(pool, config)
    criteria = render_criteria(best, config)
    met = [k for k, ok in criteria.items() if ok]
    missed = [k for k, ok in criteria.items() if not ok]
    facts = _facts(best, config)
    quality = best.quality["overall"]
    verdict = (f"render-ready ({facts})" if not missed else
               f"not render-ready, misses {'; '.join(_wanted(k, config) for k in missed)} ({facts})")
    if len(pool) == 1:
        why = f"the only usable photo in {mode}"
    elif not missed:
        ready = sum(1 for c in ranked if all(render_criteria(c, config).values()))
        why = f"the best quality ({quality:.2f}) of {ready} render-ready photo(s) among {len(pool)} in {mode}"
    else:
        why = (f"first of the {len(pool)} photos in {mode} by the criteria in order "
               f"({', '.join(LABELS.values())}), then quality ({quality:.2f})")
    reason = f"{verdict}; {why}"
    return best, CanonicalChoice(render_ready=not missed, met=met, missed=missed, candidates=len(pool),
                                 reason=reason)


def verdict_words(choice: CanonicalChoice) -> str:
    """"render-ready", or the criteria the canonical anchor misses (progress lines)."""
    return "render-ready" if choice.render_ready else "misses " + ", ".join(LABELS[k] for k in choice.missed)


def _wanted(criterion: RenderCriterion, config: PipelineConfig) -> str:
    """A missed criterion with its threshold."""
    return {
        RenderCriterion.MOUTH_CLOSED: "mouth closed",
        RenderCriterion.NEUTRAL: f"neutral with confidence >= {config.canonical_min_neutral_confidence:.2f}",
        RenderCriterion.EYES_OPEN: "eyes open",
        RenderCriterion.NEAR_FRONTAL: (f"near-frontal (|yaw| <= {config.canonical_max_abs_yaw:g}, "
                                       f"|pitch| <= {config.canonical_max_abs_pitch:g})"),
        RenderCriterion.SHARP: f"sharpness >= {config.canonical_min_sharpness:.2f}",
    }[criterion]


def _facts(c: RenderTags, config: PipelineConfig) -> str:
    """The measurements behind the criteria, as the contact sheet and viewer word the tags."""
    eyes, eyes_conf = binary_tag(c.eye_open, config.min_eye_open, above=True)
    mouth, mouth_conf = binary_tag(c.mouth_open, config.mouth_closed_max, above=False)
    yaw, pitch, _ = c.head_pose
    return (f"mouth {'closed' if mouth else 'open'} {mouth_conf:.2f}, {c.expression} "
            f"{c.expression_confidence:.2f}, eyes {'open' if eyes else 'shut'} {eyes_conf:.2f}, "
            f"yaw {yaw:.0f}, pitch {pitch:.0f}, sharpness {c.quality['sharpness']:.2f}")
