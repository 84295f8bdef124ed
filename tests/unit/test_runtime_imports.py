"""The runtime is small and sealed: no heavy frameworks, and every public name in __all__."""

from __future__ import annotations

import json
import subprocess
import sys

import persona_core.runtime as runtime

FORBIDDEN = (
    "dagster",
    "torch",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "cv2",
    "onnxruntime",
    "boto3",
)


def test_importing_the_runtime_pulls_in_no_framework():
    """A fresh process importing persona_core.runtime (DriftMeter and the face-model registry
    included) loads none of dagster, torch, fastapi (and friends), nor OpenCV or onnxruntime:
    those load only when a DriftMeter is made (shown with a real pack in
    tests/pipeline/test_drift_meter.py::test_opencv_and_onnxruntime_load_only_when_a_meter_is_made)."""
    script = (
        "import json, sys, persona_core.runtime\n"
        "from persona_core.runtime import DriftMeter, FrameDrift\n"
        "from persona_core.vision import registry\n"
        "registry.get_entry(registry.default_model_name('identity'))\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(out.stdout))
    assert "persona_core" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_public_names_are_exported():
    """Every name in __all__ exists, and the hooks and cache are among them."""
    assert all(hasattr(runtime, name) for name in runtime.__all__)
    for name in (
        "PackCache",
        "PackSource",
        "StorePackSource",
        "select_anchor",
        "anchor_refresh_policy",
        "behavior_policy_clamp",
        "DriftMeter",
        "FrameDrift",
        "IdentityModelMismatchError",
        "BadFrameError",
    ):
        assert name in runtime.__all__
