"""Optimized ONNX graphs cached on disk across processes (persona_core/vision/graph_cache.py):
a fresh process loads the cached graph instead of refolding the weights, gets the same
embeddings, and a cache file that is corrupt or stale is never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from persona_core.vision import graph_cache
from persona_core.vision.registry import clear_cache, load_identity

FACE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "obama.jpg"

# Detect, align and embed the fixture photo in a fresh process; print how the identity model's
# graph was made and whether the onnx package (only needed to fold the weights) was imported.
SCRIPT = f"""
import json, sys
import cv2
from persona_core.vision.align import align_face
from persona_core.vision.registry import load_detector, load_identity
image = cv2.imread({str(FACE)!r})
face = load_detector().detect(image)[0]
model = load_identity()
emb = model.embed([align_face(image, face.landmarks)])[0]
print(json.dumps({{"from_cache": model.graph_from_cache, "onnx": "onnx" in sys.modules,
                  "embedding": emb.tolist()}}))
"""


def _fresh_process(cache: Path) -> dict[str, object]:
    env = os.environ | {"PERSONA_MODEL_CACHE": str(cache)}
    env.pop("PERSONA_MODEL_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    doc: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def _graphs(cache: Path) -> list[Path]:
    return sorted((cache / "graphs").glob("sface-*.ortgraph"))


def test_a_second_process_loads_the_cached_graph_and_embeds_the_same(tmp_path: Path) -> None:
    """The first process folds SFace's weights and writes the optimized graph; a second one
    loads that file (no onnx import, no folding) and gives the same embedding of a real photo."""
    first = _fresh_process(tmp_path)
    assert first["from_cache"] is False
    assert len(_graphs(tmp_path)) == 1
    second = _fresh_process(tmp_path)
    assert second["from_cache"] is True
    assert second["onnx"] is False
    np.testing.assert_allclose(second["embedding"], first["embedding"], atol=1e-5)
    assert not list((tmp_path / "graphs").glob(".*part")), "no temporary file left behind"


@pytest.mark.parametrize("damage", ["garbage", "flipped_byte", "truncated"])
def test_a_corrupt_cached_graph_falls_back_to_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A cached graph that is not what was written (random bytes, one flipped weight byte, cut
    short) is not loaded: the model is rebuilt from the original weights, gives the same
    embedding as before, says so in a warning, and the file is rewritten whole."""
    monkeypatch.setenv("PERSONA_MODEL_CACHE", str(tmp_path))
    crop = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    clear_cache()
    model = load_identity()
    expected = model.embed([crop])
    (path,) = _graphs(tmp_path)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a graph" * 100)
    elif damage == "flipped_byte":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(good[: len(good) // 3])
    clear_cache()
    with caplog.at_level("WARNING", logger="persona_core.vision.graph_cache"):
        rebuilt = load_identity()
    assert rebuilt.graph_from_cache is False
    assert "rebuilding it from the weights" in caplog.text
    np.testing.assert_allclose(rebuilt.embed([crop]), expected, atol=1e-5)
    assert path.read_bytes() == good
    clear_cache()
    assert load_identity().graph_from_cache is True
    clear_cache()


def test_the_key_changes_with_weights_recipe_runtime_and_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another weights file, recipe, onnxruntime version or provider list names another cache
    file, so a graph made for one of them is never loaded for another."""
    base = graph_cache.graph_key(("a" * 64,), "r1", ("CPUExecutionProvider",))
    assert base == graph_cache.graph_key(("a" * 64,), "r1", ("CPUExecutionProvider",))
    others = {
        graph_cache.graph_key(("b" * 64,), "r1", ("CPUExecutionProvider",)),
        graph_cache.graph_key(("a" * 64,), "r2", ("CPUExecutionProvider",)),
        graph_cache.graph_key(("a" * 64,), "r1", ("CUDAExecutionProvider", "CPUExecutionProvider")),
    }
    ort = graph_cache.onnxruntime_module()
    monkeypatch.setattr(ort, "__version__", "0.0.0-other")
    others.add(graph_cache.graph_key(("a" * 64,), "r1", ("CPUExecutionProvider",)))
    assert base not in others
    assert len(others) == 4


def test_an_unwritable_cache_folder_still_builds_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache folder that cannot be written costs the fold, not the model."""
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    monkeypatch.setenv("PERSONA_MODEL_CACHE", str(blocked))
    clear_cache()
    try:
        model = load_identity()
        assert model.graph_from_cache is False
        crop = np.zeros((112, 112, 3), np.uint8)
        assert model.embed([crop]).shape == (1, 128)
    finally:
        clear_cache()


CONCURRENT = """
import sys
from pathlib import Path
from persona_core.vision.graph_cache import file_session
from persona_core.vision.registry import get_entry, resolve_file
from persona_pipeline.models import register_builder_models
register_builder_models()
entry = get_entry("u2netp")
path, digest = resolve_file(entry.files[0], None, weights_dir=entry.weights_dir)
made = file_session(entry.name, (digest,), path, Path(sys.argv[1]))
print(made.from_cache, made.session.get_inputs()[0].name)
"""


def test_processes_filling_the_cache_at_once_all_get_a_whole_graph(tmp_path: Path) -> None:
    """Four processes that find the cache empty at the same moment each write the graph under a
    temporary name and rename it into place: each gets a working session, one whole file is
    left, and a process after them loads it."""
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    graphs = list((tmp_path / "graphs").iterdir())
    assert [g.suffix for g in graphs] == [".ortgraph"], graphs
    assert graph_cache._read(graphs[0]) is not None  # the digest check itself
    after = subprocess.run(
        [sys.executable, "-c", CONCURRENT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert after.stdout.split()[0] == "True"
