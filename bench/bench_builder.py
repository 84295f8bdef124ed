"""Builder speed on the fixture photos with the default offline models, loaded beforehand.

builder_seconds_per_image: the per-image chain (decode, YuNet detect + QC, aligned crop and
portrait, SFace identity, EfficientNet-Lite0 style) over the fixture set at full resolution
with a cold per-input cache, wall time / images; median of 5 rounds. Batched embeddings and
2 worker threads, as the pipeline runs it. Goal: <= 0.08 s per image on 2 cores.
builder_single_image_seconds_p50: the same chain one image at a time (median over the set).
builder_seconds_per_usable_image: the chain over the 20 variants below, all of which pass QC
and get crops and both embeddings (the fixture set rejects 5 of its 11 early).
builder_persona_20_images_seconds: a 20-image persona (variants of the obama photos) end to
end through Dagster in-process (build_version: every asset, checks, masks, publish), cold
cache, median of 3. Goal: <= 6 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import cv2
import dagster as dg

from bench.common import record
from persona_core.ingest import submit_version
from persona_core.refs import sha256_hex
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.local import LocalBlobStore
from persona_core.vision.registry import load_detector, load_identity
from persona_pipeline.build import build_version
from persona_pipeline.models import load_matter, load_style
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.embeddings import embed_faces, embed_styles
from persona_pipeline.steps.faces import extract_faces
from persona_pipeline.steps.inputs import ImageInput
from persona_pipeline.steps.qc import run_qc

FACES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "faces"
OBAMA = ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")
CONFIG = PipelineConfig(required_modes=("A_SELFIE",), min_anchors_per_mode={"A_SELFIE": 1})


def _chain(paths: list[Path] | list[tuple[str, bytes, str]], models: tuple, config: PipelineConfig) -> float:
    det, ident, style = models
    with tempfile.TemporaryDirectory() as tmp:
        blobs = LocalBlobStore(tmp, b"bench", "http://127.0.0.1")
        items = []
        for p in paths:
            name, data = (p.name, p.read_bytes()) if isinstance(p, Path) else (p[0], p[1])
            items.append(ImageInput(name, sha256_hex(data), blobs.put(data)))
        started = time.perf_counter()
        qc = run_qc(items, blobs, det, config)
        faces = extract_faces(items, qc, blobs, det, config)
        embed_faces(faces, blobs, ident)
        embed_styles(faces, blobs, style)
        return time.perf_counter() - started


def _variants() -> list[tuple[str, bytes, str]]:
    files = []
    for name in OBAMA:
        img = cv2.imread(str(FACES / name))
        h, w = img.shape[:2]
        looks = {
            "orig": img,
            "bright": cv2.convertScaleAbs(img, alpha=1.0, beta=20),
            "dark": cv2.convertScaleAbs(img, alpha=0.85, beta=0),
            "flip": cv2.flip(img, 1),
            "crop": img[h // 20 : h - h // 20, w // 20 : w - w // 20],
        }
        for look, pixels in looks.items():
            ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
            assert ok
            files.append((f"{Path(name).stem}_{look}.jpg", buf.tobytes(), "image"))
    return files


def _persona_20(files: list[tuple[str, bytes, str]], instance: dg.DagsterInstance) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        meta, blobs = open_metadata_store(settings), open_blob_store(settings)
        meta.create_persona("bench", {})
        v = submit_version(meta, blobs, "bench", files)
        started = time.perf_counter()
        result = build_version("bench", v.version, settings, instance, config=CONFIG)
        elapsed = time.perf_counter() - started
        if result.status.value != "published":
            raise RuntimeError(f"bench persona not published: {result.record.reasons}")
        return elapsed


def main() -> None:
    models = (load_detector(), load_identity(), load_style())
    load_matter()
    paths = sorted(p for p in FACES.glob("*.jpg"))
    _chain(paths, models, CONFIG)  # warm-up: first-call allocations, ONNX graph optimisation
    batched = [_chain(paths, models, CONFIG) / len(paths) for _ in range(5)]
    single = [_chain([p], models, CONFIG) for p in paths]
    files = _variants()
    usable = [_chain(files, models, CONFIG) / len(files) for _ in range(3)]
    with dg.instance_for_test() as instance:
        _persona_20(files, instance)  # warm-up: Dagster imports, first materialization
        persona = [_persona_20(files, instance) for _ in range(3)]
    record("builder", {
        "builder_seconds_per_image": round(statistics.median(batched), 4),
        "builder_single_image_seconds_p50": round(statistics.median(single), 4),
        "builder_seconds_per_usable_image": round(statistics.median(usable), 4),
        "builder_persona_20_images_seconds": round(statistics.median(persona), 3),
        "builder_fixture_images": len(paths),
    })


if __name__ == "__main__":
    main()
