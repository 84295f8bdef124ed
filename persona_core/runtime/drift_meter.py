"""``DriftMeter``: measure a rendered frame against a pack, on the pack's own identity scale.

Made from a loaded pack (``PackCache.load``) and the source its anchor images come from. It
loads the pack's detector and identity model through the shared face-model layer
(``persona_core.vision``; the ``vision`` extra) and refuses, with IdentityModelMismatchError,
when the installed identity weights' sha256 differ from the pack's provenance: embeddings of
different models are not comparable. OpenCV and onnxruntime are imported here, when a meter is
made, never when ``persona_core.runtime`` is imported.

Per frame (a BGR array, encoded image bytes or a path; a batch; a video sampled every N frames):

- ``identity_similarity``: cosine of the face's embedding to the pack's identity centroid, the
  scale the pack's calibration used (clipped to [0, 1]); judged by the pack's warn/fail lines;
- ``bg_similarity``: the frame's background (outside the person) against the anchor in use
  (by default the anchor closest to the face), colour-histogram intersection in [0, 1];
- ``flicker_score``: change of the face against the previous frame this meter measured
  (0 for the first), in [0, 1].

A frame without a face is a result (``face_found=False``, no scores), not an error and never a
silent 1.0. A frame that is not an image raises BadFrameError; in a batch or video it becomes
that frame's ``error`` and the other frames are still measured.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TypeAlias, TypedDict

import numpy as np

from persona_core.errors import IntegrityError, InvalidInputError, PersonaCoreError
from persona_core.pack import Anchor, CameraMode, PersonaPack
from persona_core.runtime.cache import PackSource
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.drift import DriftStats, DriftThresholds
from persona_core.vision.base import Detection, FaceDetector, IdentityEmbedder
from persona_core.vision.errors import IdentityModelMismatchError, VisionUnavailableError

if TYPE_CHECKING:  # types only: OpenCV loads with the first meter, not with the runtime
    from persona_core.vision.frames import Background, FaceState

Frame: TypeAlias = np.ndarray | bytes | str | Path
"""A rendered frame: a BGR uint8 array, encoded image bytes, or an image file's path."""
IdentityVerdict: TypeAlias = Literal["ok", "warn", "fail"]


def _r4(x: float) -> float:
    return round(float(x), 4)


@dataclass(frozen=True, slots=True)
class FrameDrift:
    """One measured frame. Scores are None when no face was found (or the frame was bad)."""

    frame: str
    face_found: bool
    identity_similarity: float | None = None
    bg_similarity: float | None = None
    flicker_score: float | None = None
    identity: IdentityVerdict | None = None  # against the pack's identity_drift_warn / _fail
    face_box: tuple[float, float, float, float] | None = None  # x, y, w, h in frame pixels
    closest_anchor: str | None = None
    closest_anchor_similarity: float | None = None
    reference_anchor: str | None = None  # the anchor bg_similarity compared against
    error: str = ""  # batch / video only: why this frame could not be measured
    error_code: str = ""

    @property
    def stats(self) -> DriftStats | None:
        """The three scores as DriftStats for the runtime hooks (None without a face)."""
        if not self.face_found or self.identity_similarity is None:
            return None
        return DriftStats(
            identity_similarity=self.identity_similarity,
            bg_similarity=1.0 if self.bg_similarity is None else self.bg_similarity,
            flicker_score=0.0 if self.flicker_score is None else self.flicker_score,
        )

    def as_dict(self) -> FrameDriftDoc:
        return FrameDriftDoc(
            frame=self.frame,
            face_found=self.face_found,
            identity_similarity=self.identity_similarity,
            bg_similarity=self.bg_similarity,
            flicker_score=self.flicker_score,
            identity=self.identity,
            face_box=list(self.face_box) if self.face_box else None,
            closest_anchor=self.closest_anchor,
            closest_anchor_similarity=self.closest_anchor_similarity,
            reference_anchor=self.reference_anchor,
            error=self.error,
            error_code=self.error_code,
        )


class FrameDriftDoc(TypedDict):
    """A FrameDrift as a JSON-ready mapping (``FrameDrift.as_dict``)."""

    frame: str
    face_found: bool
    identity_similarity: float | None
    bg_similarity: float | None
    flicker_score: float | None
    identity: IdentityVerdict | None
    face_box: list[float] | None
    closest_anchor: str | None
    closest_anchor_similarity: float | None
    reference_anchor: str | None
    error: str
    error_code: str


# A decoded frame, or why it could not be decoded (a batch measures the others on).
_Decoded: TypeAlias = np.ndarray | PersonaCoreError


def _vision() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        import cv2  # noqa: F401, PLC0415 - the heavy stack loads with the first meter
        import onnxruntime  # noqa: F401, PLC0415
    except ImportError as exc:
        raise VisionUnavailableError(
            f"the drift meter needs OpenCV and onnxruntime ({exc}); pip install 'persona-core[vision]'"
        ) from None
    from persona_core.vision import align, frames, registry  # noqa: PLC0415

    return align, frames, registry


class DriftMeter:
    """Measures rendered frames against one pack; see the module docstring.

    Not thread-safe for flicker (it keeps the previous face); use one meter per stream."""

    def __init__(
        self,
        pack: CachedPack,
        source: PackSource,
        *,
        model_dir: Path | str | None = None,
        providers: tuple[str, ...] | None = None,
    ) -> None:
        if not isinstance(pack, CachedPack):
            raise InvalidInputError(
                f"DriftMeter needs a CachedPack (PackCache.load), got {type(pack).__name__}"
            )
        self._align, self._frames, registry = _vision()
        doc: PersonaPack = pack.pack
        self.pack = pack
        self.source = source
        records = {m.task: m for m in doc.provenance.models}
        ident = records.get("identity")
        if ident is None or ident.name != doc.identity.embedding_model:
            raise IntegrityError(
                f"{pack!r}: provenance names no identity model {doc.identity.embedding_model!r}"
            )
        self.embedder: IdentityEmbedder = registry.load_model(
            ident.name,
            model_dir=model_dir,
            providers=providers,
            opt_in_noncommercial=ident.noncommercial_opt_in,
        )
        installed = list(self.embedder.weights_sha256)
        if installed != list(ident.weights_sha256):
            raise IdentityModelMismatchError(
                f"{pack!r} was built with {ident.name} weights {ident.weights_sha256}, the installed "
                f"{ident.name} has {installed}: embeddings of different weights are not comparable"
            )
        detect = records.get("detect")
        self.detector: FaceDetector = registry.load_model(
            detect.name if detect else registry.default_model_name("detect"),
            model_dir=model_dir,
            providers=providers,
            opt_in_noncommercial=bool(detect and detect.noncommercial_opt_in),
        )
        self.thresholds = DriftThresholds.from_policy(doc.refresh_policy)
        self.anchors: list[Anchor] = [a for mode in CameraMode for a in doc.anchor_sets.get(mode, [])]
        if not self.anchors:
            raise InvalidInputError(f"{pack!r} has no anchors to measure against")
        self._anchor_matrix = np.stack([np.asarray(pack.embedding(a.embedding_ref)) for a in self.anchors])
        centroid = np.asarray(pack.embedding(doc.identity.centroid_ref), dtype=np.float32)
        self._centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        self._by_id = {a.anchor_id: a for a in self.anchors}
        self._backgrounds: dict[str, Background] = {}
        self._prev: FaceState | None = None
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------

    def measure(self, frame: Frame, *, anchor_id: str | None = None, label: str | None = None) -> FrameDrift:
        """One frame; BadFrameError when it is not an image."""
        image = self._frames.decode_frame(frame)
        return self._measure_images([(label or _label(frame, 0), image)], anchor_id)[0]

    def measure_batch(self, frames: Sequence[Frame], *, anchor_id: str | None = None) -> list[FrameDrift]:
        """Frames in order (flicker runs through them); a bad frame gets ``error``, the rest go on."""
        decoded: list[tuple[str, _Decoded]] = []
        for i, frame in enumerate(frames):
            label = _label(frame, i)
            try:
                decoded.append((label, self._frames.decode_frame(frame)))
            except PersonaCoreError as exc:
                decoded.append((label, exc))
        return self._measure_images(decoded, anchor_id)

    def measure_video(
        self, path: str | Path, *, every: int = 1, anchor_id: str | None = None
    ) -> list[FrameDrift]:
        """Every ``every``-th frame of a video file (labels ``<path>#<frame index>``). A video is a
        stream of its own: flicker starts from 0 at its first frame."""
        frames = self._frames.video_frames(path, every)
        self.reset()
        return self._measure_images([(f"{path}#{i}", image) for i, image in frames], anchor_id)

    def reset(self) -> None:
        """Forget the previous face (a new shot or stream): the next frame's flicker is 0."""
        with self._lock:
            self._prev = None

    def verdict(self, identity_similarity: float) -> IdentityVerdict:
        if identity_similarity < self.thresholds.identity_fail:
            return "fail"
        if identity_similarity < self.thresholds.identity_warn:
            return "warn"
        return "ok"

    # -- internals ----------------------------------------------------------------------------

    def _measure_images(
        self, items: Iterable[tuple[str, _Decoded]], anchor_id: str | None
    ) -> list[FrameDrift]:
        if anchor_id is not None and anchor_id not in self._by_id:
            known = sorted(self._by_id)
            raise InvalidInputError(f"no anchor {anchor_id!r} in {self.pack!r}; anchors: {known}")
        found: list[tuple[str, np.ndarray, Detection, np.ndarray]] = []  # label, image, face, crop
        results: list[FrameDrift | None] = []
        for label, image in items:
            if isinstance(image, PersonaCoreError):
                results.append(
                    FrameDrift(frame=label, face_found=False, error=str(image), error_code=image.code)
                )
                continue
            faces = self.detector.detect(image)
            if not faces:
                results.append(FrameDrift(frame=label, face_found=False))
                continue
            face = faces[0]
            crop = self._align.align_face(image, face.landmarks, self.embedder.crop_size)
            found.append((label, image, face, crop))
            results.append(None)
        vectors = self.embedder.embed([f[3] for f in found]) if found else np.zeros((0, 1), np.float32)
        measured = iter(range(len(found)))
        out: list[FrameDrift] = []
        with self._lock:
            for result in results:
                if result is not None:
                    out.append(result)
                    continue
                k = next(measured)
                label, image, face, crop = found[k]
                out.append(self._score(label, image, face, crop, vector=vectors[k], anchor_id=anchor_id))
        return out

    def _score(
        self, label: str, image: np.ndarray, face: Detection, crop: np.ndarray, *,
        vector: np.ndarray, anchor_id: str | None,
    ) -> FrameDrift:
        frames = self._frames
        sim = _r4(min(1.0, max(0.0, float(vector @ self._centroid))))
        anchor_sims = self._anchor_matrix @ vector
        best = int(np.argmax(anchor_sims))
        closest = self.anchors[best]
        reference = self._by_id[anchor_id] if anchor_id else closest
        box = tuple(float(v) for v in face.bbox)
        bg = frames.background_similarity(frames.background(image, box), self._background_of(reference))
        state = frames.FaceState(frames.gray_crop(crop), vector, box)
        flick = 0.0 if self._prev is None else frames.flicker(self._prev, state)
        self._prev = state
        return FrameDrift(
            frame=label,
            face_found=True,
            identity_similarity=sim,
            bg_similarity=None if bg is None else _r4(bg),
            flicker_score=_r4(flick),
            identity=self.verdict(sim),
            face_box=(_r4(box[0]), _r4(box[1]), _r4(box[2]), _r4(box[3])),
            closest_anchor=closest.anchor_id,
            closest_anchor_similarity=_r4(float(anchor_sims[best])),
            reference_anchor=reference.anchor_id,
        )

    def _background_of(self, anchor: Anchor) -> Background:
        bg = self._backgrounds.get(anchor.anchor_id)
        if bg is None:
            data = self.source.blob(anchor.image_ref)
            if "sha256:" + hashlib.sha256(data).hexdigest() != anchor.image_ref.split("#")[0]:
                raise IntegrityError(f"anchor image {anchor.image_ref} does not match its hash")
            image = self._frames.decode_frame(data)
            faces = self.detector.detect(image)
            bg = self._frames.background(image, tuple(float(v) for v in faces[0].bbox) if faces else None)
            self._backgrounds[anchor.anchor_id] = bg
        return bg


def _label(frame: object, index: int) -> str:
    if isinstance(frame, (str, Path)):
        return str(frame)
    return f"frame {index}"
