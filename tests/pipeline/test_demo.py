"""The demo a new user runs first: a real persona from the fixtures, built through Dagster,
with progress lines while it works and a summary of anchors, rejections and checks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from persona_pipeline.demo import run_demo

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


def test_demo_builds_and_prints_a_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = run_demo(tmp_path / "home", progress=True, console=Console(file=out, width=200))
    assert summary["status"] == "published"
    assert all(summary["anchors_per_mode"][m] >= 1 for m in ("A_SELFIE", "C_CUTAWAY"))
    assert summary["anchors_per_mode"].get("B_MIRROR", 0) == 0  # no mirror selfie in the set
    rejected = {r["name"]: r["reason"] for r in summary["rejected"]}
    assert "face count" in rejected["two_people.jpg"]
    assert "face count" in rejected["obama_and_biden.jpg"]
    assert rejected["corrupt.jpg"].startswith("unreadable image")
    assert summary["checks"]["enough_anchors"]["passed"]
    assert "biden.jpg" in summary["not_anchors"]
    text = out.getvalue()
    for expected in ("qc: 6 passed", "anchor_sets:", "persona_pack: published", "anchors per mode",
                     "rejected files", "checks"):
        assert expected in text
