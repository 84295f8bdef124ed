"""The QC table in the asset's metadata stays readable in the Dagster UI: the camera mode's
evidence is one short line per row, and the whole evidence is beside the table, per file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import OBAMA, Home

from persona_pipeline.build import build_version
from persona_pipeline.steps.config import PipelineConfig

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


def test_the_evidence_column_is_one_short_line_and_the_whole_evidence_is_beside_it(tmp_path: Path) -> None:
    home = Home(tmp_path)
    v = home.upload("obama", OBAMA)
    with dg.instance_for_test() as instance:
        result = build_version("obama", v.version, home.settings, instance,
                               config=PipelineConfig(required_modes=()), only=["inputs", "qc"])
    table = result.metadata["qc"]["qc_table"]
    cells = [record.data["mode_evidence"] for record in table.records]
    assert len(cells) == len(OBAMA)
    for cell in cells:
        assert cell.startswith("face 0.")
        assert "{" not in cell
        assert len(cell) <= 80, cell
    evidence = result.metadata["qc"]["mode_evidence"]
    assert set(evidence) == set(OBAMA)
    for doc in evidence.values():
        assert {"face_frac", "frame_below_face", "lowest_body_part", "facing_camera", "mirror_cue",
                "why"} <= set(doc)
