"""Steps ``face_embeddings``, ``style_embeddings`` and ``voice_embedding``: batched model
calls over the inputs the per-input cache does not already hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from persona_core.store.base import BlobStore
from persona_core.vision.base import IdentityEmbedder
from persona_pipeline.models.base import StyleEmbedder, VoiceEmbedder
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.faces import FacesResult, load_png
from persona_pipeline.steps.inputs import VoiceInput


@dataclass(frozen=True)
class Embeddings:
    vectors: dict[str, np.ndarray]  # input sha256 -> (dim,) float32, L2-normalised
    model: str
    dim: int
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _embed_cached(
    keys: list[tuple[str, str]], cache: StepCache, compute: Callable[[list[str]], np.ndarray], batch: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    todo = []
    for sha, name in keys:
        hit = cache.get_vector(sha)
        if hit is not None:
            out[sha] = hit
        else:
            todo.append((sha, name))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        rows = np.asarray(compute([sha for sha, _ in chunk]), dtype=np.float32)
        for (sha, name), row in zip(chunk, rows, strict=True):
            out[sha] = row
            cache.put_vector(sha, row, name)
    return out


def embed_faces(faces: FacesResult, blobs: BlobStore, model: IdentityEmbedder, batch: int = 32) -> Embeddings:
    """Identity embedding of every aligned crop (resized to the model's crop size)."""
    started = time.perf_counter()
    cache = StepCache.for_step(blobs, "face_embeddings", [model], f"crop:{model.crop_size}")
    by_sha = {f.sha256: f for f in faces.faces}
    size = model.crop_size

    def compute(shas: list[str]) -> np.ndarray:
        crops = [cv2.resize(load_png(blobs, by_sha[s].crop_ref), (size, size), interpolation=cv2.INTER_AREA)
                 for s in shas]
        return model.embed(crops)

    vecs = _embed_cached([(f.sha256, f.name) for f in faces.faces], cache, compute, batch)
    counters = {f"face_{k}": v for k, v in cache.counters().items()}
    return Embeddings(vecs, model.entry.name, model.dim, counters, round(time.perf_counter() - started, 4))


def embed_styles(faces: FacesResult, blobs: BlobStore, model: StyleEmbedder, batch: int = 16) -> Embeddings:
    """Style embedding of every head-and-shoulders portrait."""
    started = time.perf_counter()
    cache = StepCache.for_step(blobs, "style_embeddings", [model])
    by_sha = {f.sha256: f for f in faces.faces}

    def compute(shas: list[str]) -> np.ndarray:
        return model.embed([load_png(blobs, by_sha[s].portrait_ref) for s in shas])

    vecs = _embed_cached([(f.sha256, f.name) for f in faces.faces], cache, compute, batch)
    counters = {f"style_{k}": v for k, v in cache.counters().items()}
    return Embeddings(vecs, model.entry.name, model.dim, counters, round(time.perf_counter() - started, 4))


@dataclass(frozen=True)
class VoiceEmbedding:
    vector: np.ndarray | None  # mean of the clips' embeddings, L2-normalised; None without clips
    model: str
    clips: tuple[str, ...]
    clip_similarity: float | None  # lowest cosine between a clip and the mean (consistency)
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def embed_voice(
    voices: tuple[VoiceInput, ...], blobs: BlobStore, model: VoiceEmbedder | None
) -> VoiceEmbedding:
    """One speaker embedding for the persona from all its voice clips."""
    if not voices or model is None:
        return VoiceEmbedding(None, "", (), None)
    started = time.perf_counter()
    cache = StepCache.for_step(blobs, "voice_embedding", [model], f"sr:{model.sample_rate}")
    rows = []
    for clip in voices:
        vec = cache.get_vector(clip.sha256)
        if vec is None:
            vec = np.asarray(model.embed(clip.wav), dtype=np.float32)
            cache.put_vector(clip.sha256, vec, clip.name)
        rows.append(vec)
    mat = np.stack(rows)
    mean = mat.mean(axis=0)
    mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    sims = mat @ mean / np.maximum(np.linalg.norm(mat, axis=1), 1e-12)
    return VoiceEmbedding(mean, model.entry.name, tuple(c.name for c in voices), round(float(sims.min()), 4),
                          {f"voice_{k}": v for k, v in cache.counters().items()},
                          round(time.perf_counter() - started, 4))
