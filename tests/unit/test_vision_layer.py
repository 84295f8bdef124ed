"""The face-model layer sits in the core: nothing in persona_core imports the pipeline, the
registry is usable (entries, defaults) without loading OpenCV or onnxruntime, and the builder's
own models and weights live with the builder, registered by an explicit call."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from persona_core.vision.entries import ENTRIES, WEIGHTS_DIR
from persona_pipeline.models import BUILDER_ENTRIES

CORE = Path(__file__).resolve().parents[2] / "persona_core"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_pipeline():
    """No module under persona_core imports persona_pipeline (or the API / CLI above it)."""
    upward = ("persona_pipeline", "registry_api", "persona_cli")
    offenders = {
        str(path.relative_to(CORE)): sorted(m for m in _imported_modules(path) if m.split(".")[0] in upward)
        for path in CORE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_face_registry_loads_without_opencv_or_onnxruntime():
    """Listing the face models and their defaults imports neither cv2 nor onnxruntime."""
    script = (
        "import json, sys\n"
        "from persona_core.vision import registry\n"
        "names = [registry.default_model_name(t) for t in ('detect', 'identity')]\n"
        "print(json.dumps([names, sorted({m.split('.')[0] for m in sys.modules})]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    names, loaded = json.loads(out.stdout)
    assert names == ["yunet-2023mar-int8", "sface-2021dec-int8"]
    assert not {"cv2", "onnxruntime", "onnx", "persona_pipeline"} & set(loaded)


def test_the_builder_models_are_registered_by_a_call_not_by_an_import():
    """Importing the pipeline's models (and the Dagster resources that load them) adds nothing
    to the shared registry; ``register_builder_models()`` adds every builder entry, and a second
    call changes nothing."""
    script = (
        "import json, sys\n"
        "import persona_pipeline.defs.resources\n"
        "import persona_pipeline.models as builder\n"
        "from persona_core.vision import registry\n"
        "before = sorted(e.name for e in registry.list_models())\n"
        "builder.register_builder_models()\n"
        "once = sorted(e.name for e in registry.list_models())\n"
        "builder.register_builder_models()\n"
        "twice = sorted(e.name for e in registry.list_models())\n"
        "print(json.dumps([before, once, twice, [e.name for e in builder.BUILDER_ENTRIES]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    before, once, twice, builder = json.loads(out.stdout)
    assert not set(before) & set(builder)
    assert {"u2netp", "efficientnet-lite0", "mediapipe-face-mesh", "mediapipe-pose-full"} <= set(builder)
    assert once == twice == sorted([*before, *builder])


def test_the_core_keeps_only_the_weights_the_runtime_loads():
    """Every weight file in persona_core/vision/weights is one of the core's own entries'; the
    builder's entries keep theirs with the builder."""
    named = {s.removeprefix("vendored:") for e in ENTRIES for f in e.files for s in f.sources
             if s.startswith("vendored:")}
    held = {p.name for p in WEIGHTS_DIR.iterdir()} - {"NOTICE.md"}
    assert held
    assert held <= named
    assert all(e.weights_dir != WEIGHTS_DIR for e in BUILDER_ENTRIES)
    assert all(e.backend.startswith("persona_pipeline.models.") for e in BUILDER_ENTRIES)
