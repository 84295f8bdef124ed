"""``make eval-tags`` runs on the committed labelled set: it prints the per-tag figures and
confusion matrices and merges the tags_* keys into the results file, keeping the others."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "tests" / "fixtures" / "tags_eval" / "labels.csv"
EXPRESSIONS5 = {"neutral", "happy", "surprised", "sad", "angry"}


def test_eval_tags_prints_and_writes_the_figures(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"builder_seconds_per_image": 0.05}))
    run = subprocess.run([sys.executable, "-m", "bench.eval_tags", "--results", str(results), "--no-opt-in"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(results.read_text())
    assert doc["builder_seconds_per_image"] == 0.05  # other benchmarks' keys are kept
    with LABELS.open(newline="") as fh:
        labels = list(csv.DictReader(fh))
    assert doc["tags_n_photos"] == len(labels) >= 80
    assert doc["tags_n_people"] == len({r["person"] for r in labels}) >= 20
    for key in ("tags_framing_accuracy", "tags_camera_mode_accuracy", "tags_happy_vs_not_accuracy",
                "tags_expression5_accuracy", "tags_yaw_abs_error_median_deg"):
        assert isinstance(doc[key], float), key
    assert 0.0 <= doc["tags_framing_accuracy"] <= 1.0
    matrix = doc["tags_expression5_confusion"]
    assert set(matrix) == EXPRESSIONS5
    assert sum(sum(row.values()) for row in matrix.values()) == sum(r["expression"] in EXPRESSIONS5
                                                                    for r in labels)
    assert isinstance(doc["tags_goals_missed"], list)
    assert "tags_framing_confusion (rows: truth, columns: predicted)" in run.stdout
    assert "goals missed:" in run.stdout
