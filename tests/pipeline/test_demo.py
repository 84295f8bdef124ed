"""The demo a new user runs first: a real persona from the fixtures, built through Dagster,
with progress lines while it works and a summary of anchors, rejections and checks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from persona_pipeline.defs.resources import ModelsResource
from persona_pipeline.demo import DEMO_GATE, print_summary, run_demo

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


def test_demo_builds_and_prints_a_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    # In a whole test run an earlier test may have loaded the voice model in this process.
    voice_unloaded = bool(ModelsResource().unloaded("voice"))
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
    # The demo's own gate is said before the build and in the summary, next to the default.
    assert summary["gate"] == DEMO_GATE
    assert text.count("1 A_SELFIE anchor, 1 C_CUTAWAY anchor (the demo's own gate; the default") == 2
    assert "3 A_SELFIE anchors" in DEMO_GATE
    if voice_unloaded:
        assert "inputs: loading models" in text  # the voice model's wait is announced (it loads first)


def test_the_checks_table_says_warn_for_a_warn_check_and_fail_only_for_an_error_check() -> None:
    """Defaults written for a missing voice config are something to look at, not a failure."""
    out = io.StringIO()
    checks = {"config_defaults": {"passed": False, "severity": "WARN", "description": "defaults written"},
              "enough_anchors": {"passed": False, "severity": "ERROR", "description": "too few"},
              "identity_stability": {"passed": True, "severity": "WARN", "description": "agree"}}
    summary = {"persona_id": "p", "version": 1, "status": "blocked", "seconds": 1.0, "content_hash": None,
               "reasons": [], "anchors_per_mode": {}, "rejected": [], "not_anchors": {}, "checks": checks}
    print_summary(summary, Console(file=out, width=200))
    rows = {line.split()[1]: line.split()[5] for line in out.getvalue().splitlines()
            if line.startswith("│ ") and line.split()[1] in summary["checks"]}
    assert rows == {"config_defaults": "warn", "enough_anchors": "FAIL", "identity_stability": "pass"}
