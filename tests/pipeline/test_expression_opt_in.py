"""An expression classifier with research-only weights (the FER-2013 entry's terms) runs only
with the opt-in, and the published pack records it, per model, next to the others."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home
from tiny_models import pooled_linear_graph, save

from persona_core.pack import PersonaPack
from persona_core.store.base import VersionStatus
from persona_core.vision import registry
from persona_core.vision.base import WeightFile
from persona_pipeline.build import build_version
from persona_pipeline.defs.resources import ModelsResource
from persona_pipeline.models.tag_entries import FER2013_EXPRESSION

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

TINY = "tiny-fer-expression"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A stand-in with the FER graph's signature ((1, 64, 64, 1) gray face -> 7 scores) and the
    same licence terms, in a local model dir."""
    root = tmp_path / "models"
    weight = np.zeros((64, 7), np.float32)
    weight[:, 6] = 1.0  # everything reads "neutral"
    save(pooled_linear_graph("x", [1, 64, 64, 1], "scores", weight), root / "tiny_fer.onnx")
    registry.register(replace(FER2013_EXPRESSION, name=TINY, files=(WeightFile("tiny_fer.onnx", ""),)),
                      replace_existing=True)
    return root


def _models(model_dir: Path, opt_in: bool) -> ModelsResource:
    return ModelsResource(expression=TINY, model_dir=str(model_dir), masks=False, opt_in_noncommercial=opt_in)


def test_without_opt_in_the_build_fails_with_the_licence_named(
    home: Home, model_dir: Path, instance: dg.DagsterInstance
) -> None:
    v = home.upload("obama", OBAMA)
    result = build_version("obama", v.version, home.settings, instance, config=FIXTURE_CONFIG,
                           models=_models(model_dir, opt_in=False))
    assert result.status == VersionStatus.FAILED
    assert any("opt_in_noncommercial" in r and "research" in r for r in result.record.reasons)


def test_with_opt_in_the_pack_records_the_expression_model(
    home: Home, model_dir: Path, instance: dg.DagsterInstance
) -> None:
    v = home.upload("obama", OBAMA)
    result = build_version("obama", v.version, home.settings, instance, config=FIXTURE_CONFIG,
                           models=_models(model_dir, opt_in=True))
    assert result.status == VersionStatus.PUBLISHED, result.record.reasons
    published = home.meta.get_published("obama", v.version)
    pack = PersonaPack.model_validate_json(home.blobs.get(published.pack_ref))
    models = {m.task: m for m in pack.provenance.models}
    assert models["expression"].name == TINY
    assert models["expression"].noncommercial_opt_in is True
    assert "research" in models["expression"].licence
    # The permissive mesh and pose models are recorded too, without an opt-in.
    assert models["face_mesh"].noncommercial_opt_in is False
    assert models["pose"].noncommercial_opt_in is False
    # The stand-in says neutral for every face: the tags come from the classifier, not the mesh.
    anchors = [a for items in pack.anchor_sets.values() for a in items]
    assert {a.metadata.expression_tag.value for a in anchors} == {"neutral"}
