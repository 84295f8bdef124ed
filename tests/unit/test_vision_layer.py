"""The face-model layer sits in the core: nothing in persona_core imports the pipeline, and the
registry is usable (entries, defaults) without loading OpenCV or onnxruntime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
