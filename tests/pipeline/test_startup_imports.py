"""A fresh `persona-core build` loads only what its inputs need: every sensor-, UI- or
CLI-launched run is a new process, and each heavy import is paid by every run of a fleet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from persona_core.vision.registry import load_identity
from persona_pipeline.models import load_style, load_voice

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "examples" / "photos"
VOICES = ROOT / "tests" / "fixtures" / "voices"

# Run the CLI's build in this fresh process, then write the top-level modules it imported.
SCRIPT = """
import json, sys
from persona_cli.main import app
try:
    app(["--json", "build", sys.argv[1], "--persona", "fresh"], standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
open(sys.argv[2], "w").write(json.dumps(sorted(sys.modules)))
"""


def _fresh_build(folder: Path, home: Path) -> set[str]:
    modules = home / "modules.json"
    env = os.environ | {"PERSONA_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(modules)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "published", summary
    return set(json.loads(modules.read_text()))


@pytest.fixture(scope="module")
def warm_model_cache() -> None:
    """The model cache as any build after a machine's first leaves it (the exports and
    optimized graphs written); the first build ever pays torch once, for the exports."""
    load_style()
    load_identity()
    load_voice()


def test_a_build_without_voice_clips_does_not_import_torch(tmp_path: Path, warm_model_cache: None) -> None:
    """Photos only: neither torch nor the voice model's stack (resemblyzer, librosa) is imported."""
    loaded = _fresh_build(PHOTOS, tmp_path)
    assert "persona_pipeline.defs.assets" in loaded  # the build really ran here
    assert loaded.isdisjoint({"torch", "resemblyzer", "librosa"}), sorted(
        loaded & {"torch", "resemblyzer", "librosa"}
    )


def test_a_build_with_voice_clips_on_a_warm_cache_imports_no_torch_librosa_or_scipy_signal(
    tmp_path: Path, warm_model_cache: None
) -> None:
    """4 photos + 2 voice clips (22.05 kHz, resampled): the voice model runs on onnxruntime
    from the cached graph, so torch, resemblyzer, librosa, numba, scipy.signal, onnx (the SFace
    fold) and boto3 (blobs on the local default) stay unimported."""
    folder = tmp_path / "inputs"
    shutil.copytree(PHOTOS, folder)
    for clip in ("a1.wav", "a2.wav"):
        shutil.copy(VOICES / clip, folder / clip)
    loaded = _fresh_build(folder, tmp_path / "home")
    heavy = {"torch", "resemblyzer", "librosa", "numba", "scipy.signal", "onnx", "boto3"}
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)
    assert "persona_pipeline.models.voice_features" in loaded  # the voice clips were embedded
