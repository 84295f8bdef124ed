"""Step ``masks`` (optional): a head-and-shoulders alpha mask per chosen anchor, made by the
matting model on the portrait crop and stored as a PNG blob. Matting is the costliest model
per image, so it runs after anchor selection, never on photos that will not be anchors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from persona_core.store.base import BlobStore
from persona_pipeline.models.base import Matter
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.faces import FaceRecord, load_png
from persona_pipeline.steps.images import encode_png


@dataclass(frozen=True)
class MasksResult:
    mask_refs: dict[str, str]  # input sha256 -> mask PNG ref; empty when masks are off
    model: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def make_masks(
    faces: list[FaceRecord], blobs: BlobStore, matter: Matter | None, batch: int = 8
) -> MasksResult:
    """Masks for the given faces (the anchors); ``matter=None`` (masks turned off) returns none."""
    if matter is None:
        return MasksResult({})
    started = time.perf_counter()
    cache = StepCache.for_step(blobs, "masks", [matter])
    refs: dict[str, str] = {}
    todo = []
    for rec in faces:
        hit = cache.get_json(rec.sha256)
        if hit is not None and blobs.exists(hit["mask_ref"]):
            refs[rec.sha256] = hit["mask_ref"]
        else:
            todo.append(rec)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        masks = matter.mask([load_png(blobs, r.portrait_ref) for r in chunk])
        for rec, mask in zip(chunk, masks, strict=True):
            refs[rec.sha256] = blobs.put(encode_png(mask))
            cache.put_json(rec.sha256, {"mask_ref": refs[rec.sha256]}, rec.name)
    return MasksResult(refs, matter.entry.name, {f"masks_{k}": v for k, v in cache.counters().items()},
                       round(time.perf_counter() - started, 4))
