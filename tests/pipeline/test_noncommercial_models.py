"""A non-commercial model (an InsightFace pack from a local model dir) is used only with an
explicit opt-in, and the published pack records that opt-in next to the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home
from tiny_models import write_buffalo_l

from persona_core.pack import PersonaPack
from persona_core.store.base import VersionStatus
from persona_pipeline.build import build_version
from persona_pipeline.defs.resources import ModelsResource

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _models(model_dir: Path, opt_in: bool) -> ModelsResource:
    # Real YuNet finds the faces; the identity embedder is the (tiny) InsightFace ArcFace.
    return ModelsResource(identity="buffalo_l:identity", model_dir=str(model_dir), masks=False,
                          opt_in_noncommercial=opt_in)


def test_without_opt_in_the_build_fails_with_the_licence_named(
    home: Home, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    model_dir = write_buffalo_l(tmp_path / "models")
    v = home.upload("obama", OBAMA)
    result = build_version("obama", v.version, home.settings, instance, config=FIXTURE_CONFIG,
                           models=_models(model_dir, opt_in=False))
    assert result.status == VersionStatus.FAILED
    assert any("opt_in_noncommercial" in r for r in result.record.reasons), result.record.reasons
    with pytest.raises(LookupError):
        home.meta.get_published("obama", v.version)


def test_with_opt_in_the_pack_records_it(home: Home, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    model_dir = write_buffalo_l(tmp_path / "models", same_identity_for_all=True)
    v = home.upload("obama", OBAMA)
    result = build_version("obama", v.version, home.settings, instance, config=FIXTURE_CONFIG,
                           models=_models(model_dir, opt_in=True))
    assert result.status == VersionStatus.PUBLISHED, result.record.reasons
    published = home.meta.get_published("obama", v.version)
    pack = PersonaPack.model_validate_json(home.blobs.get(published.pack_ref))
    models = {m.task: m for m in pack.provenance.models}
    assert models["identity"].name == "buffalo_l:identity"
    assert models["identity"].noncommercial_opt_in is True
    assert "non-commercial" in models["identity"].licence.lower()
    assert models["detect"].noncommercial_opt_in is False
    assert pack.identity.embedding_dim == 512
