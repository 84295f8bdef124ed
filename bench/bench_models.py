"""Per-model speed on the fixture photos and clips (section "models").

The goal this checks: detect + align + identity + style, decode included, at or under 80 ms per
full-resolution photo on two cores. The chain decodes at a reduced JPEG scale (as the pipeline
does) so the longest side stays >= 1024 px, detects at 640 px, aligns on the decoded frame.
Run: ``python -m bench bench_models`` (writes bench/results.json)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import percentiles, record
from persona_core.vision.align import align_face
from persona_core.vision.errors import ModelUnavailableError
from persona_core.vision.registry import load_detector, load_identity
from persona_core.vision.sessions import intra_op_threads
from persona_pipeline.models import (
    face_measures,
    load_expression,
    load_face_mesh,
    load_matter,
    load_pose,
    load_style,
    load_voice,
)
from persona_pipeline.models.audio import load_wav

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
REPEATS = 5
CHAIN_MIN_SIDE = 1024
REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}


def _photos() -> list[bytes]:
    out = []
    for path in sorted((FIXTURES / "faces").glob("*.jpg")):
        data = path.read_bytes()
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None:
            out.append(data)
    return out


def _decode(data: bytes, factor: int = 1) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[factor])


def _factor(longest_side: int, min_side: int) -> int:
    """Largest JPEG reduction keeping the longest side >= ``min_side`` (the pipeline knows
    each photo's size from QC, so it is not part of the per-photo cost)."""
    factor = 1
    while factor < 4 and longest_side // (factor * 2) >= min_side:
        factor *= 2
    return factor


def _timed(fn, items, repeats: int = REPEATS) -> list[float]:
    fn(items[0])  # warm-up: first-call allocations and graph setup are not per-image cost
    samples = []
    for _ in range(repeats):
        for item in items:
            t0 = time.perf_counter()
            fn(item)
            samples.append(time.perf_counter() - t0)
    return samples


def _tag_models(frames: list[np.ndarray], faces: list, idx: list[int]) -> dict[str, list[float]]:
    """Per-image times of the anchor-tag models: face mesh (+ its measures and the geometry
    expression), pose landmarks, and the opt-in FER classifier when its weights are present."""
    mesh, pose = load_face_mesh(), load_pose()

    def mesh_and_expression(i: int) -> None:
        face_measures.measure(mesh.mesh(frames[i], faces[i].bbox, faces[i].landmarks).points)

    rows = {
        "face_mesh_mediapipe": _timed(lambda i: mesh.mesh(frames[i], faces[i].bbox, faces[i].landmarks), idx),
        "mesh_plus_expression": _timed(mesh_and_expression, idx),
        "pose_mediapipe_full": _timed(lambda i: pose.pose(frames[i], faces[i].bbox), idx),
    }
    try:
        fer = load_expression("fer2013-expression", opt_in_noncommercial=True)
    except ModelUnavailableError:
        return rows
    rows["expression_fer2013_opt_in"] = _timed(lambda i: fer.scores(frames[i], faces[i].bbox), idx)
    return rows


def main() -> None:
    photos = _photos()
    t0 = time.perf_counter()
    detector, identity, style = load_detector(), load_identity(), load_style()
    load_s = time.perf_counter() - t0
    matter = load_matter()

    factors = [_factor(max(_decode(d).shape[:2]), CHAIN_MIN_SIDE) for d in photos]
    frames = [_decode(d, f) for d, f in zip(photos, factors, strict=True)]
    faces = [detector.detect(f)[0] for f in frames]
    crops = [align_face(f, face.landmarks) for f, face in zip(frames, faces, strict=True)]

    def chain(i: int) -> None:
        frame = _decode(photos[i], factors[i])
        found = detector.detect(frame)
        aligned = [align_face(frame, f.landmarks) for f in found]
        identity.embed(aligned)
        style.embed([frame])

    idx = list(range(len(photos)))
    values: dict[str, object] = {
        "models_threads": intra_op_threads(),
        "models_photos": len(photos),
        "models_load_detect_identity_style_s": round(load_s, 2),
        "models_style_runtime": style.runtime,
    }
    rows = {
        "decode_full": _timed(lambda i: _decode(photos[i]), idx),
        "decode_reduced": _timed(lambda i: _decode(photos[i], factors[i]), idx),
        "detect_yunet": _timed(lambda i: detector.detect(frames[i]), idx),
        "align": _timed(lambda i: align_face(frames[i], faces[i].landmarks), idx),
        "identity_sface": _timed(lambda i: identity.embed([crops[i]]), idx),
        "style_effnet_lite0": _timed(lambda i: style.embed([frames[i]]), idx),
        "chain_detect_align_identity_style_with_decode": _timed(chain, idx),
        "matting_u2netp": _timed(lambda i: matter.mask([frames[i]]), idx, repeats=1),
        **_tag_models(frames, faces, idx),
    }
    for name, samples in rows.items():
        values[f"models_{name}_ms"] = percentiles(samples, 1e3) | {
            "mean": round(float(np.mean(samples)) * 1e3, 3)
        }

    # Batched calls: cost per item when the pipeline hands over a whole version at once.
    for name, fn, items in (
        ("identity_sface", identity.embed, crops),
        ("style_effnet_lite0", style.embed, frames),
    ):
        fn(items)
        t0 = time.perf_counter()
        for _ in range(REPEATS):
            fn(items)
        values[f"models_{name}_batch{len(items)}_ms_per_item"] = round(
            (time.perf_counter() - t0) / (REPEATS * len(items)) * 1e3, 3
        )

    voice = load_voice()
    clips = [load_wav(p) for p in sorted((FIXTURES / "voices").glob("*.wav"))]
    t0 = time.perf_counter()
    voice.embed(clips[0])
    values["models_voice_first_call_s"] = round(time.perf_counter() - t0, 2)
    values["models_voice_resemblyzer_ms"] = percentiles(_timed(voice.embed, clips, repeats=2), 1e3)
    record("models", values)


if __name__ == "__main__":
    main()
