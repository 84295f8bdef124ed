"""The canonical anchor of a mode is chosen for rendering: mouth closed, neutral with
confidence, eyes open, near-frontal, sharp, in that order, then quality; the choice and its
reason are recorded. The demo's canonical close-up is neutral with the mouth closed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from persona_core.pack import CameraMode, Expression, PersonaPack, RenderCriterion
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_pipeline.demo import PERSONA_ID, run_demo
from persona_pipeline.steps.canonical import choose_canonical
from persona_pipeline.steps.config import PipelineConfig

CONFIG = PipelineConfig()


@dataclass(frozen=True)
class Photo:
    anchor_id: str
    expression: str = "neutral"
    expression_confidence: float = 1.0
    eye_open: float = 0.8
    mouth_open: float = 0.0
    head_pose: tuple[float, float, float] = (0.0, 5.0, 0.0)
    sharpness: float = 0.9
    overall: float = 0.7
    quality: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quality", {"sharpness": self.sharpness, "overall": self.overall})


READY = Photo("ready", overall=0.6)
CASES = [
    # The demo's case: a better-scored smile and an open-mouthed low-confidence neutral lose to
    # the neutral, mouth-closed photo.
    ("smile and open mouth lose", [Photo("smile", "happy", overall=0.9),
                                   Photo("open", expression_confidence=0.5, mouth_open=1.0, overall=0.8),
                                   READY], "ready"),
    ("neutral needs confidence", [Photo("unsure", expression_confidence=0.6, overall=0.9), READY], "ready"),
    ("mouth closed before neutral", [Photo("talking", mouth_open=0.5, overall=0.9),
                                     Photo("smile", "happy", overall=0.5)], "smile"),
    ("neutral before eyes", [Photo("smile", "happy", overall=0.9),
                             Photo("sleepy", eye_open=0.2, overall=0.5)], "sleepy"),
    ("near-frontal before sharp", [Photo("turned", head_pose=(30.0, 0.0, 0.0), overall=0.9),
                                   Photo("soft", sharpness=0.3, overall=0.5)], "soft"),
    ("pitch counts too", [Photo("down", head_pose=(0.0, -25.0, 0.0), overall=0.9), READY], "ready"),
    ("quality breaks ties", [READY, Photo("better", overall=0.8)], "better"),
    ("then the anchor id", [Photo("b"), Photo("a")], "a"),
]


@pytest.mark.parametrize(("case", "pool", "expected"), CASES, ids=[c for c, _, _ in CASES])
def test_canonical_is_ranked_by_the_render_criteria_then_quality(
    case: str, pool: list[Photo], expected: str
) -> None:
    """A photo meeting an earlier criterion beats every photo missing it, whatever its quality;
    among equals the better quality wins, then the smaller anchor id; the input order never
    matters."""
    for order in (pool, pool[::-1]):
        chosen, choice = choose_canonical(order, "A_SELFIE", CONFIG)
        assert chosen.anchor_id == expected, case
        assert choice.candidates == len(pool)


def test_the_choice_records_what_it_meets_and_why() -> None:
    chosen, choice = choose_canonical([Photo("smile", "happy", overall=0.9), READY], "A_SELFIE", CONFIG)
    assert chosen is READY
    assert choice.render_ready
    assert choice.met == list(RenderCriterion)
    assert choice.missed == []
    assert choice.reason == ("render-ready (mouth closed 0.95, neutral 1.00, eyes open 1.00, yaw 0, pitch 5, "
                             "sharpness 0.90); the best quality (0.60) of 1 render-ready photo(s) among 2 "
                             "in A_SELFIE")
    opened = [Photo("open", expression_confidence=0.5, mouth_open=0.9),
              Photo("smile", "happy", mouth_open=0.7)]
    _, fallback = choose_canonical(opened, "C_CUTAWAY", CONFIG)
    assert not fallback.render_ready
    assert fallback.met == [RenderCriterion.EYES_OPEN, RenderCriterion.NEAR_FRONTAL, RenderCriterion.SHARP]
    assert fallback.missed == [RenderCriterion.MOUTH_CLOSED, RenderCriterion.NEUTRAL]
    assert fallback.reason.startswith("not render-ready, misses mouth closed; neutral with confidence >= "
                                      "0.70 (mouth open 1.00, neutral 0.50")
    assert fallback.reason.endswith("; first of the 2 photos in C_CUTAWAY by the criteria in order (mouth "
                                    "closed, neutral, eyes open, near-frontal, sharp), then quality (0.70)")
    _, only = choose_canonical(opened[:1], "C_CUTAWAY", CONFIG)
    assert only.reason.endswith("; the only usable photo in C_CUTAWAY")


@pytest.mark.dagster
@pytest.mark.models
@pytest.mark.slow
def test_demo_canonical_selfie_is_neutral_with_the_mouth_closed(tmp_path: Path) -> None:
    """What a single-reference renderer gets from the demo pack: its canonical A_SELFIE anchor
    is neutral with the mouth closed (obama1.jpg, not the higher-scored open-mouthed photos),
    and the pack says why."""
    home = tmp_path / "home"
    summary = run_demo(home, progress=False)
    assert summary["status"] == "published"
    settings = Settings(home=home)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    published = meta.get_published(PERSONA_ID, summary["version"])
    pack = PersonaPack.model_validate_json(blobs.get(published.pack_ref))
    names = {r.sha256: r.name for r in pack.provenance.inputs}
    for mode, anchors in pack.anchor_sets.items():
        canonical, *rest = anchors
        assert canonical.canonical
        assert canonical.metadata.canonical_choice is not None, mode
        assert all(not a.canonical and a.metadata.canonical_choice is None for a in rest)
    selfie = pack.anchor_sets[CameraMode.A_SELFIE][0]
    md = selfie.metadata
    assert names[selfie.source_sha256] == "obama1.jpg"
    assert md.expression_tag == Expression.NEUTRAL
    assert md.mouth_closed is not None
    assert md.mouth_closed.value
    assert md.eyes_open is not None
    assert md.eyes_open.value
    choice = md.canonical_choice
    assert choice is not None
    assert choice.render_ready
    assert choice.candidates == len(pack.anchor_sets[CameraMode.A_SELFIE])
    assert choice.reason.startswith("render-ready (mouth closed 0.95, neutral 1.00")
