"""Step ``faces``: for every image that passed QC, the aligned canonical face crop (ArcFace
5-point template) and a head-and-shoulders portrait crop, both stored as PNG blobs.

The portrait feeds the style embedder and the matting model; the aligned crop feeds the
identity embedder and is the anchor's ``face_crop_ref``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from persona_core.store.base import BlobStore
from persona_core.vision.align import align_face
from persona_core.vision.base import FaceDetector
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.images import decode, encode_png
from persona_pipeline.steps.inputs import ImageInput
from persona_pipeline.steps.qc import QcResult

ALIGNED_SIZE = 224  # stored crop; the identity model gets it resized to its own 112
# Portrait square side, in face heights: head, hair and shoulders.
PORTRAIT_FACE_HEIGHTS = 2.4


@dataclass(frozen=True, slots=True)
class FaceRecord:
    name: str
    sha256: str
    image_ref: str
    crop_ref: str  # aligned face, ALIGNED_SIZE square
    portrait_ref: str  # head and shoulders, portrait_size square
    crop_box: tuple[int, int, int, int]  # portrait region in the source image: x, y, w, h
    bbox: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FacesResult:
    faces: tuple[FaceRecord, ...]
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def portrait_box(bbox: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A square around the face, PORTRAIT_FACE_HEIGHTS face heights wide, face in the upper part."""
    x, y, w, h = bbox
    side = round(h * PORTRAIT_FACE_HEIGHTS)
    cx, cy = x + w / 2, y + h * 0.75
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    # The box may reach past the frame; the crop pads it, crop_box reports the true square.
    return x0, y0, side, side


def cut_portrait(img: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, side, _ = box
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    src = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)) if pad else img
    region = src[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def crop_face(data: bytes, face: dict[str, Any], width: int, config: PipelineConfig) -> dict[str, Any]:
    """Aligned crop + portrait of one image's face, as PNG bytes and the portrait box."""
    face_h = float(face["bbox"][3])
    # Decode at the smallest scale that keeps the face at least twice the stored crop size.
    factor = 1
    while factor < 8 and face_h / (factor * 2) >= ALIGNED_SIZE:
        factor *= 2
    img = decode(data, factor)
    scale = img.shape[1] / width
    landmarks = np.asarray(face["landmarks"], dtype=np.float32) * scale
    aligned = align_face(img, landmarks, size=ALIGNED_SIZE)
    box = portrait_box(tuple(face["bbox"]))
    scaled_box = tuple(round(v * scale) for v in box)
    portrait = cut_portrait(img, scaled_box, config.portrait_size)
    return {"crop": encode_png(aligned), "portrait": encode_png(portrait), "crop_box": list(box)}


def extract_faces(
    images: tuple[ImageInput, ...] | list[ImageInput],
    qc: QcResult,
    blobs: BlobStore,
    detector: FaceDetector,
    config: PipelineConfig,
) -> FacesResult:
    """Crops for the images that passed QC, in input order; cached per input."""
    started = time.perf_counter()
    cache = StepCache.for_step(blobs, "faces", [detector],
                               config.fingerprint("qc_decode_min_side", "portrait_size") + f":{ALIGNED_SIZE}")
    sizes = {row.sha256: int(row.width) for row in qc.table.itertuples()}
    wanted = [i for i in _unique(images) if i.sha256 in qc.faces]
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for item in wanted:
        hit = cache.get_json(item.sha256)
        if hit is not None and blobs.exists(hit["crop_ref"]) and blobs.exists(hit["portrait_ref"]):
            done[item.sha256] = hit
        else:
            todo.append(item)

    def work(item: ImageInput) -> tuple[ImageInput, dict[str, Any]]:
        out = crop_face(blobs.get(item.ref), qc.faces[item.sha256], sizes[item.sha256], config)
        return item, {"crop_ref": blobs.put(out["crop"]), "portrait_ref": blobs.put(out["portrait"]),
                      "crop_box": out["crop_box"]}

    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        for item, doc in pool.map(work, todo):
            done[item.sha256] = doc
            cache.put_json(item.sha256, doc, item.name)

    faces = []
    for item in wanted:
        doc, face = done[item.sha256], qc.faces[item.sha256]
        faces.append(FaceRecord(
            name=item.name, sha256=item.sha256, image_ref=item.ref, crop_ref=doc["crop_ref"],
            portrait_ref=doc["portrait_ref"], crop_box=tuple(int(v) for v in doc["crop_box"]),  # type: ignore[arg-type]
            bbox=tuple(float(v) for v in face["bbox"]),  # type: ignore[arg-type]
            landmarks=tuple((float(x), float(y)) for x, y in face["landmarks"]),
        ))
    return FacesResult(tuple(faces), {f"faces_{k}": v for k, v in cache.counters().items()},
                       round(time.perf_counter() - started, 4))


def _unique(images: tuple[ImageInput, ...] | list[ImageInput]) -> list[ImageInput]:
    seen: set[str] = set()
    out = []
    for item in images:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            out.append(item)
    return out


def load_png(blobs: BlobStore, ref: str) -> np.ndarray:
    return decode(blobs.get(ref))
